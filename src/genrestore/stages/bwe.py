"""Bandwidth extension by spectral band replication (SBR), all DSP.

Above the detected cutoff there is nothing to boost, so new content is made: the band
just below the cutoff is translated upward in patches (a single-sideband frequency shift
in the STFT domain, with the per-frame phase advance that keeps the shift coherent across
overlapping frames).  Each patch keeps its source band's time envelope frame by frame, so
hats stay hats and decays stay decays.  Its long-term level is set to an envelope
extrapolated from the spectral slope just below the cutoff (a straight line in dB against
log-frequency, plus an extra roll-off), minus whatever energy is already there; a
raised-cosine fade starts it at the cutoff and ends it at ``max_freq_hz``.  Bins below the
cutoff are not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genrestore.errors import ParameterError
from genrestore.io import as_channels
from genrestore.spectral import OVERLAP, Spectrogram, bin_power_sum, istft, stft, window_energy
from genrestore.stages.base import Context, SpectralStage, StageReport, decision, skipped

#: The source band is [SOURCE_LOW, SOURCE_HIGH] x cutoff: below the codec's transition band.
SOURCE_LOW, SOURCE_HIGH = 0.5, 0.93
#: Below this there is too little band to replicate from, and a "cutoff" this low is in
#: practice a dark recording's roll-off rather than a generator's band limit (those sit at
#: 7-16 kHz); replicating 3 kHz of tonal content upwards hurts such music (`genrestore bench`).
MIN_CUTOFF_HZ = 6000.0
#: The extrapolated slope is clamped to this range (dB per octave): a dark recording keeps
#: its own steep slope, so the new band is as quiet as its music implies.
SLOPE_RANGE_DB_PER_OCT = (-60.0, -3.0)
#: How the new band's envelope is found (see :class:`BandwidthExtension`).
METHODS = ("dsp", "model")


@dataclass(frozen=True)
class BandPlan:
    """Which bins get new content, from which source bins, at what gain: ``gains`` is
    ``(targets,)`` (one long-term envelope) or ``(channels, frames, targets)`` (per frame).
    Target bins are distinct (each gets one patch)."""

    target_bins: np.ndarray
    source_bins: np.ndarray
    gains: np.ndarray
    slope_db_per_oct: float
    #: How far the copied band's fine structure is flattened (:func:`whitened_power`), 0..1.
    whiten: float = 0.0


def _top_hz(spec: Spectrogram, max_freq_hz: float) -> float:
    """Where the new band ends: ``max_freq_hz``, or just under the Nyquist frequency."""
    return min(max_freq_hz, 0.96 * spec.sample_rate / 2.0)


def patch_bins(spec: Spectrogram, cutoff_hz: float, max_freq_hz: float = 20000.0
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(target_bins, source_bins)``: the bins from the cutoff to the top and the bins each
    is copied from (the source band repeated upward); ``None`` when there is nothing to extend."""
    top_hz = _top_hz(spec, max_freq_hz)
    if cutoff_hz < MIN_CUTOFF_HZ or cutoff_hz >= 0.92 * top_hz:
        return None
    k_cut, k_top = spec.bin_of(cutoff_hz), spec.bin_of(top_hz)
    k_src0, k_src1 = spec.bin_of(SOURCE_LOW * cutoff_hz), spec.bin_of(SOURCE_HIGH * cutoff_hz)
    width = k_src1 - k_src0
    if width < 8 or k_top <= k_cut:
        return None
    target = np.arange(k_cut, k_top + 1)
    return target, k_src0 + (target - k_cut) % width


#: The width (Hz) over which whitening spreads each frame's power along frequency: about one
#: harmonic spacing of a note in the source band, so its partials' peaks and the gaps between
#: them meet.
WHITEN_HZ = 360.0


def _whiten_bins(spec: Spectrogram) -> int:
    """:data:`WHITEN_HZ` in bins of ``spec``, odd."""
    return 2 * max(1, round(WHITEN_HZ / (spec.sample_rate / spec.n_fft) / 2.0)) + 1


def whitened_power(power: np.ndarray, whiten: float, size: int) -> np.ndarray:
    """The power the copied band gets from source bins of ``power`` (along the last axis)
    when its fine structure is flattened by ``whiten``: ``(1 - whiten) * power + whiten *
    running_mean(power, size)``.  Linear in the power, so it holds for a frame's power and
    for the long-term power alike: the plan's gains keep the envelope exact."""
    from genrestore.filters import running_mean

    if whiten == 0.0:
        return power
    return (1.0 - whiten) * power + whiten * running_mean(power, size, axis=-1)


def _fade(freqs: np.ndarray, cutoff_hz: float, top_hz: float, transition_hz: float) -> np.ndarray:
    """Raised-cosine fade in from the cutoff and out towards the top."""
    fade_in = np.clip((freqs - cutoff_hz) / transition_hz, 0.0, 1.0)
    fade_out = np.clip((top_hz - freqs) / (2.0 * transition_hz), 0.0, 1.0)
    return np.sin(0.5 * np.pi * fade_in) ** 2 * np.sin(0.5 * np.pi * fade_out) ** 2


def plan_extension(
    spec: Spectrogram,
    cutoff_hz: float,
    *,
    strength: float = 1.0,
    max_freq_hz: float = 20000.0,
    extra_rolloff_db_per_oct: float = -3.0,
    transition_hz: float = 600.0,
    long_term_power: np.ndarray | None = None,
    whiten: float = 0.0,
) -> BandPlan | None:
    """Work out the patches and their gains; ``None`` when there is nothing to extend.
    ``long_term_power`` is the mean power per bin of the whole input when ``spec`` is one
    segment of it (:mod:`genrestore.stream`); by default ``spec``'s own.  ``whiten``
    flattens the copied band's fine structure (:func:`whitened_power`): 0 copies the source
    band as it is, 1 spreads each frame's power evenly over :data:`WHITEN_HZ`."""
    bins = patch_bins(spec, cutoff_hz, max_freq_hz)
    if bins is None:
        return None
    target, source = bins
    freqs = spec.freqs_hz
    top_hz = _top_hz(spec, max_freq_hz)
    count = max(spec.data.shape[0] * spec.data.shape[1], 1)
    power = (long_term_power if long_term_power is not None
             else bin_power_sum(spec.data) / count)  # mean power per bin
    level_db = 10.0 * np.log10(np.maximum(power, 1e-20))
    # Straight-line fit of level (dB) against log2(frequency) over the source band.
    src = np.arange(spec.bin_of(SOURCE_LOW * cutoff_hz), spec.bin_of(SOURCE_HIGH * cutoff_hz))
    octave = np.log2(freqs[src] / cutoff_hz)
    slope, intercept = np.polyfit(octave, level_db[src], 1)
    slope = float(np.clip(slope, *SLOPE_RANGE_DB_PER_OCT))
    intercept = float(np.mean(level_db[src] - slope * octave))  # refit with the clamped slope
    target_octave = np.log2(freqs[target] / cutoff_hz)
    target_db = intercept + (slope + extra_rolloff_db_per_oct) * target_octave
    wanted = np.maximum(10.0 ** (target_db / 10.0) - power[target], 0.0)
    copied = whitened_power(power, whiten, _whiten_bins(spec))[source]
    gains = np.sqrt(wanted / np.maximum(copied, 1e-20))
    gains = (gains * _fade(freqs[target], cutoff_hz, top_hz, transition_hz) * strength)
    return BandPlan(target, source, gains.astype(np.float32), slope, whiten)


#: The model's envelope may raise the copied band by at most this much (dB): beyond it the
#: source band holds too little to shape (a near-silent frame) and only its noise would grow.
MODEL_MAX_GAIN_DB = 30.0


def plan_model_extension(
    spec: Spectrogram,
    cutoff_hz: float,
    levels: np.ndarray,
    *,
    strength: float = 1.0,
    max_freq_hz: float = 20000.0,
    transition_hz: float = 200.0,
) -> BandPlan | None:
    """Patches as :func:`plan_extension`, shaped frame by frame to the band levels the model
    predicts (``levels``: ``(channels, frames, BANDS)`` log10 power per bin, from
    :func:`genrestore.model.predict_levels`).  In each band above the cutoff the copied
    content is scaled so that it plus what is already there reaches the predicted level; the
    band gains are interpolated (in dB) between the bands' centres, so no band edge shows."""
    from genrestore.model.features import BANDS, band_index

    bins = patch_bins(spec, cutoff_hz, max_freq_hz)
    if bins is None:
        return None
    target, source = bins
    freqs = spec.freqs_hz[target]
    top_hz = _top_hz(spec, max_freq_hz)
    scale = np.float32(window_energy(spec.n_fft))
    src_power = (np.abs(spec.data[:, :, source]) ** 2) / scale
    have_power = (np.abs(spec.data[:, :, target]) ** 2) / scale
    band = band_index(spec.n_fft, spec.sample_rate)[target]
    band = np.where(band < 0, BANDS - 1, band)
    present = np.unique(band)
    member = (band[:, None] == present[None, :]).astype(np.float32)
    member /= member.sum(axis=0, keepdims=True)  # mean over the band's target bins
    exc = src_power @ member  # (channels, frames, present bands)
    have = have_power @ member
    wanted = np.maximum(10.0 ** levels[:, :, present].astype(np.float64) - have, 0.0)
    gain = np.sqrt(wanted / np.maximum(exc, 1e-30))
    gain = np.where(exc > 1e-30, np.minimum(gain, 10.0 ** (MODEL_MAX_GAIN_DB / 20.0)), 0.0)
    centres = (freqs[:, None] * member).sum(axis=0)
    spread = np.stack([np.interp(freqs, centres, np.eye(present.size)[j])
                       for j in range(present.size)], axis=1)  # (targets, present bands)
    per_bin = np.exp(np.log(np.maximum(gain, 1e-6)) @ spread.T)
    per_bin *= _fade(freqs, cutoff_hz, top_hz, transition_hz) * strength
    return BandPlan(target, source, per_bin.astype(np.float32), float("nan"))


def _runs(target: np.ndarray, source: np.ndarray) -> list[tuple[int, int, int]]:
    """``(first target bin, first source bin, length)`` of each stretch where both step by one
    bin together (a patch copies a contiguous source band onto a contiguous target band)."""
    breaks = np.flatnonzero((np.diff(target) != 1) | (np.diff(source) != 1)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [target.size]])
    return [(int(target[a]), int(source[a]), int(b - a)) for a, b in zip(starts, ends, strict=True)]


_QUARTER_TURNS = np.array([1, 1j, -1, -1j], dtype=np.complex64)  # exp(j*pi/2 * n)


def extend_spectrum(spec: Spectrogram, plan: BandPlan, frame_offset: int = 0) -> Spectrogram:
    """Add the planned patches to ``spec`` (bins below the cutoff are left exactly as they were);
    ``frame_offset`` is the index of ``spec``'s first frame in the whole file's STFT (the
    shift's phase advances with the file's frames, so segments join without a phase step).

    A patch moved by ``d`` bins turns by a quarter turn times ``d`` per hop (the STFT's hop is
    a quarter of its window), so frames with the same file index modulo 4 share one
    rotation: each such set of frames and each contiguous patch is one sliced operation."""
    if plan.target_bins.size == 0:
        return spec.replace(spec.data.copy())
    shift = (plan.target_bins - plan.source_bins) % OVERLAP  # phase advance per hop, in quarters
    per_frame = plan.gains.ndim == 3
    out = spec.data.copy()
    source, first_bin = spec.data, 0  # what is copied, and the bin its last axis starts at
    if plan.whiten:  # each frame's source band, its power spread (whitened_power), same phases
        size = _whiten_bins(spec)
        lo, hi = int(plan.source_bins.min()), int(plan.source_bins.max()) + 1
        # The spreading reads half a window either side, as the plan's did on the whole
        # spectrum: the copied power is then the one the gains were worked out for.
        wide = slice(max(0, lo - size // 2), min(spec.data.shape[-1], hi + size // 2))
        power = spec.data[..., wide].real ** 2 + spec.data[..., wide].imag ** 2
        spread = whitened_power(power, plan.whiten, size)
        inner = slice(lo - wide.start, hi - wide.start)
        scale = np.sqrt(spread[..., inner] / np.maximum(power[..., inner], 1e-30))
        source, first_bin = spec.data[..., lo:hi] * scale.astype(np.float32), lo
    frames = spec.data.shape[1]
    for phase in range(OVERLAP):
        rows = slice((phase - frame_offset) % OVERLAP, frames, OVERLAP)
        factor = _QUARTER_TURNS[(phase * shift) % OVERLAP]
        factor = factor * plan.gains[:, rows] if per_frame else factor * plan.gains
        k = 0
        for first, at, length in _runs(plan.target_bins, plan.source_bins):
            at -= first_bin
            out[:, rows, first:first + length] += (source[:, rows, at:at + length]
                                                   * factor[..., k:k + length])
            k += length
    return spec.replace(out)


def extend_bandwidth(
    audio: np.ndarray,
    sample_rate: int,
    *,
    cutoff_hz: float,
    strength: float = 1.0,
    max_freq_hz: float = 20000.0,
    extra_rolloff_db_per_oct: float = -3.0,
    method: str = "dsp",
    weights: str = "",
) -> np.ndarray:
    """Regenerate content between ``cutoff_hz`` and ``max_freq_hz`` in ``(channels, samples)``
    or 1-D (mono) audio; returns ``(channels, samples)``.

    ``strength`` scales the new band's amplitude (1 = on the extrapolated envelope);
    ``extra_rolloff_db_per_oct`` tilts the envelope further down above the cutoff.
    ``method="model"`` shapes the copied band frame by frame to the envelope the learned model
    predicts (:mod:`genrestore.model`; ``weights`` names an ``.npz`` other than the shipped
    one) instead of the extrapolated long-term slope.  The parameters follow
    :class:`BandwidthExtension`'s rules, and ``cutoff_hz`` must be positive.  Returns the
    input unchanged when the cutoff is already near ``max_freq_hz``.
    """
    stage = BandwidthExtension(strength=strength, max_freq_hz=max_freq_hz,
                               extra_rolloff_db_per_oct=extra_rolloff_db_per_oct,
                               cutoff_hz=cutoff_hz, method=method, weights=weights)
    if not cutoff_hz > 0.0:
        raise ParameterError("extend_bandwidth needs a positive cutoff_hz")
    x = as_channels(audio)
    spec = stft(x, sample_rate)
    plan = stage.plan(spec, cutoff_hz)
    if plan is None:
        return x
    return istft(extend_spectrum(spec, plan))


@dataclass(frozen=True)
class BandwidthExtension(SpectralStage):
    """Stage form of :func:`extend_bandwidth`; the cutoff comes from the input's analysis."""

    name: ClassVar[str] = "bwe"
    strength: float = 1.0
    max_freq_hz: float = 20000.0
    extra_rolloff_db_per_oct: float = -3.0
    cutoff_hz: float = 0.0  # 0 = use the detected cutoff
    #: When true, leave a full-band input alone (its band ends where its sample rate does:
    #: nothing was cut, and extending its top octave mostly extends hiss).
    adaptive: bool = False
    #: "dsp": the long-term envelope extrapolated from the slope below the cutoff; "model":
    #: the learned model's envelope, frame by frame (:mod:`genrestore.model`).
    method: str = "dsp"
    #: With ``method = "model"``: an ``.npz`` of weights to use instead of the shipped ones.
    weights: str = ""
    #: How far the copied band's fine structure is flattened, 0 (copied as it is) to 1
    #: (each frame's power spread over :data:`WHITEN_HZ`), ``method = "dsp"`` only.  The
    #: per-bin gains put every new bin on the envelope in the long term; copied as it is, the
    #: gaps between the source's partials (leakage and floor, 30-40 dB under them) get that
    #: much more gain than the partials, and a partial that comes and goes is copied as a
    #: line.  Whitened, gaps and partials get about the same gain.
    whiten: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.whiten <= 1.0:
            raise ParameterError("bwe.whiten must be between 0 and 1")
        if self.method not in METHODS:
            raise ParameterError(f"bwe.method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not 0.0 <= self.strength <= 2.0:
            raise ParameterError("bwe.strength must be between 0 and 2")
        if not 4000.0 <= self.max_freq_hz <= 24000.0:
            raise ParameterError("bwe.max_freq_hz must be between 4000 and 24000")
        if not -24.0 <= self.extra_rolloff_db_per_oct <= 0.0:
            raise ParameterError("bwe.extra_rolloff_db_per_oct must be between -24 and 0")
        if self.cutoff_hz < 0.0:
            raise ParameterError("bwe.cutoff_hz must be 0 (detect) or positive")

    def apply_spectrum(self, spec: Spectrogram, context: Context) -> tuple[Spectrogram, StageReport]:
        cutoff = self.cutoff_hz or context.analysis.cutoff_hz
        _, declined = decision(self, context, spec.sample_rate)
        if declined is not None:
            return spec, declined
        plan = self.plan(spec, cutoff, context.long_term_power)
        if plan is None:
            why = (f"cutoff {cutoff / 1000:.1f} kHz is full band" if cutoff >= MIN_CUTOFF_HZ
                   else f"no usable band below {MIN_CUTOFF_HZ / 1000:g} kHz")
            return spec, skipped(self.name, why, cutoff_hz=cutoff)
        top = float(spec.freqs_hz[plan.target_bins[-1]])
        summary = f"bwe {cutoff / 1000:.1f}->{top / 1000:.1f} kHz"
        details: dict[str, object] = {"cutoff_hz": round(cutoff, 1), "top_hz": round(top, 1),
                                      "method": self.method}
        if self.method == "dsp":
            details["slope_db_per_oct"] = round(plan.slope_db_per_oct, 2)
        else:
            summary += " (model)"
        return (extend_spectrum(spec, plan, context.frame_offset),
                StageReport(self.name, True, summary, details))

    def plan(self, spec: Spectrogram, cutoff_hz: float,
             long_term_power: np.ndarray | None = None) -> BandPlan | None:
        """The patches and gains this stage's method gives ``spec`` (``None``: nothing to do);
        ``long_term_power`` as for :func:`plan_extension`."""
        if self.method == "dsp":
            return plan_extension(spec, cutoff_hz, strength=self.strength,
                                  max_freq_hz=self.max_freq_hz,
                                  extra_rolloff_db_per_oct=self.extra_rolloff_db_per_oct,
                                  long_term_power=long_term_power, whiten=self.whiten)
        from genrestore.model import load_model, predict_levels

        bins = patch_bins(spec, cutoff_hz, self.max_freq_hz)
        if bins is None:
            return None
        levels = predict_levels(spec, cutoff_hz, load_model(self.weights or None), bins)
        return plan_model_extension(spec, cutoff_hz, levels, strength=self.strength,
                                    max_freq_hz=self.max_freq_hz)
