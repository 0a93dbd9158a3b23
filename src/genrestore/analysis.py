"""Measurements of one clip: loudness, peaks, effective bandwidth (cutoff), noise floor.

Levels in dBFS are ``20 * log10(rms)`` of the samples (a full-scale sine is -3.01 dBFS);
loudness follows ITU-R BS.1770-4 (K-weighting, 400 ms blocks with 75 % overlap, absolute
gate at -70 LUFS, relative gate at -10 LU).  :func:`integrated_lufs` is genrestore's own
vectorised implementation because the loudness stage measures several times per clip; the
test suite checks it against pyloudnorm and ``genrestore bench --speed`` times both.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from genrestore.filters import hann, kaiser_lowpass, running_mean, sosfilt
from genrestore.io import probe, read_audio
from genrestore.spectral import (
    OVERLAP,
    Spectrogram,
    stft,
    track_minima,
    tracker_steps,
    white_noise_floor,
)

_BLOCK_S = 0.4
_STEP_S = 0.1
_ABS_GATE_LUFS = -70.0
_REL_GATE_LU = -10.0
#: Below this level (dBFS, DC left out) the clip is treated as silent (no cutoff).
SILENCE_DBFS = -120.0


def _db(power: float | np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 1e-30))


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """BS.1770 K-weighting (high shelf, then RLB high-pass) as second-order sections.

    Both filters are designed by the bilinear transform from the analogue prototypes
    whose parameters reproduce the standard's 48 kHz coefficients (exactly, at 48 kHz).  At
    other rates the bilinear transform is exact only at the prewarped corner frequencies;
    elsewhere the response departs slightly from the 48 kHz design (tests/test_analysis.py
    checks that it stays within 0.1 dB at 100 Hz, 1 kHz and 10 kHz at 32 and 44.1 kHz).
    """
    fs = float(sample_rate)
    # Stage 1: the ~+4 dB high shelf.
    k = np.tan(np.pi * 1681.974450955533 / fs)
    q = 0.7071752369554196
    vh = 10.0 ** (3.999843853973347 / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0,
             (vh - vb * k / q + k * k) / a0, 1.0, 2.0 * (k * k - 1.0) / a0,
             (1.0 - k / q + k * k) / a0]
    # Stage 2: the RLB high-pass.
    k = np.tan(np.pi * 38.13547087602444 / fs)
    q = 0.5003270373238773
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass], dtype=np.float64)


def k_weighted_energy(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cumulative K-weighted energy of ``(channels, samples)`` float64 audio, per channel,
    with a leading zero: block sums are differences of it."""
    weighted = sosfilt(k_weighting_sos(sample_rate), x, axis=-1)
    cumulative = np.zeros((x.shape[0], x.shape[-1] + 1))
    np.cumsum(weighted * weighted, axis=-1, out=cumulative[:, 1:])
    return cumulative


def _block_loudness(cumulative: np.ndarray, sample_rate: int, block_s: float, step_s: float
                    ) -> np.ndarray:
    """Mean-square K-weighted energy of each ``block_s`` block, every ``step_s``, summed over
    channels (empty when the clip is shorter than one block), from :func:`k_weighted_energy`."""
    block, step = round(block_s * sample_rate), round(step_s * sample_rate)
    samples = cumulative.shape[-1] - 1
    if samples < block:
        return np.zeros(0)
    starts = np.arange(0, samples - block + 1, step)
    return ((cumulative[:, starts + block] - cumulative[:, starts]) / block).sum(axis=0)


def gated_lufs(energy: np.ndarray) -> float:
    """BS.1770 integrated loudness of 400 ms block energies (absolute gate at -70 LUFS, then
    relative gate 10 LU under the mean of the blocks kept); ``-inf`` when none is kept.
    A gain ``g`` on the audio is ``energy * g**2`` here: the loudness of a scaled clip needs
    no second pass over its samples."""
    loud = -0.691 + _db(energy)
    kept = energy[loud > _ABS_GATE_LUFS]
    if kept.size == 0:
        return float("-inf")
    relative_gate = -0.691 + _db(kept.mean()) + _REL_GATE_LU
    kept = energy[(loud > _ABS_GATE_LUFS) & (loud > relative_gate)]
    return float(-0.691 + _db(kept.mean()))


def gating_blocks(audio: np.ndarray, sample_rate: int, *,
                  cumulative: np.ndarray | None = None) -> np.ndarray:
    """The 400 ms block energies (every 100 ms) that :func:`gated_lufs` gates; pass the
    audio's :func:`k_weighted_energy` as ``cumulative`` when it is already computed."""
    if cumulative is None:
        x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
        cumulative = k_weighted_energy(x, sample_rate)
    return _block_loudness(cumulative, sample_rate, _BLOCK_S, _STEP_S)


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``(channels, samples)`` audio (mono or stereo).

    Returns ``-inf`` for silence or a clip shorter than one 400 ms gating block.
    """
    return gated_lufs(gating_blocks(audio, sample_rate))


def _range_lu(energy: np.ndarray) -> float:
    loud = -0.691 + _db(energy)
    kept = energy[loud > _ABS_GATE_LUFS]
    if kept.size == 0:
        return 0.0
    gate = -0.691 + _db(kept.mean()) - 20.0
    short_term = loud[(loud > _ABS_GATE_LUFS) & (loud > gate)]
    low, high = np.percentile(short_term, [10.0, 95.0])
    return float(high - low)


def loudness_range_lu(audio: np.ndarray, sample_rate: int) -> float:
    """Loudness range (LRA, EBU Tech 3342) in LU: the spread between the 10th and 95th
    percentiles of 3 s short-term loudness, gated at -70 LUFS and 20 LU under their mean.

    0 for a clip shorter than 3 s or silent.
    """
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    return _range_lu(_block_loudness(k_weighted_energy(x, sample_rate), sample_rate, 3.0, 0.1))


def loudness_and_range(audio: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """``(integrated_lufs, loudness_range_lu)`` from one K-weighting pass."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    cumulative = k_weighted_energy(x, sample_rate)
    return (gated_lufs(_block_loudness(cumulative, sample_rate, _BLOCK_S, _STEP_S)),
            _range_lu(_block_loudness(cumulative, sample_rate, 3.0, 0.1)))


# True peak: 4x oversampling with a 48-tap polyphase FIR (Kaiser beta 5), evaluated only
# around samples within 6 dB of the sample peak (an inter-sample peak 6 dB above both
# neighbours needs content at the very top of the band, which audio seldom carries).  The
# interpolator is flat (within 0.03 dB) up to about 15 kHz at 44.1 kHz but its middle
# phases droop near Nyquist (about -0.9 dB at 18 kHz, -3.9 dB at 20 kHz), so peaks made of
# content that high read low: comparable to the BS.1770 reference filter, not exact.
_TP_TAPS = (kaiser_lowpass(48, 0.25, 5.0) * 4.0).reshape(12, 4)[::-1]
_TP_NEAR = 0.5


def true_peak(audio: np.ndarray) -> float:
    """Linear true peak (4x oversampled, BS.1770-style) of ``(channels, samples)`` audio;
    an estimate that reads low for content near Nyquist (see the interpolator above)."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    best = 0.0
    for channel in x:
        mags = np.abs(channel)
        peak = float(mags.max(initial=0.0))
        if peak == 0.0:
            continue
        near = mags >= _TP_NEAR * peak
        near[:-1] |= near[1:]  # the intervals either side of each near-peak sample
        starts = np.flatnonzero(np.concatenate([near[:1], near]))  # interval i-1 -> window i
        padded = np.concatenate([np.zeros(6, np.float32), channel, np.zeros(6, np.float32)])
        windows = np.lib.stride_tricks.sliding_window_view(padded, 12)[starts]
        between = np.abs(windows @ _TP_TAPS)
        best = max(best, peak, float(between.max(initial=0.0)))
    return best


#: No interpolated value exceeds the largest of the 12 samples it is made of by more than this
#: factor (the largest sum of absolute taps over the four phases, 1.84: triangle inequality).
_TP_BOUND = float(np.abs(_TP_TAPS).sum(axis=0).max())


@functools.cache
def _tp_block_matrix(block: int) -> np.ndarray:
    """``(4 * block, block + 11)``: the four interpolated values of each of a block's intervals
    from the block's samples and the 6 before and 5 after it (row ``4 j + p`` is phase ``p`` of
    the interval that ends at sample ``j``, as in :func:`true_peak`)."""
    matrix = np.zeros((4 * block, block + 11), dtype=np.float32)
    for j in range(block):
        matrix[4 * j:4 * j + 4, j:j + 12] = _TP_TAPS.T
    return matrix


def block_true_peaks(audio: np.ndarray, block: int, *, above: float = 0.0) -> np.ndarray:
    """Linear true peak of each ``block``-sample block of ``(channels, samples)`` audio, the
    largest over the channels: the block's samples and the 4x interpolated values of the
    intervals that end on them (the same interpolator as :func:`true_peak`, evaluated at every
    interval, so the largest block value is at least :func:`true_peak`).  There are
    ``samples // block + 1`` blocks (the last one padded with zeros, so that the interval after
    the last sample is counted).

    Only blocks whose interpolated values could exceed ``above`` are interpolated
    (:data:`_TP_BOUND` times the largest sample they are made of); the others read their
    sample peak, which is then at most ``above`` too, as their true peak is.
    """
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    n = x.shape[-1]
    count = n // block + 1
    padded = np.zeros((x.shape[0], count * block + 11), dtype=np.float32)
    padded[:, 6:6 + n] = x
    mags = np.abs(padded[:, 6:6 + count * block]).reshape(x.shape[0], count, block)
    sample_peak = mags.max(axis=2)
    reach = -(-6 // block)  # blocks either side that an interval's 12 samples reach into
    nearby = sample_peak.copy()
    for k in range(1, reach + 1):
        nearby[:, k:] = np.maximum(nearby[:, k:], sample_peak[:, :-k])
        nearby[:, :-k] = np.maximum(nearby[:, :-k], sample_peak[:, k:])
    peaks = sample_peak.astype(np.float64)
    matrix = _tp_block_matrix(block)
    for c in range(x.shape[0]):
        chosen = np.flatnonzero(_TP_BOUND * nearby[c] > above)
        if chosen.size == 0:
            continue
        rows = np.lib.stride_tricks.sliding_window_view(padded[c], block + 11)[::block][chosen]
        values = matrix @ rows.T  # (4 * block, chosen): one column per block
        np.abs(values, out=values)
        peaks[c, chosen] = np.maximum(peaks[c, chosen], values.max(axis=0))
    return peaks.max(axis=0)


def true_peak_dbtp(audio: np.ndarray) -> float:
    """True peak in dBTP (``-inf`` for silence)."""
    tp = true_peak(audio)
    return float(20.0 * np.log10(tp)) if tp > 0 else float("-inf")


def sample_peak_dbfs(audio: np.ndarray) -> float:
    peak = float(np.max(np.abs(audio), initial=0.0))
    return float(20.0 * np.log10(peak)) if peak > 0 else float("-inf")


#: Welch segments transformed at once by :func:`long_term_spectrum` (bounds its memory).
_WELCH_CHUNK = 256


def welch_psd(audio: np.ndarray, sample_rate: int, nperseg: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and the power spectral density (per Hz, channels averaged) of
    ``(channels, samples)`` audio by Welch's method as :func:`scipy.signal.welch` computes it
    by default (periodic Hann segments of ``nperseg``, at most the clip's length, half
    overlapping, each segment's mean removed, one-sided density), but with the segments
    transformed a chunk at a time in one FFT call instead of one call per segment: 4x faster
    on a 30 s mono clip here, in bounded memory, and without scipy's import."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    nperseg = min(x.shape[-1], nperseg)
    if nperseg < 2 or x.shape[0] == 0:  # nothing to analyse: no power at any frequency
        return np.zeros(1), np.zeros(1)
    step = nperseg - nperseg // 2
    window = hann(nperseg)
    count = (x.shape[-1] - nperseg) // step + 1
    view = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=-1)[:, ::step][:, :count]
    total = np.zeros(nperseg // 2 + 1)
    for first in range(0, count, _WELCH_CHUNK):
        segments = view[:, first : first + _WELCH_CHUNK]
        centred = segments - segments.mean(axis=-1, keepdims=True, dtype=np.float64)
        centred *= window
        spec = np.fft.rfft(centred, axis=-1)
        total += (spec.real**2 + spec.imag**2).sum(axis=(0, 1))
    scale = float(np.sum(window**2)) * sample_rate * count * x.shape[0]
    psd = total / scale
    psd[1 : -1 if nperseg % 2 == 0 else None] *= 2.0  # one-sided: all but DC and Nyquist
    return np.fft.rfftfreq(nperseg, 1.0 / sample_rate), psd


def long_term_spectrum(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and long-term power spectrum in dB per Hz, channels averaged:
    :func:`welch_psd` with segments of the power of two at or above 0.1 s (equal to
    :func:`scipy.signal.welch` within 1e-4 dB, tests/test_measurements.py)."""
    freqs, psd = welch_psd(audio, sample_rate, 2 ** int(np.ceil(np.log2(0.1 * sample_rate))))
    return freqs, _db(psd)


def _is_silent(freqs: np.ndarray, level: np.ndarray) -> bool:
    """Whether a long-term spectrum (dB per Hz) holds less than :data:`SILENCE_DBFS` of
    power in all (a level in dBFS against a threshold in dBFS; Welch removes DC, so a
    DC-only clip counts as silent too)."""
    power = float(np.sum(10.0 ** (level / 10.0)) * (freqs[1] - freqs[0])) if freqs.size > 1 else 0.0
    return power <= 0.0 or 10.0 * np.log10(power) < SILENCE_DBFS


def estimate_cutoff_hz(
    audio: np.ndarray,
    sample_rate: int,
    *,
    knee_db: float = 15.0,
    range_db: float = 60.0,
    spectrum: LongTermSpectrum | None = None,
) -> float:
    """Effective bandwidth (Hz) of a clip, from its long-term spectrum.

    Two kinds of band limit are recognised.  A *knee* (a codec or resampler low-pass): the
    level 1 kHz above some frequency is at least ``knee_db`` below the level 1 kHz
    under it, and above the level either keeps falling (``2 * knee_db`` down 2 kHz above)
    or lands on a flat floor (on the spectrum smoothed over 100 Hz), so a dark recording's
    natural roll-off is not taken for a codec's low-pass; the cutoff is then where the level
    falls 3 dB below the passband just under the knee.  Without a knee, a *roll-off*: the
    highest frequency whose level is within ``range_db`` of the spectrum's maximum above
    100 Hz.  Full-band clips return the Nyquist frequency; silence (less than
    :data:`SILENCE_DBFS` in all, DC left out) returns 0.  Pass ``spectrum`` when the
    clip's long-term spectrum is already measured.
    """
    freqs, level = ((spectrum.freqs_hz, spectrum.level_db) if spectrum is not None
                    else long_term_spectrum(audio, sample_rate))
    nyquist = sample_rate / 2.0
    if _is_silent(freqs, level):
        return 0.0
    resolution = float(freqs[1] - freqs[0])
    smooth = running_mean(level, max(1, round(100.0 / resolution)))
    step = max(2, round(1000.0 / resolution))
    idx = np.arange(step, len(freqs) - step)
    drop = smooth[idx - step] - smooth[idx + step]
    # Highest level anywhere above each point: a knee must leave only low level above it.
    ceiling_above = np.maximum.accumulate(smooth[::-1])[::-1][idx + step]
    # A codec's or resampler's low-pass then either keeps falling (2 x knee_db down 2 kHz
    # above) or lands on a flat floor (hiss); a dark recording's roll-off does neither.
    further = smooth[np.minimum(idx + 2 * step, len(freqs) - 1)]
    lands = (smooth[idx - step] - further >= 2 * knee_db) | (
        np.abs(smooth[idx + step] - further) <= 3.0)
    knee = (
        (drop >= knee_db)
        & lands
        & (ceiling_above <= smooth[idx - step] - knee_db / 2)
        & (freqs[idx] >= min(4000.0, 0.5 * nyquist))
        & (freqs[idx] <= 0.97 * nyquist)
    )
    if knee.any():
        # The lowest knee: content above it is residue.  A steep filter keeps falling far
        # above its corner, so the knee is where the fall starts, not where it is steepest.
        k = int(idx[int(np.argmax(knee))])
        lo = max(0, k - 3 * step)
        passband = float(np.median(smooth[lo : k - step + 1]))
        kept = np.flatnonzero(smooth[lo : k + step] >= passband - 3.0)
        return float(freqs[lo + int(kept[-1])])
    usable = freqs >= 100.0
    peak = float(smooth[usable].max())
    within = np.flatnonzero(usable & (smooth >= peak - range_db))
    edge = float(freqs[int(within[-1])])
    return nyquist if edge >= 0.95 * nyquist else edge


_EMPTY_BIN = 1e-6
#: Flatness above which a band counts as noise (white noise reads about 0.56).
NOISE_LIKE_FLATNESS = 0.4
#: The noise floor is the level white noise of the measured density would have over
#: 0 Hz to ``FLOOR_REFERENCE_HZ`` (a fixed band, so the number does not depend on the rate).
FLOOR_REFERENCE_HZ = 20000.0
#: The bins the floor is looked for in: a fixed frequency band (cut at 95 % of Nyquist at
#: rates under 32 kHz), so a coloured noise reads the same at every rate from 32 kHz up.
FLOOR_BAND_HZ = (200.0, 15200.0)
#: The minimum-statistics window and smoothing (seconds) and bins the floor is measured with
#: (0.05 or 0.2 s of smoothing reads hiss on music 0.5-4 dB further off; 3-15 bins change little).
_FLOOR_WINDOW_S = 2.0
_FLOOR_SMOOTH_S = 0.1
_FLOOR_BINS = 9


@functools.lru_cache(maxsize=64)
def _percentile_of_white(step: int, span: int, smooth_bins: int, length: int,
                         percentile: float) -> float:
    """The :func:`noise_floor_dbfs` statistic (per-bin median over ``length`` decimated
    frames, then the ``percentile`` over bins) of the uncorrected tracker on white noise of
    unit power per bin, from the cached calibration run of :func:`white_noise_floor`."""
    unit = white_noise_floor(step, span, smooth_bins)
    length = min(length, unit.shape[0] // 8)  # at least 8 stretches to take medians of
    chunks = unit[: unit.shape[0] // length * length].reshape(-1, length, unit.shape[1])
    return float(np.percentile(np.median(chunks, axis=1), percentile))


def noise_floor_dbfs(audio: np.ndarray, sample_rate: int, *, percentile: float = 10.0,
                     max_hz: float | None = None, spec: Spectrogram | None = None) -> float:
    """Level (dBFS) of the stationary noise: that of white noise with the measured density
    over 0 Hz to :data:`FLOOR_REFERENCE_HZ` (20 kHz), the same at every rate and FFT size.

    Minimum statistics over the STFT give each bin's stationary floor (its median over the
    clip); music keeps most bins busy, but hiss shows in the quietest ones (between partials,
    above a band limit).  The ``percentile``-th quietest bin of the fixed band
    :data:`FLOOR_BAND_HZ` (200 Hz-15.2 kHz, or to 95 % of Nyquist below 32 kHz; bins 60 dB
    under the median floor, a resampler's stop band, left out) is the noise density.  The
    bias of minimum statistics *and* of taking that percentile is derived for the clip's
    own tracker configuration and length from a white-noise calibration run
    (:func:`~genrestore.spectral.white_noise_floor`), so white noise of a given density
    reads the same (within about 0.5 dB) at any rate, FFT size and length from 3 s up.  On
    music, hiss reads 2-4 dB above its own level (measured on the test song with hiss at -50
    to -70 dBFS): music occupies part of every window, so fewer noise-only frames enter each
    minimum than in the white-noise calibration.

    Coloured noise: the percentile picks the quietest part of the band, so a band that grew
    with the rate would read pink noise lower at higher rates (about 4.5 dB from 16 to
    48 kHz over 200 Hz-95 % of Nyquist).  The band is therefore fixed; its top, 15.2 kHz,
    is 95 % of the Nyquist frequency of 32 kHz (the generators' rate), so pink noise reads
    the same from 32 kHz up.  At 16-31 kHz the band stops lower and pink noise reads up to
    2-3 dB higher.  A top of 7.6 kHz would make 16 kHz agree too, but hiss on music would
    read 1-1.5 dB higher, because music fills more of the bins under 7.6 kHz.

    ``max_hz`` lowers the top of the band (to compare two versions of a clip, at different
    rates, over the same band).  Returns ``-inf`` when the band holds no bin (``max_hz``
    under 200 Hz, or a rate under 420 Hz) or the floor there is exactly zero (digital
    silence).  A clip with no hiss reads very low (down to the codec, dither or float
    rounding floor).  Pass ``spec`` (the clip's :func:`~genrestore.spectral.stft`) when it
    is already computed.
    """
    return noise_floors_dbfs(audio, sample_rate, (max_hz,), percentile=percentile, spec=spec)[0]


def noise_floors_dbfs(audio: np.ndarray, sample_rate: int, tops_hz: Sequence[float | None], *,
                      percentile: float = 10.0, spec: Spectrogram | None = None
                      ) -> tuple[float, ...]:
    """:func:`noise_floor_dbfs` for several tops of the band (``None``: the whole band) from
    one minimum-statistics tracking (the analysis reads the floor over the whole band and
    under the cutoff, for the guard, at the cost of one)."""
    spec = spec or stft(audio, sample_rate)
    freqs = spec.freqs_hz
    data = spec.data
    if data.shape[-2] > 4 * OVERLAP:  # frames that overlap the zero padding read low
        data = data[..., OVERLAP - 1 : data.shape[-2] - OVERLAP + 1, :]
    tracked: tuple[np.ndarray, float] | None = None
    readings = []
    for max_hz in tops_hz:
        top = min(FLOOR_BAND_HZ[1], 0.95 * sample_rate / 2.0)
        if max_hz is not None:
            top = min(top, max_hz)
        band = (freqs >= FLOOR_BAND_HZ[0]) & (freqs <= top)
        if not band.any():
            readings.append(float("-inf"))
            continue
        if tracked is None:
            tracked = _tracked_floor(data, spec.hop / sample_rate, percentile)
        readings.append(_floor_reading(tracked, band, percentile, spec.n_fft, sample_rate))
    return tuple(readings)


def _tracked_floor(data: np.ndarray, hop_s: float, percentile: float) -> tuple[np.ndarray, float]:
    """Each bin's stationary floor (median over the clip of the uncorrected tracked minimum,
    channels averaged) and the white-noise bias of the :func:`noise_floor_dbfs` statistic."""
    power = data.real**2 + data.imag**2
    step, span = tracker_steps(power.shape[-2], hop_s, _FLOOR_WINDOW_S, _FLOOR_SMOOTH_S)
    tracked = track_minima(power, step, span, _FLOOR_BINS)  # decimated, uncorrected
    floor = np.median(tracked, axis=-2).mean(axis=0).astype(np.float64)  # (bins,)
    bias = _percentile_of_white(step, span, _FLOOR_BINS, tracked.shape[-2], float(percentile))
    return floor, bias


def _floor_reading(tracked: tuple[np.ndarray, float], band: np.ndarray, percentile: float,
                   n_fft: int, sample_rate: int) -> float:
    floor, bias = tracked
    floor_band = floor[band]
    median = float(np.median(floor_band))
    # Bins 60 dB under the median floor are empty (a resampler's stop band), not hiss.
    density = float(np.percentile(floor_band[floor_band >= median * _EMPTY_BIN], percentile))
    if density <= 0.0:
        return float("-inf")
    density /= bias
    window = np.hanning(n_fft + 1)[:-1]
    # White noise of variance s2 puts s2 * sum(w^2) in each bin, s2 / (rate / 2) per Hz.
    variance = density / float(np.sum(window**2))
    return float(_db(variance * FLOOR_REFERENCE_HZ / (sample_rate / 2.0)))


def top_band_flatness(audio: np.ndarray, sample_rate: int, cutoff_hz: float, *,
                      spec: Spectrogram | None = None) -> float:
    """Spectral flatness (geometric over arithmetic mean of power, 0..1) of the top band of
    content, from 0.75 x ``cutoff_hz`` to the cutoff; median over the frames that carry
    energy there.  Noise reads about 0.56 (the periodogram of noise is exponential), tones
    and harmonics far less; a high value in a generator's top band means codec noise.
    ``spec`` as for :func:`noise_floor_dbfs`."""
    if cutoff_hz <= 0:
        return 0.0
    spec = spec or stft(audio, sample_rate)
    band = slice(spec.bin_of(0.75 * cutoff_hz), spec.bin_of(cutoff_hz) + 1)
    power = (np.abs(spec.data[..., band]) ** 2).mean(axis=0).astype(np.float64) + 1e-30
    if power.shape[-1] < 4:
        return 0.0
    energy = power.mean(axis=-1)
    busy = energy > energy.max() * 1e-4
    flatness = np.exp(np.log(power[busy]).mean(axis=-1)) / energy[busy]
    return float(np.median(flatness)) if flatness.size else 0.0


def dc_offset(audio: np.ndarray) -> float:
    """Largest per-channel mean, as a fraction of full scale (signed)."""
    means = np.atleast_2d(np.asarray(audio, dtype=np.float64)).mean(axis=-1)
    return float(means[np.argmax(np.abs(means))])


def crest_factor_db(audio: np.ndarray) -> float:
    """Sample peak over RMS in dB (3.01 dB for a sine; 0 for silence)."""
    x = np.asarray(audio, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    return float(20.0 * np.log10(np.max(np.abs(x)) / rms)) if rms > 0 else 0.0


def flat_runs(mask: np.ndarray, min_run: int) -> list[tuple[int, int]]:
    """``(start, end)`` of every run of at least ``min_run`` true values in a 1-D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True) if b - a >= min_run]


#: Samples of a flat top are equal to within this fraction of their level (float32
#: rounding: a few units in the last place).
CLIP_FLATNESS = 1e-6
#: A flat top must be entered and left by a step of at least this much of its level...
CLIP_MIN_STEP = 2.0**-12
#: ... and of at least two 16-bit quantisation steps (full scale = 1).
CLIP_MIN_STEP_ABS = 2.0 * 2.0**-15


def clipped_mask(audio: np.ndarray, *, min_run: int = 3, tolerance: float = CLIP_FLATNESS
                 ) -> np.ndarray:
    """Boolean mask (shaped like ``audio``, 1-D or ``(channels, samples)``) of the samples
    that lie on a clipped flat top.

    A flat top is a run of at least ``min_run`` consecutive samples equal, to within
    ``tolerance`` of their level, to the channel's most positive (or most negative) sample,
    that the waveform enters and leaves by a step: the samples either side (where the
    channel has them) lie at least :data:`CLIP_MIN_STEP` of the level and
    :data:`CLIP_MIN_STEP_ABS` below it.  Both conditions are independent of frequency.  A
    smooth crest, however low its frequency, never holds three float samples this equal
    (a 40 Hz sine at 96 kHz changes by 3e-6 of its peak from the crest sample to the next);
    quantised to 16 bits it can, but then it steps into the run by one quantisation step,
    while a clipped wave arrives at its own slope.  Integer clipping at full scale,
    float clipping at any level and clipping followed by a gain change are all found,
    whatever the level; runs at zero (silence) and a channel that is constant throughout
    (DC) are not flat tops.
    """
    x = np.asarray(audio, dtype=np.float32)
    channels = np.atleast_2d(x)
    mask = np.zeros(channels.shape, dtype=bool)
    for out, channel in zip(mask, channels, strict=True):
        if channel.size < min_run:
            continue
        for sign, extreme in ((1.0, float(channel.max())), (-1.0, -float(channel.min()))):
            if extreme <= 0.0:  # no flat top at zero, none on a side the channel never reaches
                continue
            level = np.float32(extreme * (1.0 - tolerance))
            top = channel >= level if sign > 0 else channel <= -level
            runs = flat_runs(top, min_run) if np.count_nonzero(top) >= min_run else []
            step = max(extreme * CLIP_MIN_STEP, CLIP_MIN_STEP_ABS)
            for start, end in runs:
                if start == 0 and end == channel.size:  # constant throughout: DC, not a clip
                    continue
                before = start == 0 or sign * float(channel[start - 1]) < extreme - step
                after = end == channel.size or sign * float(channel[end]) < extreme - step
                if before and after:
                    out[start:end] = True
    return mask.reshape(x.shape)


def clipped_runs(audio: np.ndarray, *, min_run: int = 3, tolerance: float = CLIP_FLATNESS
                 ) -> tuple[int, int]:
    """``(runs, samples)``: flat tops where the waveform was clipped (see :func:`clipped_mask`,
    which also tells the declip stage which samples to rebuild)."""
    mask = np.atleast_2d(clipped_mask(audio, min_run=min_run, tolerance=tolerance))
    found = [run for channel in mask for run in flat_runs(channel, min_run)]
    return len(found), sum(end - start for start, end in found)


def interchannel_correlation(audio: np.ndarray) -> float:
    """Pearson correlation of left and right.

    1.0 for one channel and for two identical channels (silence included); 0.0 when one
    channel is constant (silent or DC only) and the other is not: a hard-panned source
    shares nothing with an empty channel.
    """
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    if x.shape[0] < 2 or np.array_equal(x[0], x[1]):
        return 1.0
    left, right = x[0] - x[0].mean(), x[1] - x[1].mean()
    norm = float(np.sqrt(np.sum(left * left) * np.sum(right * right)))
    return float(np.sum(left * right) / norm) if norm > 0 else 0.0


def stereo_width_db(audio: np.ndarray) -> float:
    """Side-to-mid energy ratio in dB (``-inf`` for mono or identical channels)."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    if x.shape[0] < 2:
        return float("-inf")
    mid, side = (x[0] + x[1]) / 2.0, (x[0] - x[1]) / 2.0
    side_energy = float(np.sum(side * side))
    if side_energy == 0.0:
        return float("-inf")
    return float(_db(side_energy / max(float(np.sum(mid * mid)), 1e-30)))


#: Mono fold-down figures are clamped to +-this many dB: a mono sum this far under the stereo
#: level is silence (two channels in exact antiphase cancel to zero, an infinite loss).
FOLD_DOWN_LIMIT_DB = 100.0


def stereo_sums(audio: np.ndarray) -> np.ndarray:
    """The running sums behind :func:`mono_fold_down`, for two-channel audio: ``[n, sum L,
    sum R, sum L^2, sum R^2, sum L R]`` (float64).  Sums of consecutive blocks add up to the
    sums of the whole clip, so a block-wise reader can accumulate them."""
    x = np.asarray(audio, dtype=np.float64)
    left, right = x[0], x[1]
    return np.array([left.size, left.sum(), right.sum(), np.dot(left, left),
                     np.dot(right, right), np.dot(left, right)])


@dataclass(frozen=True)
class FoldDown:
    """How a stereo clip survives being summed to mono, ``(L + R) / 2`` (phones, smart
    speakers): ``correlation`` of the channels (Pearson, means removed; 1 for the same
    signal, -1 for one the other's negative, about 0 for unrelated ones); ``mid_side_db``,
    the energy of the mid ``(L + R) / 2`` over the side ``(L - R) / 2`` (+100 for identical
    channels, 0 for unrelated ones of equal level, -100 for antiphase); ``loss_db``, how far the
    mono sum's power lies under the stereo power (the mean of the two channels'): 0 for
    identical channels, 3.01 for unrelated ones of equal level, +100 (silence) for antiphase.
    Figures are clamped to +-:data:`FOLD_DOWN_LIMIT_DB`; all NaN for one channel (mono
    needs no fold-down) and for silence."""

    correlation: float
    mid_side_db: float
    loss_db: float


def mono_fold_down(sums: np.ndarray) -> FoldDown:
    """:class:`FoldDown` from :func:`stereo_sums` (of a whole clip, or accumulated over its
    blocks)."""
    n, sum_l, sum_r, sum_ll, sum_rr, sum_lr = (float(v) for v in sums)
    nan = float("nan")
    if n == 0 or sum_ll + sum_rr == 0.0:
        return FoldDown(nan, nan, nan)
    var_l, var_r = sum_ll - sum_l * sum_l / n, sum_rr - sum_r * sum_r / n
    cov = sum_lr - sum_l * sum_r / n
    norm = np.sqrt(max(var_l, 0.0) * max(var_r, 0.0))
    correlation = float(np.clip(cov / norm, -1.0, 1.0)) if norm > 0 else (
        1.0 if sum_ll == sum_rr == sum_lr else 0.0)  # a constant channel shares nothing
    mid = max((sum_ll + 2.0 * sum_lr + sum_rr) / 4.0, 0.0)
    side = max((sum_ll - 2.0 * sum_lr + sum_rr) / 4.0, 0.0)
    stereo = (sum_ll + sum_rr) / 2.0

    def ratio_db(num: float, den: float) -> float:
        if den <= num * 10.0 ** (-FOLD_DOWN_LIMIT_DB / 10.0):
            return FOLD_DOWN_LIMIT_DB
        if num <= den * 10.0 ** (-FOLD_DOWN_LIMIT_DB / 10.0):
            return -FOLD_DOWN_LIMIT_DB
        return float(10.0 * np.log10(num / den))

    return FoldDown(correlation, ratio_db(mid, side), ratio_db(stereo, mid))


def is_mono(audio: np.ndarray, *, side_db: float = -40.0) -> bool:
    """True for one channel, or two that are the same signal: their difference (side) is
    ``side_db`` or more below their sum (mid).  Identical channels, and mono through a
    joint-stereo codec (the channels differ by codec noise 40 dB or more down), are mono;
    scaled copies (L = 0.5 R is -9.5 dB), one silent or DC-only channel (0 dB) and
    panned sources are stereo.  Correlation alone is not used: it does not see scale.
    More than two channels are never mono."""
    channels = np.atleast_2d(audio).shape[0]
    return bool(channels == 1 or (channels == 2 and stereo_width_db(audio) <= side_db))


def effective_bandwidth_hz(audio: np.ndarray, sample_rate: int, *, range_db: float = 60.0) -> float:
    """Highest frequency whose long-term level is within ``range_db`` of the spectrum's
    maximum (the no-reference bandwidth figure of ``genrestore bench``); 0 for silence."""
    freqs, level = long_term_spectrum(audio, sample_rate)
    if _is_silent(freqs, level):
        return 0.0
    within = np.flatnonzero(level >= level.max() - range_db)
    return float(freqs[int(within[-1])])


@dataclass(frozen=True)
class LongTermSpectrum:
    """A clip's :func:`long_term_spectrum`: bin frequencies (Hz) and level (dB per Hz)."""

    freqs_hz: np.ndarray
    level_db: np.ndarray


@dataclass(frozen=True)
class Analysis:
    """What genrestore measures on a clip before treating it; field names carry units."""

    sample_rate: int
    channels: int
    duration_s: float
    cutoff_hz: float
    top_band_flatness: float  # 0..1, about 0.56 for noise
    top_band_noise_like: bool  # the top band of content is codec-like noise
    noise_floor_dbfs: float
    snr_db: float  # RMS level of the clip over its noise floor
    integrated_lufs: float
    loudness_range_lu: float
    sample_peak_dbfs: float
    true_peak_dbtp: float
    overs: int  # samples with magnitude above 1.0
    clipped_runs: int
    clipped_samples: int
    dc_offset: float
    crest_factor_db: float
    interchannel_correlation: float
    is_mono: bool  # one channel, or two the same to within -40 dB (see is_mono)
    #: The noise floor read over the band under the cutoff only (200 Hz to the cutoff), the
    #: guard's baseline for a floor rise; -inf when that band is empty.
    noise_floor_under_cutoff_dbfs: float = float("-inf")
    #: Mono fold-down of a two-channel clip (:class:`FoldDown`): mid over side energy, and the
    #: power lost when summed to mono; NaN for one channel.
    mid_side_db: float = float("nan")
    mono_fold_down_loss_db: float = float("nan")
    #: The long-term spectrum (:func:`long_term_spectrum`) the cutoff was read from; the
    #: guard's octave levels read it.  Not a figure: :meth:`to_dict` leaves it out.
    spectrum: LongTermSpectrum | None = field(default=None, repr=False, compare=False)

    @property
    def is_full_band(self) -> bool:
        return self.cutoff_hz >= 0.95 * self.sample_rate / 2.0

    def to_dict(self) -> dict[str, float | int | bool]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "spectrum"}


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level in dBFS over all channels (``-inf`` for silence)."""
    x = np.asarray(audio, dtype=np.float64)
    mean_square = float(np.mean(x * x))
    return float(_db(mean_square)) if mean_square > 0 else float("-inf")


def analyze(audio: np.ndarray, sample_rate: int) -> Analysis:
    """Measure ``(channels, samples)`` audio once; stages read what they need from it."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    spectrum = LongTermSpectrum(*long_term_spectrum(x, sample_rate))
    cutoff = estimate_cutoff_hz(x, sample_rate, spectrum=spectrum)
    spec = stft(x, sample_rate)  # shared by the noise floors and the top-band flatness
    floor, floor_under_cutoff = noise_floors_dbfs(x, sample_rate, (None, cutoff), spec=spec)
    level = rms_dbfs(x)
    runs, clipped = clipped_runs(x)
    flatness = top_band_flatness(x, sample_rate, cutoff, spec=spec)
    lufs, lra = loudness_and_range(x, sample_rate)
    nan = float("nan")
    fold = mono_fold_down(stereo_sums(x)) if x.shape[0] == 2 else FoldDown(nan, nan, nan)
    return Analysis(
        sample_rate=int(sample_rate),
        channels=int(x.shape[0]),
        duration_s=x.shape[-1] / sample_rate,
        cutoff_hz=cutoff,
        top_band_flatness=flatness,
        top_band_noise_like=flatness > NOISE_LIKE_FLATNESS,
        noise_floor_dbfs=floor,
        snr_db=level - floor if np.isfinite(level) else 0.0,
        integrated_lufs=lufs,
        loudness_range_lu=lra,
        sample_peak_dbfs=sample_peak_dbfs(x),
        true_peak_dbtp=true_peak_dbtp(x),
        overs=int(np.count_nonzero(np.abs(x) > 1.0)),
        clipped_runs=runs,
        clipped_samples=clipped,
        dc_offset=dc_offset(x),
        crest_factor_db=crest_factor_db(x),
        interchannel_correlation=interchannel_correlation(x),
        is_mono=is_mono(x),
        noise_floor_under_cutoff_dbfs=floor_under_cutoff,
        mid_side_db=fold.mid_side_db,
        mono_fold_down_loss_db=fold.loss_db,
        spectrum=spectrum,
    )


def analyze_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record ``genrestore analyze --json`` prints for one file: its path, container
    format and subtype, and every :class:`Analysis` field, the rate as ``sample_rate_hz``.

    Raises :class:`~genrestore.errors.AudioFileError` (naming the file) for unreadable input.
    """
    info = probe(path)
    audio, rate = read_audio(path)
    fields: dict[str, Any] = analyze(audio, rate).to_dict()
    fields["sample_rate_hz"] = fields.pop("sample_rate")
    return {"file": str(path), "format": info.format, "subtype": info.subtype, **fields}
