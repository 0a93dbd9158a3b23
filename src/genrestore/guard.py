"""The "never worse" guard: compare a restoration with its input on cheap no-reference
measures and name the stage to back off.

Each check blames only a stage that can cause what it found, and only if that stage acted:

* **lost energy below the cutoff**: in octave bands from 125 Hz to the input's cutoff
  (at most 8 kHz), the output's long-term level, after removing the overall gain change,
  may not fall more than ``max_band_loss_db`` under the input's less its noise floor (the
  intended denoising).  Denoising, then the EQ, is blamed: they are the stages that take
  energy out of bands (compression, limiting and widening change every band alike, and
  bandwidth extension works above the cutoff).
* **a rise of the noise floor** under the input's cutoff relative to the loudness by more
  than ``max_floor_rise_db``, to a floor less than 60 dB under the loudness.  The stages
  that lift quiet parts relative to loud ones are blamed, in this order: compression
  (``dynamics``), then the loudness stage's limiting (if its limiter ran: a plain gain
  moves floor and loudness alike).  Bandwidth extension is never
  blamed: it adds nothing at or below the cutoff, where the floor is measured.
* Input and output are compared on the same footing: the floor is a density over the
  input's band (the same at any sample rate), read from STFT bins of the same width in Hz
  (the quietest bins between partials depend on it), and a mono clip made stereo by the ``stereo``
  stage is compared through its mid ``(L + R) / 2``, which that stage keeps equal to the
  input.  Widening therefore cannot be blamed: it adds no hiss relative to the music (the
  side is a decorrelated copy of both), while each channel on its own reads a higher
  minimum-statistics floor because the all-passes smear notes into the gaps between them
  (24 dB on the synthetic song), which is what widening is for.
* A reference match (the ``match`` stage) changes the spectral balance on purpose: the
  octave check expects its mean correction in each octave, and the floor check allows
  the span of its correction (largest boost less deepest cut).  It is never blamed (it
  was asked for).
* **new clipped runs**: flat tops in the output that the input did not have (exact
  repeats at the peak, which resampling, filtering and the limiter never produce).  No
  stage is blamed: it means a bug, and it is reported.

A true peak above the loudness stage's ceiling is not checked here: the loudness stage is
the last stage of every preset (:func:`genrestore.pipeline.load_preset` enforces it) and
holds its ceiling by measurement.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from genrestore.analysis import (
    FLOOR_REFERENCE_HZ,
    Analysis,
    clipped_runs,
    integrated_lufs,
    long_term_spectrum,
    noise_floor_dbfs,
)
from genrestore.errors import ParameterError
from genrestore.filters import median
from genrestore.io import as_channels
from genrestore.spectral import default_n_fft, n_fft_near, stft
from genrestore.stages import StageReport

MAX_BAND_LOSS_DB = 6.0
#: Octave levels of a shorter clip are too uncertain to call a loss (a 0.1 s clip read
#: "lost 8 dB" with only bandwidth extension acting).
MIN_BAND_CHECK_S = 1.0
MAX_FLOOR_RISE_DB = 6.0
INAUDIBLE_FLOOR_DB = 60.0


@dataclass(frozen=True)
class Finding:
    """One thing the guard found; ``stage`` is the stage to back off, or ``""``."""

    stage: str
    problem: str


def _octave_levels(freqs: np.ndarray, level: np.ndarray, top_hz: float,
                   noise_dbfs: float | None = None) -> np.ndarray:
    """Octave-band levels (dB) from 125 Hz to ``top_hz`` of a long-term spectrum (``freqs``
    in Hz, ``level`` in dB per Hz); with ``noise_dbfs``, less a white noise floor of that
    level (what denoising may remove).  Band power is the long-term density summed over the
    band, so the figure does not depend on the sample rate."""
    density = 10.0 ** (level / 10.0) * (freqs[1] - freqs[0])  # power per bin
    noise_per_hz = 0.0 if noise_dbfs is None or not np.isfinite(noise_dbfs) else (
        10.0 ** (noise_dbfs / 10.0) / FLOOR_REFERENCE_HZ)  # the floor's white-noise density
    edges = 125.0 * 2.0 ** np.arange(0, 7)  # 125 Hz .. 8 kHz
    edges = edges[edges <= top_hz]
    bands = [max(float(density[(freqs >= lo) & (freqs < hi)].sum()) - noise_per_hz * (hi - lo),
                 0.0) for lo, hi in itertools.pairwise(edges)]
    return 10.0 * np.log10(np.maximum(bands, 1e-30))


@dataclass(frozen=True)
class Baseline:
    """The input's side of the comparison, read from its :class:`~genrestore.analysis.Analysis`
    (nothing is measured again, however often the guard checks)."""

    analysis: Analysis
    octave_levels_db: np.ndarray | None  # as measured; None if the band is too narrow
    octave_music_db: np.ndarray | None  # less the noise floor: what must survive denoising
    floor_to_loudness_db: float | None  # noise floor under the cutoff minus the loudness


def baseline(analysis: Analysis) -> Baseline:
    """The input's baseline for :func:`check`, from its analysis (which must carry the
    long-term spectrum, as :func:`~genrestore.analysis.analyze` makes it)."""
    top = min(analysis.cutoff_hz, 8000.0)
    levels = music = None
    if top >= 500.0:
        if analysis.spectrum is None:
            raise ParameterError("guard: the analysis carries no long-term spectrum "
                                 "(make it with genrestore.analysis.analyze)")
        freqs, level = analysis.spectrum.freqs_hz, analysis.spectrum.level_db
        levels = _octave_levels(freqs, level, top)
        music = _octave_levels(freqs, level, top, analysis.noise_floor_dbfs)
    floor = None
    measured = analysis.noise_floor_under_cutoff_dbfs
    if np.isfinite(analysis.integrated_lufs) and np.isfinite(measured):
        floor = measured - analysis.integrated_lufs
    return Baseline(analysis, levels, music, floor)


def _match_correction(reports: tuple[StageReport, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The band centres (Hz) and corrections (dB) of a ``match`` stage that acted."""
    for r in reports:
        if r.stage == "match" and r.acted:
            return np.asarray(r.details["bands_hz"]), np.asarray(r.details["correction_db"])
    return np.zeros(0), np.zeros(0)


def _intended_octave_change(reports: tuple[StageReport, ...], octaves: int) -> np.ndarray:
    """The change (dB) a reference match made on purpose in each octave band of
    :func:`_octave_levels` (125 Hz upwards): the mean correction of its third-octave bands
    centred in that octave; 0 where it matched none."""
    bands, correction = _match_correction(reports)
    change = np.zeros(octaves)
    for k in range(octaves):
        inside = (bands >= 125.0 * 2.0**k) & (bands < 250.0 * 2.0**k)
        if inside.any():
            change[k] = float(correction[inside].mean())
    return change


def _intended_floor_rise(reports: tuple[StageReport, ...]) -> float:
    """How far a reference match may lift the noise floor against the loudness on purpose:
    the span of its correction (an EQ changes the bands the floor is read in by at most
    its largest change, and the loudness by at least its smallest)."""
    _, correction = _match_correction(reports)
    return float(correction.max() - correction.min()) if correction.size else 0.0


#: Stages that can raise the noise floor against the loudness, most likely first.
FLOOR_RISERS = ("dynamics", "loudness")
#: Stages that can take energy out of a band under the cutoff, most likely first.
BAND_CUTTERS = ("denoise", "eq")


def check(
    base: Baseline,
    after: np.ndarray,
    after_rate: int,
    reports: tuple[StageReport, ...],
    *,
    max_band_loss_db: float = MAX_BAND_LOSS_DB,
    max_floor_rise_db: float = MAX_FLOOR_RISE_DB,
    output_lufs: float | None = None,
) -> list[Finding]:
    """What got worse from the input (``base``) to ``after``; empty when nothing did.
    ``output_lufs`` is ``after``'s integrated loudness when it is already measured (the
    loudness stage's figure); it is measured here otherwise."""
    analysis = base.analysis
    acted = {r.stage for r in reports if r.acted}
    # The loudness stage lifts the floor against the loudness only by limiting: a plain gain
    # (no limiter pass) moves both alike.
    acted -= {r.stage for r in reports if r.stage == "loudness"
              and r.details.get("limiter_passes", 1) == 0}
    after = as_channels(after)
    if "stereo" in acted:
        after = after.mean(axis=0, keepdims=True)  # the mid: the input itself (see above)
    findings: list[Finding] = []
    if (base.octave_levels_db is not None and base.octave_music_db is not None
            and analysis.duration_s >= MIN_BAND_CHECK_S):
        top = min(analysis.cutoff_hz, 8000.0)
        # Welch's fine bins, as the input's were read: an STFT's wider main lobe would leak a
        # strong bass note just under 125 Hz over a loss in the octave above it (on both
        # sides alike, so the loss would go unseen).
        out = _octave_levels(*long_term_spectrum(after, after_rate), top)
        # A reference match changes octaves on purpose (``match`` is asked for, not blamed).
        intended = _intended_octave_change(reports, base.octave_levels_db.size)
        gain = float(median(out - intended - base.octave_levels_db))  # the level change
        # What each octave lost beyond the gain change, counting from the input's music
        # (its level less the noise floor): removing hiss is not a loss.
        loss = float(np.max(base.octave_music_db + gain + intended - out, initial=0.0))
        if loss > max_band_loss_db:
            blame = next((s for s in BAND_CUTTERS if s in acted), "")
            findings.append(Finding(blame, f"lost {loss:.1f} dB in an octave under the cutoff"))
    if output_lufs is None or "stereo" in acted:  # the mid's loudness is not the output's
        output_lufs = integrated_lufs(after, after_rate)
    lufs_out = output_lufs
    if base.floor_to_loudness_db is not None and np.isfinite(lufs_out):
        # Over the input's own band (bandwidth extension fills empty bins on purpose), with
        # the input's bin width in Hz: the quietest bins between partials depend on it.
        n_fft = n_fft_near(default_n_fft(analysis.sample_rate) * after_rate
                           / analysis.sample_rate)
        floor_out = noise_floor_dbfs(after, after_rate, max_hz=analysis.cutoff_hz,
                                     spec=stft(after, after_rate, n_fft=n_fft)) - lufs_out
        rise = floor_out - base.floor_to_loudness_db - _intended_floor_rise(reports)
        # A floor still 60 dB under the loudness is inaudible, however much it rose.
        if rise > max_floor_rise_db and floor_out > -INAUDIBLE_FLOOR_DB:
            blame = next((s for s in FLOOR_RISERS if s in acted), "")
            findings.append(Finding(blame, f"noise floor up {rise:.1f} dB against the loudness"))
    runs = clipped_runs(after)[0]
    if runs > analysis.clipped_runs:
        findings.append(Finding("", f"{runs - analysis.clipped_runs} new clipped runs"))
    return findings
