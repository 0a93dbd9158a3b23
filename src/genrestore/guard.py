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
    ClipRuns,
    LoudnessSum,
    StftMeasures,
    WelchSum,
    array_blocks,
    gated_lufs,
    integrated_lufs,
    long_term_segment,
)
from genrestore.errors import ParameterError
from genrestore.filters import median
from genrestore.io import as_channels
from genrestore.spectral import default_n_fft, n_fft_near
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


@dataclass(frozen=True)
class Measures:
    """What :func:`compare` reads of the output (measured by :class:`OutputMeter`)."""

    octave_levels_db: np.ndarray | None  # None: the octave check does not apply
    floor_dbfs: float | None  # the noise floor under the input's cutoff; None: not read
    lufs: float  # integrated loudness of what was measured (the mid where stereo widened)
    clipped_runs: int


def _acted(reports: tuple[StageReport, ...]) -> set[str]:
    acted = {r.stage for r in reports if r.acted}
    # The loudness stage lifts the floor against the loudness only by limiting: a plain gain
    # (no limiter pass) moves both alike.
    return acted - {r.stage for r in reports if r.stage == "loudness"
                    and r.details.get("limiter_passes", 1) == 0}


class OutputMeter:
    """The output's side of the comparison, measured a block at a time (a long file's output
    is never held): ``add`` every block of the output in order, then count the clipped runs
    on a second reading (:meth:`clip_runs`: every block again, or only those
    :meth:`hot_blocks` names, :meth:`~genrestore.analysis.ClipRuns.skip` over the rest), then
    :meth:`finish`.

    The octave levels come from Welch's long-term spectrum, as the input's do
    (:func:`~genrestore.analysis.long_term_spectrum`: an STFT's wider main lobe would leak a
    strong bass note just under 125 Hz over a loss in the octave above it, on both sides
    alike, so the loss would go unseen); the noise floor under the input's cutoff from an
    STFT with the input's bin width in Hz (the quietest bins between partials depend on it,
    :func:`~genrestore.analysis.noise_floor_dbfs`).  A mono input
    made stereo by the ``stereo`` stage is measured through its mid (see the module's text).
    :meth:`finish` takes the output's integrated loudness (the loudness stage's figure); the
    mid's, not the output's, is measured here unless given as ``mid_lufs``."""

    def __init__(self, base: Baseline, rate: int, channels: int, length: int,
                 reports: tuple[StageReport, ...], *, mid_lufs: float | None = None) -> None:
        analysis = base.analysis
        self.base, self.rate = base, rate
        self.mid = "stereo" in _acted(reports)
        self.channels = 1 if self.mid else channels
        self.mid_lufs = mid_lufs
        self.loudness = (LoudnessSum(1, rate) if self.mid and mid_lufs is None else None)
        self.stft = self.welch = None
        if base.floor_to_loudness_db is not None:
            n_fft = n_fft_near(default_n_fft(analysis.sample_rate) * rate / analysis.sample_rate)
            self.stft = StftMeasures(self.channels, length, rate, n_fft, analysis.cutoff_hz)
        if (base.octave_levels_db is not None and base.octave_music_db is not None
                and analysis.duration_s >= MIN_BAND_CHECK_S):
            self.welch = WelchSum(self.channels, long_term_segment(rate))
        self.length = length
        self.high = np.full(self.channels, -np.inf)
        self.low = np.full(self.channels, np.inf)
        self.block_extremes: list[tuple[np.ndarray, np.ndarray]] = []

    def view(self, block: np.ndarray) -> np.ndarray:
        """What is measured of an output block: itself, or its mid."""
        block = as_channels(block)
        return block.mean(axis=0, keepdims=True) if self.mid else block

    def add(self, block: np.ndarray) -> None:
        x = self.view(block)
        if self.stft is not None:
            self.stft.add(x)
        if self.welch is not None:
            self.welch.add(x)
        if self.loudness is not None:
            self.loudness.add(x)
        if x.shape[-1]:
            high, low = x.max(axis=-1), x.min(axis=-1)
            self.block_extremes.append((high, low))
            self.high, self.low = np.maximum(self.high, high), np.minimum(self.low, low)

    def clip_runs(self) -> ClipRuns:
        """The counter of the second reading, from the extremes of the first."""
        return ClipRuns(self.high, self.low, self.length)

    def hot_blocks(self) -> list[int]:
        """The blocks (by order of :meth:`add`) the clipped runs must read: those holding a
        sample on a channel's top or bottom, and their neighbours (for the steps either side
        of a flat top); the others hold no sample of one."""
        counter = self.clip_runs()
        hot: set[int] = set()
        for k, (high, low) in enumerate(self.block_extremes):
            for c, sign, _, level, _ in counter.sides:
                if (high[c] >= level) if sign > 0 else (low[c] <= -level):
                    hot.update((k - 1, k, k + 1))
        return sorted(k for k in hot if 0 <= k < len(self.block_extremes))

    def finish(self, clipped_runs: int, output_lufs: float) -> Measures:
        analysis = self.base.analysis
        lufs = output_lufs
        if self.mid:
            lufs = self.mid_lufs if self.mid_lufs is not None else float("nan")
            if self.loudness is not None:
                self.loudness.finish()
                lufs = gated_lufs(self.loudness.energies(self.loudness.blocks[0]))
        octaves, floor = None, None
        if self.stft is not None:
            (floor,) = self.stft.finish((analysis.cutoff_hz,))
        if self.welch is not None:
            octaves = _octave_levels(*self.welch.level_db(self.rate),
                                     min(analysis.cutoff_hz, 8000.0))
        return Measures(octaves, floor, lufs, clipped_runs)


def measure(base: Baseline, after: np.ndarray, after_rate: int,
            reports: tuple[StageReport, ...], *, output_lufs: float | None = None) -> Measures:
    """:class:`OutputMeter` over an output held in memory (its loudness, when not given,
    measured at once: :func:`~genrestore.analysis.integrated_lufs`)."""
    after = as_channels(after)
    mid = "stereo" in _acted(reports)
    mid_lufs = integrated_lufs(after.mean(axis=0, keepdims=True), after_rate) if mid else None
    if output_lufs is None and not mid:
        output_lufs = integrated_lufs(after, after_rate)
    meter = OutputMeter(base, after_rate, after.shape[0], after.shape[-1], reports,
                        mid_lufs=mid_lufs)
    for block in array_blocks(after)():
        meter.add(block)
    counter = meter.clip_runs()
    counter.add(meter.view(after))
    return meter.finish(counter.finish()[0], float("nan") if output_lufs is None else output_lufs)


def compare(base: Baseline, measured: Measures, reports: tuple[StageReport, ...], *,
            max_band_loss_db: float = MAX_BAND_LOSS_DB,
            max_floor_rise_db: float = MAX_FLOOR_RISE_DB) -> list[Finding]:
    """What got worse from the input (``base``) to the output (``measured``); empty when
    nothing did.  The one definition of every check, whether the output was held in memory
    (:func:`check`) or read a block at a time (a long file, :mod:`genrestore.stream`)."""
    analysis = base.analysis
    acted = _acted(reports)
    findings: list[Finding] = []
    out = measured.octave_levels_db
    if out is not None and base.octave_levels_db is not None and base.octave_music_db is not None:
        # A reference match changes octaves on purpose (``match`` is asked for, not blamed).
        intended = _intended_octave_change(reports, base.octave_levels_db.size)
        gain = float(median(out - intended - base.octave_levels_db))  # the level change
        # What each octave lost beyond the gain change, counting from the input's music
        # (its level less the noise floor): removing hiss is not a loss.
        loss = float(np.max(base.octave_music_db + gain + intended - out, initial=0.0))
        if loss > max_band_loss_db:
            blame = next((s for s in BAND_CUTTERS if s in acted), "")
            findings.append(Finding(blame, f"lost {loss:.1f} dB in an octave under the cutoff"))
    if (measured.floor_dbfs is not None and base.floor_to_loudness_db is not None
            and np.isfinite(measured.lufs)):
        # Over the input's own band (bandwidth extension fills empty bins on purpose).
        floor_out = measured.floor_dbfs - measured.lufs
        rise = floor_out - base.floor_to_loudness_db - _intended_floor_rise(reports)
        # A floor still 60 dB under the loudness is inaudible, however much it rose.
        if rise > max_floor_rise_db and floor_out > -INAUDIBLE_FLOOR_DB:
            blame = next((s for s in FLOOR_RISERS if s in acted), "")
            findings.append(Finding(blame, f"noise floor up {rise:.1f} dB against the loudness"))
    if measured.clipped_runs > analysis.clipped_runs:
        findings.append(Finding("", f"{measured.clipped_runs - analysis.clipped_runs} new "
                                    "clipped runs"))
    return findings


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
    """What got worse from the input (``base``) to ``after``; empty when nothing did:
    :func:`compare` of :func:`measure`.  ``output_lufs`` is ``after``'s integrated loudness
    when it is already measured (the loudness stage's figure); it is measured here otherwise."""
    return compare(base, measure(base, after, after_rate, reports, output_lufs=output_lufs),
                   reports, max_band_loss_db=max_band_loss_db,
                   max_floor_rise_db=max_floor_rise_db)
