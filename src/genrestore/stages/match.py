"""Reference matching: give a clip the long-term spectrum (1/3-octave bands) and the loudness
of a reference track, as a mastering engineer's "match EQ" or matchering does.

The clip's and the reference's long-term levels are read in the 31 base-10 third-octave
bands of IEC 61260 (20 Hz to 20 kHz) from a Welch spectrum of about half-second segments,
each bin counted in a band by the fraction of its width that lies in it, so a band's level
does not jump with the bin grid (the same music at 44.1 and 48 kHz reads within 0.01 dB).
The difference, reference minus clip, is normalised to zero mean over the matched bands
(the level is the loudness stage's business), scaled by ``strength`` and clamped to
``-max_cut_db .. +max_boost_db`` (24 and 12 dB: a boost raises the clip's hiss and rumble
with its music, a cut lowers them, so cuts may go twice as deep; with cuts held to 12 dB too,
`genrestore bench --match` read 3.36 dB after matching instead of 2.68).  It is matched
only from ``low_hz`` (60 Hz) to the lowest
of the clip's own cutoff, the reference's cutoff and ``high_hz`` (16 kHz): a band counts
when its centre is at or above ``low_hz`` and its upper edge at or below that top; outside,
the correction fades out (raised cosine, an octave below, a third of an octave above), and
above the clip's cutoff it may cut but never boost: there is nothing there to boost until
bandwidth extension has made it (so the stage runs after ``bwe``).

The correction is a linear-phase FIR (frequency sampling of the band values interpolated
against log-frequency, Hann-windowed, a quarter of a second long) applied by FFT
overlap-add with its delay removed: the output is aligned with the input sample for sample.
The band values are refined a few times against the designed filter's own response on the
clip's spectrum, so each band lands on its target despite the interpolation between band
centres and the window's smoothing.  A clip matched to itself gets a correction of exactly
zero and is returned unchanged; ``strength=0`` likewise.

The loudness is matched by the loudness stage: with ``loudness = true`` (the default),
:func:`resolve_references` makes the reference's integrated loudness the target of the
preset's ``loudness`` stage (which also keeps the true-peak ceiling).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from genrestore.analysis import (
    effective_bandwidth_hz,
    estimate_cutoff_hz,
    integrated_lufs,
    welch_psd,
)
from genrestore.errors import AudioFileError, ParameterError
from genrestore.filters import fir_filter_centred
from genrestore.io import as_channels
from genrestore.stages.base import Context, StageReport, skipped

if TYPE_CHECKING:
    from genrestore.preset import Preset

#: Centres (Hz) of the base-10 third-octave bands of IEC 61260, 20 Hz to 20 kHz.
BAND_CENTRES_HZ = tuple(float(1000.0 * 10.0 ** (k / 10.0)) for k in range(-17, 14))
#: A band spans ``centre / BAND_EDGE`` to ``centre * BAND_EDGE``.
BAND_EDGE = float(10.0 ** (1.0 / 20.0))
#: Bands more than this far under the loudest band of either spectrum are empty or noise:
#: they are neither matched nor measured.
BAND_RANGE_DB = 80.0
#: Refinements of the band values against the designed filter's response, and how far
#: they may move a band's value from the change wanted there: enough to undo the spill of
#: the interpolation between neighbouring bands, not enough to build an EQ whose bands
#: swing against each other to chase a few notes (a 10 s excerpt's bass bands are single
#: notes).
REFINE_ROUNDS = 4
REFINE_LIMIT_DB = 3.0
#: Loudness targets the loudness stage accepts (``loudness.target_lufs``).
TARGET_RANGE_LUFS = (-40.0, -5.0)


def _welch_size(sample_rate: int) -> int:
    """Welch segment length: half a second (1/0.5 s = 2 Hz bins, several in the narrowest
    band matched, 56-71 Hz).  The same duration at every rate, so the same music at two
    rates is cut into the same segments and reads the same band levels."""
    return 2 * round(0.25 * sample_rate)


def _band_weights(freqs: np.ndarray) -> np.ndarray:
    """``(bands, bins)``: how many Hz of each bin's span ``f +- df/2`` lie in each band, so
    ``weights @ psd`` is each band's power."""
    df = float(freqs[1] - freqs[0]) if freqs.size > 1 else 1.0
    centres = np.asarray(BAND_CENTRES_HZ)
    lo, hi = centres / BAND_EDGE, centres * BAND_EDGE
    left, right = freqs - df / 2.0, freqs + df / 2.0
    overlap = np.minimum(hi[:, None], right[None, :]) - np.maximum(lo[:, None], left[None, :])
    return np.maximum(overlap, 0.0)


def _levels_db(power: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.maximum(power, 0.0))


def _spectrum(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    freqs, psd = welch_psd(as_channels(audio), sample_rate, _welch_size(sample_rate))
    return freqs, psd, _band_weights(freqs)


def band_levels_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Long-term level (dB, power summed over the band, channels averaged) of
    ``(channels, samples)`` or 1-D audio in each band of :data:`BAND_CENTRES_HZ`;
    ``-inf`` where a band holds no power or lies above the Nyquist frequency."""
    _, psd, weights = _spectrum(audio, sample_rate)
    return _levels_db(weights @ psd)


@dataclass(frozen=True)
class ReferenceProfile:
    """What matching needs of a reference track: its level in each band of
    :data:`BAND_CENTRES_HZ` (dB, ``-inf`` when empty), its cutoff and integrated loudness,
    and the SHA-256 of what it was measured from (a file's bytes, or the samples and rate),
    so two profiles of different content never compare or print alike.  ``source`` (the
    file, for messages) is left out of comparisons and of the repr: a batch's settings
    digest depends on the reference's content, not on where it lies."""

    levels_db: tuple[float, ...]
    cutoff_hz: float
    integrated_lufs: float
    sha256: str
    source: str = field(default="", compare=False, repr=False)

    @property
    def name(self) -> str:
        return Path(self.source).name if self.source else "reference"


def reference_profile(audio: np.ndarray, sample_rate: int, *, sha256: str = "",
                      source: str = "") -> ReferenceProfile:
    """Measure a reference track (``(channels, samples)`` or 1-D float audio).  ``sha256``
    defaults to the hash of the samples (float32) and the rate.  A silent reference is a
    :class:`ParameterError`: there is nothing to match."""
    x = as_channels(audio)
    levels = band_levels_db(x, sample_rate)
    if not np.isfinite(levels).any():
        raise ParameterError(f"{source or 'reference'}: the reference is silent (nothing to match)")
    if not sha256:
        digest = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes())
        digest.update(f"{sample_rate}:{x.shape}".encode())
        sha256 = digest.hexdigest()
    return ReferenceProfile(tuple(float(v) for v in levels),
                            float(effective_bandwidth_hz(x, sample_rate)),
                            float(integrated_lufs(x, sample_rate)), sha256, source)


def load_reference(path: str | os.PathLike[str]) -> ReferenceProfile:
    """:func:`reference_profile` of an audio file, hashed by its bytes.  An unreadable or
    silent file raises :class:`~genrestore.errors.AudioFileError` naming it."""
    from genrestore.io import read_audio
    from genrestore.manifest import file_digest

    audio, rate = read_audio(path)
    try:
        return reference_profile(audio, rate, sha256=file_digest(path), source=str(path))
    except ParameterError as exc:
        raise AudioFileError(path, "silent: nothing to match") from exc


@dataclass(frozen=True)
class MatchPlan:
    """The correction :func:`plan_match` designed for one clip: the matched bands (centres,
    Hz), the change wanted in each (dB: strength x the zero-mean difference, before
    clamping) and the values the filter was designed from (clamped, refined), the matched
    range, the RMS band difference (dB, level removed) before and as predicted after, and
    the FIR (``None`` when the correction is zero)."""

    bands_hz: tuple[float, ...]
    wanted_db: tuple[float, ...]
    correction_db: tuple[float, ...]
    low_hz: float
    high_hz: float
    rms_before_db: float
    rms_after_db: float
    taps: np.ndarray | None = field(default=None, repr=False, compare=False)


def _taper(freqs: np.ndarray, start_hz: float, end_hz: float) -> np.ndarray:
    """1 on the ``start_hz`` side, 0 beyond ``end_hz``, a raised cosine in log-frequency."""
    logf = np.log2(np.maximum(freqs, 1e-3))
    ramp = np.clip((logf - np.log2(end_hz)) / (np.log2(start_hz) - np.log2(end_hz)), 0.0, 1.0)
    return np.sin(0.5 * np.pi * ramp) ** 2


def correction_curve(freqs: np.ndarray, bands_hz: np.ndarray, values_db: np.ndarray,
                     clip_cutoff_hz: float) -> np.ndarray:
    """The correction (dB) at ``freqs``: the band values interpolated against log-frequency
    between band centres, held to the outer band edges, faded out over an octave below and a
    third of an octave above them, and never positive at or above ``clip_cutoff_hz``."""
    logf = np.log2(np.maximum(freqs, 1e-3))
    curve = np.interp(logf, np.log2(bands_hz), values_db)
    low_edge, high_edge = bands_hz[0] / BAND_EDGE, bands_hz[-1] * BAND_EDGE
    curve *= _taper(freqs, low_edge, low_edge / 2.0) * _taper(freqs, high_edge,
                                                               high_edge * 2.0 ** (1.0 / 3.0))
    above = freqs >= clip_cutoff_hz
    curve[above] = np.minimum(curve[above], 0.0)
    return curve


def fir_taps(sample_rate: int) -> int:
    """The correction FIR's length: odd, about a quarter of a second (its Hann window's
    main lobe is +-8 Hz wide at any rate)."""
    return 2 * round(sample_rate / 8.0) + 1


def design_fir(sample_rate: int, bands_hz: np.ndarray, values_db: np.ndarray,
               clip_cutoff_hz: float) -> np.ndarray:
    """Linear-phase FIR of :func:`fir_taps` taps whose magnitude follows
    :func:`correction_curve` (frequency sampling on a grid four times finer than the
    filter, Hann window).  All-zero values give exactly the unit impulse."""
    taps = fir_taps(sample_rate)
    size = 1 << int(np.ceil(np.log2(4 * taps)))
    grid = np.fft.rfftfreq(size, 1.0 / sample_rate)
    gain = 10.0 ** (correction_curve(grid, bands_hz, values_db, clip_cutoff_hz) / 20.0)
    impulse = np.fft.irfft(gain, size)  # zero phase: symmetric about sample 0
    half = taps // 2
    centred = np.concatenate([impulse[size - half:], impulse[: half + 1]])
    return centred * np.hanning(taps)


def _power_response(taps: np.ndarray, sample_rate: int, freqs: np.ndarray) -> np.ndarray:
    size = 1 << int(np.ceil(np.log2(4 * taps.size)))
    response = np.abs(np.fft.rfft(taps, size)) ** 2
    return np.interp(freqs, np.fft.rfftfreq(size, 1.0 / sample_rate), response)


def _rms(values: np.ndarray) -> float:
    centred = values - values.mean() if values.size else values
    return float(np.sqrt(np.mean(centred**2))) if values.size else 0.0


def matched_bands(clip_levels_db: np.ndarray, reference: ReferenceProfile, *, low_hz: float,
                  high_hz: float) -> np.ndarray:
    """Mask over :data:`BAND_CENTRES_HZ` of the bands matched (and measured): centre at or
    above ``low_hz``, upper edge at or below ``high_hz``, and within
    :data:`BAND_RANGE_DB` of the loudest band in both the clip and the reference."""
    centres = np.asarray(BAND_CENTRES_HZ)
    ref = np.asarray(reference.levels_db)
    ok = (centres >= low_hz) & (centres * BAND_EDGE <= high_hz)
    for levels in (clip_levels_db, ref):
        finite = np.isfinite(levels)
        top = levels[finite].max() if finite.any() else -np.inf
        ok &= finite & (levels >= top - BAND_RANGE_DB)
    return ok


def spectrum_distance_db(audio: np.ndarray, sample_rate: int, reference: ReferenceProfile, *,
                         low_hz: float = 60.0, high_hz: float = 16000.0) -> float:
    """RMS difference (dB) between the clip's and the reference's band levels over the bands
    :func:`matched_bands` keeps, the mean difference (the level) removed: 0 for the same
    spectral balance.  ``nan`` when no band is left."""
    levels = band_levels_db(audio, sample_rate)
    mask = matched_bands(levels, reference, low_hz=low_hz, high_hz=high_hz)
    if not mask.any():
        return float("nan")
    return _rms(np.asarray(reference.levels_db)[mask] - levels[mask])


def plan_match(
    audio: np.ndarray,
    sample_rate: int,
    reference: ReferenceProfile,
    *,
    strength: float = 1.0,
    max_boost_db: float = 12.0,
    max_cut_db: float = 24.0,
    low_hz: float = 60.0,
    high_hz: float = 16000.0,
) -> MatchPlan:
    """Design the correction that gives ``audio`` the reference's spectral balance (see the
    module's text); :func:`match_reference` applies it."""
    x = as_channels(audio)
    freqs, psd, weights = _spectrum(x, sample_rate)
    clip_levels = _levels_db(weights @ psd)
    cutoff = estimate_cutoff_hz(x, sample_rate)
    top = min(cutoff, reference.cutoff_hz, high_hz, 0.5 * sample_rate)
    mask = matched_bands(clip_levels, reference, low_hz=low_hz, high_hz=top)
    bands = np.asarray(BAND_CENTRES_HZ)[mask]
    if bands.size < 2:
        return MatchPlan((), (), (), low_hz, top, 0.0, 0.0)
    difference = np.asarray(reference.levels_db)[mask] - clip_levels[mask]
    wanted = strength * (difference - difference.mean())
    values = np.clip(wanted, -max_cut_db, max_boost_db)
    taps = None
    achieved = np.zeros_like(values)
    if np.any(values != 0.0):
        for _ in range(REFINE_ROUNDS + 1):
            taps = design_fir(sample_rate, bands, values, cutoff)
            power = weights[mask] @ (psd * _power_response(taps, sample_rate, freqs))
            achieved = _levels_db(power) - clip_levels[mask]
            if _ == REFINE_ROUNDS:
                break
            values = np.clip(values + (wanted - achieved), wanted - REFINE_LIMIT_DB,
                             wanted + REFINE_LIMIT_DB)
            values = np.clip(values, -max_cut_db, max_boost_db)
    before = _rms(difference)
    after = _rms(difference - achieved)
    rounded = tuple(round(float(v), 3) for v in bands)
    return MatchPlan(rounded, tuple(float(v) for v in wanted), tuple(float(v) for v in values),
                     float(low_hz), float(top), before, after, taps)


def match_reference(
    audio: np.ndarray,
    sample_rate: int,
    reference: ReferenceProfile,
    *,
    strength: float = 1.0,
    max_boost_db: float = 12.0,
    max_cut_db: float = 24.0,
    low_hz: float = 60.0,
    high_hz: float = 16000.0,
) -> np.ndarray:
    """Give ``(channels, samples)`` or 1-D audio the long-term spectral balance of
    ``reference`` (a :class:`ReferenceProfile`: :func:`load_reference` or
    :func:`reference_profile`); returns ``(channels, samples)``, aligned with the input
    and of its length.  The overall level is left to the loudness stage.  The parameters
    follow :class:`Match`'s rules."""
    Match(reference=reference, strength=strength, max_boost_db=max_boost_db,
          max_cut_db=max_cut_db, low_hz=low_hz, high_hz=high_hz)
    x = as_channels(audio)
    plan = plan_match(x, sample_rate, reference, strength=strength, max_boost_db=max_boost_db,
                      max_cut_db=max_cut_db, low_hz=low_hz, high_hz=high_hz)
    if plan.taps is None:
        return x
    return fir_filter_centred(x, plan.taps).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class Match:
    """Stage form of :func:`match_reference`.  ``reference`` is an audio file (a preset's
    ``reference = "ref.wav"``, read when the stage first runs, or once per batch by
    :func:`resolve_references`) or its :class:`ReferenceProfile`; empty: the stage is idle.
    ``loudness``: :func:`resolve_references` also sets the preset's loudness target to the
    reference's integrated loudness."""

    name: ClassVar[str] = "match"
    reference: str | ReferenceProfile = ""
    strength: float = 1.0
    max_boost_db: float = 12.0
    max_cut_db: float = 24.0
    low_hz: float = 60.0
    high_hz: float = 16000.0
    loudness: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.reference, (str, ReferenceProfile)):
            raise ParameterError("match.reference must be a file name or a ReferenceProfile")
        if not 0.0 <= self.strength <= 1.0:
            raise ParameterError("match.strength must be between 0 and 1")
        for key in ("max_boost_db", "max_cut_db"):
            if not 0.0 <= getattr(self, key) <= 24.0:
                raise ParameterError(f"match.{key} must be between 0 and 24")
        if not 20.0 <= self.low_hz <= 1000.0:
            raise ParameterError("match.low_hz must be between 20 and 1000")
        if not 2000.0 <= self.high_hz <= 20000.0:
            raise ParameterError("match.high_hz must be between 2000 and 20000")

    def profile(self) -> ReferenceProfile | None:
        """The reference's profile (reading the file when ``reference`` names one)."""
        if isinstance(self.reference, ReferenceProfile):
            return self.reference
        return _read_reference(self.reference) if self.reference else None

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        profile = self.profile()
        if profile is None:
            return audio, sample_rate, skipped(self.name, "no reference")
        if self.strength == 0.0:
            return audio, sample_rate, skipped(self.name, "strength 0")
        plan = plan_match(audio, sample_rate, profile, strength=self.strength,
                          max_boost_db=self.max_boost_db, max_cut_db=self.max_cut_db,
                          low_hz=self.low_hz, high_hz=self.high_hz)
        details = {"reference": profile.name, "low_hz": plan.low_hz,
                   "max_boost_db": self.max_boost_db, "max_cut_db": self.max_cut_db,
                   "high_hz": round(plan.high_hz, 1), "bands_hz": list(plan.bands_hz),
                   "wanted_db": [round(v, 2) for v in plan.wanted_db],
                   "correction_db": [round(v, 2) for v in plan.correction_db],
                   "rms_before_db": round(plan.rms_before_db, 2),
                   "rms_after_db": round(plan.rms_after_db, 2)}
        if not plan.bands_hz:
            return audio, sample_rate, skipped(self.name, "no band to match (silent or too "
                                               "narrow)", **details)
        if plan.taps is None:
            return audio, sample_rate, skipped(self.name, "already matches", **details)
        x = as_channels(audio)
        out = fir_filter_centred(x, plan.taps).astype(x.dtype, copy=False)
        lo, hi = min(plan.correction_db), max(plan.correction_db)
        summary = (f"match {profile.name} {plan.low_hz:g} Hz-{plan.high_hz / 1000:.1f} kHz "
                   f"{lo:+.1f}..{hi:+.1f} dB, {plan.rms_before_db:.1f}->"
                   f"{plan.rms_after_db:.1f} dB RMS")
        return out, sample_rate, StageReport(self.name, True, summary, details)


def _read_reference(path: str) -> ReferenceProfile:
    try:
        return load_reference(path)
    except AudioFileError as exc:
        raise ParameterError(f"reference {exc}") from exc


def with_reference(preset: Preset, reference: str | os.PathLike[str] | ReferenceProfile,
                   **params: float | bool) -> Preset:
    """``preset`` with its ``match`` stage(s) set to ``reference`` and ``params``
    (``strength=0.5``, ...); a preset without one gets one just before its ``loudness``
    stage (at the end when it has none), after bandwidth extension and EQ."""
    ref = reference if isinstance(reference, ReferenceProfile) else os.fspath(reference)
    stages = list(preset.stages)
    names = [s.name for s in stages]
    if "match" in names:
        stages = [dataclasses.replace(s, reference=ref, **params) if s.name == "match" else s
                  for s in stages]
    else:
        at = names.index("loudness") if "loudness" in names else len(stages)
        stages.insert(at, Match(reference=ref, **params))  # type: ignore[arg-type]
    return dataclasses.replace(preset, stages=tuple(stages))


def reference_paths(preset: Preset) -> tuple[Path, ...]:
    """The files the preset's match stages read their references from (by path, or, once
    read, by their profile's ``source``): never to be written by a restore."""
    found = []
    for stage in preset.stages:
        if not isinstance(stage, Match) or not stage.reference:
            continue
        source = stage.reference if isinstance(stage.reference, str) else stage.reference.source
        if source:
            found.append(Path(source))
    return tuple(found)


def resolve_references(preset: Preset) -> Preset:
    """``preset`` with every ``match`` stage's reference file read once into its
    :class:`ReferenceProfile` (the same profile for every clip of a batch, and nothing left
    to read per clip), and, for a match stage with ``loudness = true``, the ``loudness``
    stage's target set to the reference's integrated loudness (clamped to -40..-5 LUFS; left
    alone for a reference too short to measure).  An unreadable or silent reference raises
    :class:`ParameterError` naming the file.  A preset without references is returned as it
    is."""
    stages = list(preset.stages)
    cache: dict[str, ReferenceProfile] = {}
    target: float | None = None
    for i, stage in enumerate(stages):
        if not isinstance(stage, Match) or not stage.reference:
            continue
        if isinstance(stage.reference, str):
            if stage.reference not in cache:
                cache[stage.reference] = _read_reference(stage.reference)
            stage = stages[i] = dataclasses.replace(stage, reference=cache[stage.reference])
        lufs = stage.reference.integrated_lufs  # type: ignore[union-attr]
        if stage.loudness and np.isfinite(lufs):
            target = float(np.clip(round(lufs, 2), *TARGET_RANGE_LUFS))
    if target is not None:
        stages = [dataclasses.replace(s, target_lufs=target) if s.name == "loudness" else s
                  for s in stages]
    if not cache and target is None:
        return preset
    return dataclasses.replace(preset, stages=tuple(stages))
