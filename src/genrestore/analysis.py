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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from genrestore.errors import AudioFileError, ParameterError
from genrestore.filters import SosStream, hann, kaiser_lowpass, running_mean, sosfilt, windowed_rfft
from genrestore.filters import median as _median
from genrestore.filters import percentile as _percentile
from genrestore.io import MIN_DURATION_S, read_blocks
from genrestore.spectral import (
    OVERLAP,
    Spectrogram,
    default_n_fft,
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
    np.cumsum(np.square(weighted, out=weighted), axis=-1, out=cumulative[:, 1:])
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
    low, high = _percentile(short_term, [10.0, 95.0])
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


#: Welch segments transformed at once by :func:`long_term_spectrum` (a working set that stays
#: in cache, as :data:`genrestore.filters._FFT_ROWS`).
_WELCH_CHUNK = 16


def welch_psd(audio: np.ndarray, sample_rate: int, nperseg: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and the power spectral density (per Hz, channels averaged) of
    ``(channels, samples)`` audio by Welch's method as :func:`scipy.signal.welch` computes it
    by default (periodic Hann segments of ``nperseg``, at most the clip's length, half
    overlapping, each segment's mean removed, one-sided density), but with the segments
    transformed a chunk at a time in one FFT call instead of one call per segment: 4x faster
    on a 30 s mono clip here, in bounded memory, and without scipy's import."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    welch = _WelchSum(x.shape[0], nperseg)
    welch.add(x)
    return welch.psd(sample_rate)


def long_term_segment(sample_rate: int) -> int:
    """The Welch segment of :func:`long_term_spectrum`: the power of two at or above 0.1 s."""
    return 2 ** int(np.ceil(np.log2(0.1 * sample_rate)))


def long_term_spectrum(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and long-term power spectrum in dB per Hz, channels averaged:
    :func:`welch_psd` with segments of the power of two at or above 0.1 s (equal to
    :func:`scipy.signal.welch` within 1e-4 dB, tests/test_measurements.py)."""
    freqs, psd = welch_psd(audio, sample_rate, long_term_segment(sample_rate))
    return freqs, _db(psd)


def _is_silent(freqs: np.ndarray, level: np.ndarray) -> bool:
    """Whether a long-term spectrum (dB per Hz) holds less than :data:`SILENCE_DBFS` of
    power in all (a level in dBFS against a threshold in dBFS; Welch removes DC, so a
    DC-only clip counts as silent too)."""
    power = float(np.sum(10.0 ** (level / 10.0)) * (freqs[1] - freqs[0])) if freqs.size > 1 else 0.0
    return power <= 0.0 or 10.0 * np.log10(power) < SILENCE_DBFS


#: :func:`estimate_cutoff_hz` reads the long-term spectrum smoothed over this band (Hz), and
#: measures falls over windows of this many octaves (a Butterworth of order 16 falls about
#: 25 dB in the quarter octave over its corner, music's roll-off a few dB).
_CUTOFF_SMOOTH_HZ = 200.0
_CUTOFF_WINDOW_OCT = 0.25
#: A floor is flat when its smoothed level stays within this range (dB) to 97 % of Nyquist.
_FLAT_FLOOR_DB = 3.0
#: Spectra of fewer bins (a clip of a few milliseconds) are read by the roll-off rule only.
_CUTOFF_MIN_BINS = 64
#: The lowest band limit looked for as a knee (Hz).
_CUTOFF_LOWEST_HZ = 1000.0


def estimate_cutoff_hz(
    audio: np.ndarray,
    sample_rate: int,
    *,
    knee_db: float = 15.0,
    range_db: float = 60.0,
    spectrum: LongTermSpectrum | None = None,
) -> float:
    """Effective bandwidth (Hz) of a clip, from its long-term spectrum (smoothed over 200 Hz).

    A *band limit* (a codec's, resampler's or filter's low-pass) is a bend, not a slope:
    filters fall in dB per octave, so every measure here is taken over fractions of an octave
    (:data:`_CUTOFF_WINDOW_OCT`, a quarter).  Around each frequency ``f`` the fall over the
    half octave centred on it is compared with the fall over the half octave under that (the
    music's own slope there); a knee is where the fall exceeds the music's by ``knee_db`` and
    nothing above comes back within ``knee_db / 2`` of the level under it.  A dark
    recording's roll-off steepens slowly, so its bend stays under 15 dB where the 8 kHz
    low-pass of ``genrestore.degrade``'s ``bandlimited`` bends by 40-100 dB (Butterworth,
    96 dB per octave) and a brick wall by more.  A fall of only ``knee_db / 2`` counts too
    when it lands on a flat floor (within 3 dB up to 97 % of Nyquist: hiss after a low-pass,
    which music never is).  When there are several knees, the lowest one that falls by at
    least ``2 * knee_db`` wins (content above such a cliff is residue: a codec's floor and its
    own low-pass); else the lowest that lands on a flat floor; else the one that bends most.
    Knees are looked for from 1 kHz up, but under 4 kHz (or half Nyquist), where music's own
    spectrum bends most, only a cliff counts; a spectrum of under 64 bins (a few
    milliseconds) is read by the roll-off rule alone.
    The cutoff is then where the level falls 3 dB under the passband's trend (a line in dB
    against log frequency over the half octave under the knee, never rising), so music that
    darkens towards the band limit does not pull the cutoff down.  Without a knee, a
    *roll-off*: the highest frequency whose level is within ``range_db`` of the spectrum's
    maximum above 100 Hz.  Full-band clips return the Nyquist frequency; silence (less than
    :data:`SILENCE_DBFS` in all, DC left out) returns 0.  Pass ``spectrum`` when the clip's
    long-term spectrum is already measured.

    Measured by ``scripts/cutoff_errors.py`` on the 46 files of the evaluation corpus
    (excerpts and seeds as ``genrestore bench``): ``bandlimited`` (8 kHz Butterworth, -3 dB at
    7.57 kHz) 43 of 46 within 500 Hz of its -3 dB point, median error 145 Hz (before this
    rule 13 of 46 and 945 Hz: dark orchestral clips read 2.7-5.3 kHz); ``musicgen_like`` 35
    of 46 (before 12).  On the shared real generator clips MusicGen's cutoffs moved by at most
    1.4 kHz, up towards the 14-15 kHz edge their spectra show.
    """
    freqs, level = ((spectrum.freqs_hz, spectrum.level_db) if spectrum is not None
                    else long_term_spectrum(audio, sample_rate))
    nyquist = sample_rate / 2.0
    if _is_silent(freqs, level):
        return 0.0
    resolution = float(freqs[1] - freqs[0])
    smooth = running_mean(level, max(1, round(_CUTOFF_SMOOTH_HZ / resolution)))
    octave = np.log2(np.maximum(freqs, resolution))
    width = 2.0 ** _CUTOFF_WINDOW_OCT

    def at(freq: np.ndarray) -> np.ndarray:
        return np.interp(np.log2(np.clip(freq, resolution, nyquist)), octave, smooth)

    top = 0.97 * nyquist
    # Knees are looked for from 1 kHz; under min(4 kHz, half Nyquist), where music's own
    # spectrum bends most, only a cliff counts (a fall of 2 * knee_db over the half octave).
    f = freqs[(freqs >= min(_CUTOFF_LOWEST_HZ, 0.5 * nyquist) / width) & (freqs <= top)]
    under, over = at(f / width), at(f * width)
    fall = under - over
    bend = fall - (at(f / width**3) - under)
    # A knee leaves only low level above it, and a low-pass's floor is flat (hiss or nothing).
    ceiling = np.maximum.accumulate(smooth[::-1])[::-1]
    stays = np.interp(np.minimum(f * width, nyquist), freqs, ceiling) <= under - knee_db / 2
    inside = np.where(freqs <= top, smooth, np.nan)
    highest = np.fmax.accumulate(inside[::-1])[::-1]
    lowest = np.fmin.accumulate(inside[::-1])[::-1]
    landing = np.searchsorted(freqs, f * width)
    flat = np.zeros(f.size, dtype=bool)
    within = landing < np.searchsorted(freqs, top)
    flat[within] = highest[landing[within]] - lowest[landing[within]] <= _FLAT_FLOOR_DB
    knee = stays & ((bend >= knee_db) | (flat & (bend >= knee_db / 2)))
    knee &= (f >= min(4000.0, 0.5 * nyquist) / width) | (fall >= 2 * knee_db)
    # A spectrum of a few dozen bins (a clip of a few ms) cannot show a bend in octaves.
    if knee.any() and freqs.size >= _CUTOFF_MIN_BINS:
        edges = np.diff(np.concatenate([[0], knee.astype(np.int8), [0]]))
        runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))
    else:
        runs = []
    if runs:
        cliffs = [r for r in runs
                  if np.any(fall[r[0]:r[1]][bend[r[0]:r[1]] >= knee_db] >= 2 * knee_db)]
        floors = [r for r in runs if flat[r[0]:r[1]].any()]
        start, end = (cliffs[0] if cliffs else floors[0] if floors
                      else max(runs, key=lambda r: float(bend[r[0]:r[1]].max())))
        corner = float(f[start])
        fit = (freqs >= corner / width**2) & (freqs <= corner)
        slope, offset = np.polyfit(octave[fit], smooth[fit], 1)
        if slope > 0.0:  # the passband's trend is not extrapolated upwards
            slope, offset = 0.0, float(_median(smooth[fit]))
        steepest = float(f[start + int(np.argmax(bend[start:end]))]) * width
        span = np.flatnonzero((freqs >= corner / width**2) & (freqs <= steepest))
        kept = span[smooth[span] >= slope * octave[span] + offset - 3.0]
        return float(freqs[kept[-1]]) if kept.size else corner
    usable = freqs >= 100.0
    peak = float(smooth[usable].max())
    within_range = np.flatnonzero(usable & (smooth >= peak - range_db))
    edge = float(freqs[int(within_range[-1])])
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
    return float(_percentile(_median(chunks, axis=1), percentile))


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
    data = spec.data
    first, last = _trimmed_range(data.shape[-2])
    # Only the bins some reading looks at are tracked (the guard's stop at the cutoff).
    top = None if any(t is None for t in tops_hz) else max(tops_hz, default=None)
    tracked = _tracked_bins(spec.freqs_hz, sample_rate, top)
    tracker = None
    if tracked.stop > tracked.start and any(
            _floor_band(spec.freqs_hz, sample_rate, top).any() for top in tops_hz):
        tracker = _FloorTracker(data.shape[0], last - first, data.shape[-1], spec.hop / sample_rate,
                                tracked)
        part = data[..., first:last, tracker.crop]
        tracker.add(part.real**2 + part.imag**2, last=True)
    return _readings(tracker, spec.freqs_hz, sample_rate, spec.n_fft, tops_hz, percentile)


def _floor_reading(tracked: tuple[np.ndarray, float], band: np.ndarray, percentile: float,
                   n_fft: int, sample_rate: int) -> float:
    floor, bias = tracked
    floor_band = floor[band]
    median = float(_median(floor_band))
    # Bins 60 dB under the median floor are empty (a resampler's stop band), not hiss.
    density = float(_percentile(floor_band[floor_band >= median * _EMPTY_BIN], percentile))
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
    return float(_median(flatness)) if flatness.size else 0.0


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


#: How high :attr:`Analysis.low_spectrum` reaches (the highest high-pass corner ``eq`` takes).
LOW_SPECTRUM_HZ = 500.0


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
    #: A finer long-term spectrum under :data:`LOW_SPECTRUM_HZ` (Welch segments of
    #: 2^ceil(log2(rate / 5)) samples, 0.2 s or more) and the total power of that Welch
    #: (per Hz, summed over every bin), for the rumble rule of :mod:`genrestore.policy`.
    low_spectrum: LongTermSpectrum | None = field(default=None, repr=False, compare=False)
    low_spectrum_total: float = field(default=0.0, repr=False, compare=False)

    @property
    def is_full_band(self) -> bool:
        return self.cutoff_hz >= 0.95 * self.sample_rate / 2.0

    def to_dict(self) -> dict[str, float | int | bool]:
        hidden = ("spectrum", "low_spectrum", "low_spectrum_total")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level in dBFS over all channels (``-inf`` for silence)."""
    x = np.asarray(audio, dtype=np.float64)
    mean_square = float(np.mean(x * x))
    return float(_db(mean_square)) if mean_square > 0 else float("-inf")


def analyze(audio: np.ndarray, sample_rate: int) -> Analysis:
    """Measure ``(channels, samples)`` audio once; stages read what they need from it.  The
    clip is measured a block of :data:`BLOCK_SAMPLES` at a time (:func:`analyze_blocks`), so
    the measurement of a long clip needs little memory beyond the clip itself."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    return analyze_blocks(array_blocks(x), sample_rate, x.shape[0])


def analyze_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record ``genrestore analyze --json`` prints for one file: its path, container
    format and subtype, and every :class:`Analysis` field, the rate as ``sample_rate_hz``.

    Raises :class:`~genrestore.errors.AudioFileError` (naming the file) for unreadable input.
    """
    info, blocks = read_blocks(path, BLOCK_SAMPLES)
    try:
        analysis = analyze_blocks(blocks, info.sample_rate, info.channels, source=str(path))
    except ParameterError as exc:
        raise AudioFileError(path, str(exc).removeprefix(f"{path}: ")) from exc
    fields: dict[str, Any] = analysis.to_dict()
    fields["sample_rate_hz"] = fields.pop("sample_rate")
    return {"file": str(path), "format": info.format, "subtype": info.subtype, **fields}


# ---------------------------------------------------------------------------------------------
# Block-wise analysis: every measurement above, accumulated over a file read a block at a time
# (two passes: the second needs the cutoff, the channels' extremes and peaks of the first).
# ---------------------------------------------------------------------------------------------

#: Samples per block when a clip is measured a block at a time (about 5.5 s at 48 kHz): a
#: clip this short is one block; a longer one never has more than a block's worth of
#: intermediate arrays in memory.
BLOCK_SAMPLES = 1 << 18

#: A block source: called once per pass, it yields the clip's ``(channels, samples)`` float32
#: blocks in order (any sizes).
Blocks = Callable[[], Iterable[np.ndarray]]


def array_blocks(audio: np.ndarray, size: int = BLOCK_SAMPLES) -> Blocks:
    """A :data:`Blocks` source over an in-memory ``(channels, samples)`` array."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, x.shape[-1], size):
            yield x[:, start:start + size]

    return blocks


class _WelchSum:
    """:func:`welch_psd`'s sum of segment periodograms, a block at a time (the segments'
    grid is the whole clip's: samples not yet in a whole segment wait for the next block)."""

    def __init__(self, channels: int, nperseg: int) -> None:
        self._segments(nperseg)
        self.channels = channels
        self.held = np.zeros((channels, 0), dtype=np.float32)
        self.count = 0

    def _segments(self, n: int) -> None:
        self.n = n
        self.step = n - n // 2
        self.window = hann(n) if n >= 2 else np.ones(1)
        self.total = np.zeros(n // 2 + 1)

    def add(self, block: np.ndarray) -> None:
        x = np.concatenate([self.held, block], axis=-1) if self.held.size else block
        usable = (x.shape[-1] - self.n) // self.step + 1 if x.shape[-1] >= self.n else 0
        if usable:
            view = np.lib.stride_tricks.sliding_window_view(x, self.n, axis=-1)[:, ::self.step]
            view = view[:, :usable]
            buffer = np.empty((_WELCH_CHUNK, self.n))
            for channel in view:
                for first in range(0, usable, _WELCH_CHUNK):
                    segments = channel[first:first + _WELCH_CHUNK]
                    windowed = buffer[:segments.shape[0]]
                    np.multiply(segments, self.window, out=windowed)
                    spec = np.fft.rfft(windowed, axis=-1)
                    if self.n >= 4:
                        # Each segment's mean removed after the transform: the periodic Hann
                        # window's own transform is n/2 at DC, -n/4 at the next bin and zero
                        # beyond, so the mean only ever reaches those two bins.
                        mean = segments.mean(axis=-1, dtype=np.float64)
                        spec[:, 0] -= mean * (self.n / 2.0)
                        spec[:, 1] += mean * (self.n / 4.0)
                    else:  # a window too short for that (a clip of a few samples)
                        spec = np.fft.rfft((segments - segments.mean(axis=-1, keepdims=True,
                                                                     dtype=np.float64))
                                           * self.window, axis=-1)
                    self.total += (spec.real**2 + spec.imag**2).sum(axis=0)
            self.count += usable
        self.held = x[:, usable * self.step:].copy()

    def level_db(self, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Frequencies (Hz) and the density in dB per Hz: :func:`long_term_spectrum`'s
        reading when the segment is :func:`long_term_segment`'s."""
        freqs, psd = self.psd(sample_rate)
        return freqs, _db(psd)

    def psd(self, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        if self.count == 0 and self.held.shape[-1] >= 2:
            # A clip shorter than a segment is one segment of its own length.
            held = self.held
            self._segments(held.shape[-1])
            self.held = np.zeros((self.channels, 0), dtype=np.float32)
            self.add(held)
        if self.count == 0 or self.channels == 0:
            return np.zeros(1), np.zeros(1)
        scale = float(np.sum(self.window**2)) * sample_rate * self.count * self.channels
        psd = self.total / scale
        psd[1 : -1 if self.n % 2 == 0 else None] *= 2.0  # one-sided: all but DC and Nyquist
        return np.fft.rfftfreq(self.n, 1.0 / sample_rate), psd


#: :func:`welch_psd` accumulated a block at a time (the guard reads a long output's octave
#: levels with it, as the analysis reads the input's).
WelchSum = _WelchSum


class LoudnessSum:
    """The K-weighted cumulative energy at every gating block's edges (400 ms and 3 s blocks
    every 100 ms), a block at a time: :func:`loudness_and_range` without the whole clip."""

    def __init__(self, channels: int, sample_rate: int, every: int | None = None) -> None:
        self.rate = sample_rate
        self.filter = SosStream(k_weighting_sos(sample_rate), channels)
        self.step = round(_STEP_S * sample_rate)
        self.blocks = (round(_BLOCK_S * sample_rate), round(3.0 * sample_rate))
        self.every = every  # also record the cumulative energy every this many samples
        self.done = 0  # weighted samples summed so far
        self.total = np.zeros(channels)
        self.positions: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self.values: list[np.ndarray] = [np.zeros((channels, 1))]
        #: The cumulative energy, summed over the channels, at every ``every`` samples (8
        #: bytes each: an hour of 1 ms blocks is 29 MB).
        self.every_values: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        self._sum(self.filter.process(block))

    def finish(self) -> None:
        self._sum(self.filter.flush())

    def _sum(self, weighted: np.ndarray) -> None:
        m = weighted.shape[-1]
        if m == 0:
            return
        a = self.done
        cumulative = np.cumsum(np.square(weighted, out=weighted), axis=-1)
        cumulative += self.total[:, None]
        wanted = [np.arange(-(-(a + 1) // self.step) * self.step, a + m + 1, self.step)]
        if self.every:
            edges = np.arange(-(-(a + 1) // self.every) * self.every, a + m + 1, self.every)
            self.every_values.append(cumulative[:, edges - a - 1].sum(axis=0))
        for size in self.blocks:
            first = max(a + 1, size)
            k0 = -(-(first - size) // self.step)
            wanted.append(np.arange(size + k0 * self.step, a + m + 1, self.step))
        positions = np.sort(np.concatenate(wanted))
        # Each position once (np.unique would import numpy.ma: 12 ms of a CLI run's start).
        first = np.ones(positions.size, dtype=bool)
        first[1:] = positions[1:] != positions[:-1]
        positions = positions[first]
        self.positions.append(positions)
        self.values.append(cumulative[:, positions - a - 1])
        self.total = cumulative[:, -1].copy()
        self.done = a + m

    def block_sums(self, dtype: type = np.float64) -> np.ndarray:
        """The K-weighted energy of each whole block of ``every`` samples, summed over the
        channels (what the loudness stage's limiter model reads of its input), as ``dtype``:
        differences of the running sum, written a piece at a time into the result."""
        assert self.every
        out = np.empty(sum(v.size for v in self.every_values), dtype=dtype)
        before, done = 0.0, 0
        for values in self.every_values:
            if values.size:
                out[done] = values[0] - before
                out[done + 1:done + values.size] = np.diff(values)
                before, done = float(values[-1]), done + values.size
        return out

    def energies(self, block: int) -> np.ndarray:
        """:func:`_block_loudness`'s block energies for blocks of ``block`` samples."""
        if self.done < block:
            return np.zeros(0)
        positions = np.concatenate(self.positions)
        values = np.concatenate(self.values, axis=1)
        starts = np.arange(0, self.done - block + 1, self.step)
        at = np.searchsorted(positions, starts)
        until = np.searchsorted(positions, starts + block)
        return ((values[:, until] - values[:, at]) / block).sum(axis=0)


class _Sums:
    """Sums and extremes per channel (level, DC, peaks, overs, correlation, mid and side)."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.sum = np.zeros(channels)
        self.square = np.zeros(channels)
        self.high = np.full(channels, -np.inf)
        self.low = np.full(channels, np.inf)
        self.overs = 0
        self.cross = 0.0
        self.side = 0.0
        self.mid = 0.0
        self.identical = True

    def add(self, block: np.ndarray) -> None:
        x = block.astype(np.float64)
        self.n += x.shape[-1]
        self.sum += x.sum(axis=-1)
        self.square += np.einsum("ij,ij->i", x, x)
        if x.shape[-1]:
            self.high = np.maximum(self.high, x.max(axis=-1))
            self.low = np.minimum(self.low, x.min(axis=-1))
        self.overs += int(np.count_nonzero(np.abs(block) > 1.0))
        if x.shape[0] == 2:
            self.cross += float(x[0] @ x[1])
            self.identical = self.identical and bool(np.array_equal(block[0], block[1]))
            side, mid = x[0] - x[1], x[0] + x[1]
            self.side += float(side @ side) / 4.0
            self.mid += float(mid @ mid) / 4.0

    @property
    def peaks(self) -> np.ndarray:
        """Each channel's largest magnitude."""
        return np.maximum(np.abs(self.high), np.abs(self.low))

    def mean_square(self) -> float:
        return float(self.square.sum() / max(self.n * self.sum.size, 1))

    def dc_offset(self) -> float:
        means = self.sum / max(self.n, 1)
        return float(means[np.argmax(np.abs(means))])

    def correlation(self) -> float:
        """:func:`interchannel_correlation` from the sums."""
        if self.sum.size < 2 or self.identical:
            return 1.0
        left = self.square[0] - self.sum[0] ** 2 / self.n
        right = self.square[1] - self.sum[1] ** 2 / self.n
        norm = float(np.sqrt(max(left, 0.0) * max(right, 0.0)))
        return float((self.cross - self.sum[0] * self.sum[1] / self.n) / norm) if norm > 0 else 0.0

    def width_db(self) -> float:
        """:func:`stereo_width_db` from the sums."""
        if self.sum.size < 2 or self.side == 0.0:
            return float("-inf")
        return float(_db(self.side / max(self.mid, 1e-30)))


class ClipRuns:
    """:func:`clipped_runs` a block at a time, from the channels' extremes of the first pass;
    a run that crosses a block boundary is carried to the next block."""

    def __init__(self, high: np.ndarray, low: np.ndarray, length: int, min_run: int = 3,
                 tolerance: float = CLIP_FLATNESS) -> None:
        self.length = length
        self.min_run = min_run
        self.sides = []  # (channel, sign, extreme, level, step)
        for c, (top, bottom) in enumerate(zip(high, low, strict=True)):
            for sign, extreme in ((1.0, float(top)), (-1.0, -float(bottom))):
                if extreme > 0.0 and length >= min_run:
                    self.sides.append((c, sign, extreme, np.float32(extreme * (1.0 - tolerance)),
                                       max(extreme * CLIP_MIN_STEP, CLIP_MIN_STEP_ABS)))
        self.open: dict[int, tuple[int, bool]] = {}  # side -> (start, entered by a step)
        self.last: np.ndarray | None = None  # the previous block's last samples
        self.offset = 0
        self.runs = 0
        self.samples = 0

    def _close(self, start: int, end: int, before: bool, after: bool) -> None:
        if end - start >= self.min_run and not (start == 0 and end == self.length) \
                and before and after:
            self.runs += 1
            self.samples += end - start

    def add(self, block: np.ndarray) -> None:
        n = block.shape[-1]
        if n == 0:
            return
        for k, (c, sign, extreme, level, step) in enumerate(self.sides):
            channel = block[c]
            top = channel >= level if sign > 0 else channel <= -level
            edges = np.diff(np.concatenate([[0], top.astype(np.int8), [0]]))
            starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
            pending = self.open.pop(k, None)
            if pending is not None and not (starts.size and starts[0] == 0):
                # The run open at the end of the last block ended with it.
                self._close(pending[0], self.offset, pending[1],
                            sign * float(channel[0]) < extreme - step)
                pending = None
            for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
                if i == 0 and pending is not None:
                    start, before = pending
                else:
                    start = self.offset + int(s)
                    if s > 0:
                        before = sign * float(channel[s - 1]) < extreme - step
                    elif self.last is not None:
                        before = sign * float(self.last[c]) < extreme - step
                    else:
                        before = True
                if e == n:  # runs on into the next block
                    self.open[k] = (start, before)
                else:
                    self._close(start, self.offset + int(e), before,
                                sign * float(channel[e]) < extreme - step)
        self.last = block[:, -1].copy()
        self.offset += n

    def skip(self, n: int) -> None:
        """Pass over ``n`` samples known to hold no sample of a flat top (nor to end one: the
        last block given ended with a sample off every top)."""
        assert not self.open, "a flat top runs into the samples skipped"
        self.offset += n
        self.last = None

    def finish(self) -> tuple[int, int]:
        for start, before in self.open.values():
            self._close(start, self.length, before, True)
        self.open.clear()
        return self.runs, self.samples


#: Intervals interpolated at once by :class:`_TruePeakMax`.
_TP_CHUNK = 1 << 16


class _TruePeakMax:
    """:func:`true_peak` a block at a time: the intervals it interpolates (around samples
    within 6 dB of the channel's peak, known from the first pass), each from its 12 samples,
    carried across block boundaries."""

    def __init__(self, peaks: np.ndarray) -> None:
        self.peaks = peaks.astype(np.float32)
        channels = peaks.size
        self.held = np.zeros((channels, 6), dtype=np.float32)  # zero padding before sample 0
        self.start = -6  # absolute index of held[:, 0]
        self.next = 0  # the next interval (the one that ends on this sample) to evaluate
        self.length = 0
        self.best = float(np.max(peaks, initial=0.0))

    def add(self, block: np.ndarray) -> None:
        self.length += block.shape[-1]
        self.held = np.concatenate([self.held, block.astype(np.float32, copy=False)], axis=-1)
        self._evaluate(self.start + self.held.shape[-1] - 6)

    def finish(self) -> float:
        self.held = np.concatenate([self.held, np.zeros((self.held.shape[0], 6), np.float32)],
                                   axis=-1)
        self._evaluate(self.length + 1)
        return self.best

    def _evaluate(self, until: int) -> None:
        """Intervals ``next .. until - 1``: each needs samples ``j - 6 .. j + 5``."""
        first, last = self.next, until
        if last <= first:
            return
        for c in range(self.held.shape[0]):
            peak = float(self.peaks[c])
            if peak == 0.0:
                continue
            # near[i] for i in first - 1 .. last (False outside the clip)
            idx = np.arange(first - 1, last + 1)
            inside = (idx >= 0) & (idx < self.length if self.length else False)
            values = np.zeros(idx.size, dtype=np.float32)
            values[inside] = self.held[c, idx[inside] - self.start]
            near = inside & (np.abs(values) >= np.float32(_TP_NEAR) * np.float32(peak))
            chosen = near[:-2] | near[1:-1]  # interval j: near[j - 1] or near[j]
            if first == 0:
                chosen[0] = near[1] | near[2]  # true_peak's first window: near[0] or near[1]
            js = np.flatnonzero(chosen) + first
            if js.size == 0:
                continue
            windows = np.lib.stride_tricks.sliding_window_view(self.held[c], 12)
            for part in range(0, js.size, _TP_CHUNK):  # bounded temporaries on dense peaks
                chosen_windows = windows[js[part:part + _TP_CHUNK] - 6 - self.start]
                between = np.abs(chosen_windows @ _TP_TAPS)
                self.best = max(self.best, float(between.max(initial=0.0)))
        self.next = last
        keep = self.next - 6 - self.start  # samples the next interval still needs
        self.held = self.held[:, max(keep, 0):]
        self.start += max(keep, 0)


class _Frames:
    """The frames of :func:`~genrestore.spectral.stft` (same padding, window and hop) of a
    clip given a block at a time, as ``(channels, frames, bins)`` complex64 chunks."""

    def __init__(self, channels: int, length: int, n_fft: int) -> None:
        self.n, self.hop = n_fft, n_fft // OVERLAP
        self.total = -(-(length + n_fft - self.hop) // self.hop)
        self.held = np.zeros((channels, n_fft - self.hop), dtype=np.float32)
        self.done = 0
        self.window = np.hanning(n_fft + 1)[:-1].astype(np.float32)

    def add(self, block: np.ndarray) -> np.ndarray:
        self.held = np.concatenate([self.held, block.astype(np.float32, copy=False)], axis=-1)
        return self._frames(min(self.total - self.done, self._whole()))

    def finish(self) -> np.ndarray:
        pad = (self.total - self.done - 1) * self.hop + self.n - self.held.shape[-1]
        if pad > 0:
            self.held = np.concatenate([self.held, np.zeros((self.held.shape[0], pad),
                                                            np.float32)], axis=-1)
        return self._frames(self.total - self.done)

    def _whole(self) -> int:
        size = self.held.shape[-1]
        return (size - self.n) // self.hop + 1 if size >= self.n else 0

    def _frames(self, count: int) -> np.ndarray:
        if count <= 0:
            return np.zeros((self.held.shape[0], 0, self.n // 2 + 1), dtype=np.complex64)
        view = np.lib.stride_tricks.sliding_window_view(self.held, self.n, axis=-1)[:, ::self.hop]
        spec = windowed_rfft(view[:, :count], self.window)
        self.held = self.held[:, count * self.hop:]
        self.done += count
        return spec


class StftMeasures:
    """:func:`noise_floors_dbfs` of a ``(channels, length)`` clip given a block at a time,
    from one STFT of ``n_fft`` points (the frames of :func:`~genrestore.spectral.stft`) and
    the floor's minimum-statistics tracking with its halo (:class:`_FloorTracker`), over the
    bins under ``max_hz`` (``None``: the whole band) that every reading stops at.  Its memory
    does not grow with the clip; its figures equal those of the whole clip's STFT to
    rounding (tests/test_streaming.py).  The guard measures its output's floor this way."""

    def __init__(self, channels: int, length: int, sample_rate: int, n_fft: int,
                 max_hz: float | None = None) -> None:
        self.rate, self.n_fft, self.channels = sample_rate, n_fft, channels
        self.frames = _Frames(channels, length, n_fft)
        self.freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
        self.first, self.last = _trimmed_range(self.frames.total)
        tracked = _tracked_bins(self.freqs, sample_rate, max_hz)
        self.tracker = (_FloorTracker(channels, self.last - self.first, self.freqs.size,
                                      self.frames.hop / sample_rate, tracked)
                        if tracked.stop > tracked.start else None)

    def add(self, block: np.ndarray) -> None:
        start = self.frames.done
        self._spectral(self.frames.add(block), start)

    def _spectral(self, spec: np.ndarray, start: int, *, end: bool = False) -> None:
        if self.tracker is None:
            return
        lo, hi = max(self.first, start), min(self.last, start + spec.shape[-2])
        if hi > lo:
            part = spec[:, lo - start:hi - start, self.tracker.crop]
            self.tracker.add(part.real**2 + part.imag**2, last=end)
        elif end:
            self.tracker.add(np.zeros((self.channels, 0, self.tracker.width), np.float32),
                             last=True)

    def finish(self, tops_hz: Sequence[float | None], percentile: float = 10.0
               ) -> tuple[float, ...]:
        """The floor under each top (none above the ``max_hz`` given)."""
        start = self.frames.done
        self._spectral(self.frames.finish(), start, end=True)
        return _readings(self.tracker, self.freqs, self.rate, self.n_fft, tops_hz, percentile)


#: The per-bin median of the tracked floor over a long clip (more tracked values than
#: :data:`_EXACT_FLOOR_BYTES` hold, about 4 minutes of stereo) is read from a histogram of
#: their level: steps of :data:`_HIST_STEP_DB` from :data:`_HIST_LOW_DB` (everything under it,
#: but exact zeros, counts there) to :data:`_HIST_HIGH_DB` (|X|^2 of full-scale audio is
#: about 60 dB at 2048 points), so the median is within 0.05 dB of the exact one in bounded
#: memory.  Which way is chosen depends on the clip's length and the band tracked (the
#: guard's floor under the cutoff tracks fewer bins, so it stays exact on longer clips than
#: the whole band does), never on the blocks, so a clip measured a block at a time reads what
#: it reads measured at once.
_EXACT_FLOOR_BYTES = 32 << 20
_HIST_LOW_DB, _HIST_HIGH_DB, _HIST_STEP_DB = -200.0, 120.0, 0.1
_HIST_LEVELS = round((_HIST_HIGH_DB - _HIST_LOW_DB) / _HIST_STEP_DB) + 2  # zero, then the steps


class _FloorTracker:
    """:func:`noise_floors_dbfs`'s minimum-statistics tracking over the frames of a clip given
    a chunk at a time: each chunk is tracked with enough frames either side (a halo) that its
    values equal those of tracking the whole clip, and only the histogram of the tracked
    levels per bin is kept, from which each bin's median over the clip is read.

    It is given the power of the bins in :attr:`crop` only: the tracked bins and the
    :data:`_FLOOR_BINS` either side that the smoothing across bins (a running minimum, then a
    running mean, each :data:`_FLOOR_BINS` wide) reaches, so the tracked bins' values equal
    those of tracking every bin."""

    def __init__(self, channels: int, frames: int, bins: int, hop_s: float,
                 tracked_bins: slice) -> None:
        self.frames = frames  # the trimmed frames of the whole clip
        self.step, self.span = tracker_steps(frames, hop_s, _FLOOR_WINDOW_S, _FLOOR_SMOOTH_S)
        self.halo = (self.span + 3) * self.step
        self.bins = tracked_bins
        start, stop, _ = tracked_bins.indices(bins)
        self.crop = slice(max(0, start - _FLOOR_BINS), min(bins, stop + _FLOOR_BINS))
        self.width = self.crop.stop - self.crop.start
        self.inner = slice(start - self.crop.start, stop - self.crop.start)  # within the crop
        count = stop - start
        exact = channels * count * self.decimated() * 4 <= _EXACT_FLOOR_BYTES
        self.kept: list[np.ndarray] | None = [] if exact else None
        self.hist = None if exact else np.zeros((channels, count, _HIST_LEVELS), dtype=np.int32)
        self.held = np.zeros((channels, 0, self.width), dtype=np.float32)
        self.held_from = 0  # trimmed frame index of held[:, 0]
        self.core = 0  # frames before this one are counted
        self.received = 0

    def add(self, power: np.ndarray, *, last: bool = False) -> None:
        self.held = np.concatenate([self.held, power], axis=-2) if self.held.shape[-2] else power
        self.received += power.shape[-2]
        chunk = max(2 * self.halo, 1024 // self.step * self.step)  # frames tracked at once
        while True:
            end = self.frames if last else (self.received - self.halo) // self.step * self.step
            end = min(end, self.core + chunk) if not last else end
            if end <= self.core:
                return
            self._track(self.core, end)
            self.core = end
            if last and end >= self.frames:
                return

    def _track(self, start: int, end: int) -> None:
        lo = max(0, start - self.halo)
        hi = min(self.frames, end + self.halo)
        window = self.held[:, lo - self.held_from:hi - self.held_from]
        tracked = track_minima(window, self.step, self.span, _FLOOR_BINS)
        first = (start - lo) // self.step
        count = -(-(end - start) // self.step)
        self._count(tracked[:, first:first + count, self.inner])
        drop = max(0, end - self.halo) - self.held_from  # frames no later chunk needs
        if drop > 0:
            self.held = self.held[:, drop:]
            self.held_from += drop

    def _count(self, tracked: np.ndarray) -> None:
        if self.kept is not None:
            self.kept.append(tracked)
            return
        assert self.hist is not None
        with np.errstate(divide="ignore"):
            level = 10.0 * np.log10(tracked.astype(np.float64))
        index = np.clip(np.floor((level - _HIST_LOW_DB) / _HIST_STEP_DB) + 1, 1,
                        _HIST_LEVELS - 1).astype(np.int64)
        index[tracked <= 0.0] = 0
        count = index.shape[-1]
        offsets = np.arange(count, dtype=np.int64) * _HIST_LEVELS
        for channel, levels in enumerate(index):  # 64 bins' counts at a time: small temporaries
            for lo in range(0, count, 64):
                hi = min(count, lo + 64)
                counts = np.bincount((levels[:, lo:hi] + offsets[:hi - lo]).ravel(),
                                     minlength=(hi - lo) * _HIST_LEVELS)
                self.hist[channel, lo:hi] += counts.reshape(hi - lo, _HIST_LEVELS).astype(np.int32)

    def floor(self, bins: int) -> np.ndarray:
        """Each bin's median tracked floor over the clip, channels averaged (zero outside the
        tracked bins)."""
        out = np.zeros(bins)
        if self.kept is not None:
            out[self.bins] = _median(np.concatenate(self.kept, axis=-2), axis=-2).mean(axis=0)
            return out
        assert self.hist is not None
        centres = np.concatenate([[0.0], 10.0 ** ((_HIST_LOW_DB + (np.arange(1, _HIST_LEVELS)
                                                                     - 0.5) * _HIST_STEP_DB) / 10.0)])
        median = np.zeros(self.hist.shape[:2])
        for lo in range(0, median.shape[1], 64):  # 64 bins at a time: small temporaries
            cumulative = np.cumsum(self.hist[:, lo:lo + 64], axis=-1)
            total = cumulative[..., -1:]
            below = np.argmax(cumulative > (total - 1) // 2, axis=-1)  # the two middle ranks
            above = np.argmax(cumulative > total // 2, axis=-1)
            median[:, lo:lo + 64] = (centres[below] + centres[above]) / 2.0
        out[self.bins] = median.mean(axis=0)
        return out

    def decimated(self) -> int:
        return -(-self.frames // self.step)


def _floor_band(freqs: np.ndarray, sample_rate: int, max_hz: float | None) -> np.ndarray:
    top = min(FLOOR_BAND_HZ[1], 0.95 * sample_rate / 2.0)
    if max_hz is not None:
        top = min(top, max_hz)
    return (freqs >= FLOOR_BAND_HZ[0]) & (freqs <= top)


def _tracked_bins(freqs: np.ndarray, sample_rate: int, max_hz: float | None = None) -> slice:
    """The bins a floor reading looks at (:data:`FLOOR_BAND_HZ` at this rate, up to ``max_hz``
    when every reading stops there)."""
    inside = np.flatnonzero(_floor_band(freqs, sample_rate, max_hz))
    return slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)


class _Flatness:
    """:func:`top_band_flatness`'s per-frame energy and flatness, a chunk of frames at a time."""

    def __init__(self, band: slice) -> None:
        self.band = band
        self.energy: list[np.ndarray] = []
        self.flatness: list[np.ndarray] = []

    def add(self, spec: np.ndarray) -> None:
        power = (np.abs(spec[..., self.band]) ** 2).mean(axis=0).astype(np.float64) + 1e-30
        energy = power.mean(axis=-1)
        self.energy.append(energy)
        self.flatness.append(np.exp(np.log(power).mean(axis=-1)) / energy)

    def result(self) -> float:
        energy, flatness = np.concatenate(self.energy), np.concatenate(self.flatness)
        busy = energy > energy.max(initial=0.0) * 1e-4
        return float(_median(flatness[busy])) if np.any(busy) else 0.0


def _readings(tracker: _FloorTracker | None, freqs: np.ndarray, sample_rate: int, n_fft: int,
              tops_hz: Sequence[float | None], percentile: float) -> tuple[float, ...]:
    """The noise floor under each top of the band, from one tracking (``None``: none ran)."""
    if tracker is None:
        return tuple(float("-inf") for _ in tops_hz)
    bias = _percentile_of_white(tracker.step, tracker.span, _FLOOR_BINS, tracker.decimated(),
                                float(percentile))
    floor = tracker.floor(freqs.size)
    readings = []
    for max_hz in tops_hz:
        band = _floor_band(freqs, sample_rate, max_hz)
        readings.append(_floor_reading((floor, bias), band, percentile, n_fft, sample_rate)
                        if band.any() else float("-inf"))
    return tuple(readings)


def _top_band(freqs: np.ndarray, n_fft: int, sample_rate: int, cutoff_hz: float) -> slice:
    """The bins of :func:`top_band_flatness`'s band, 0.75 x ``cutoff_hz`` to the cutoff."""
    if cutoff_hz <= 0:
        return slice(0, 0)

    def bin_of(freq_hz: float) -> int:
        return min(max(round(freq_hz * n_fft / sample_rate), 0), n_fft // 2)

    return slice(bin_of(0.75 * cutoff_hz), bin_of(cutoff_hz) + 1)


def _trimmed_range(frames: int) -> tuple[int, int]:
    """The frames the floor is tracked over: those that overlap the zero padding read low."""
    return (OVERLAP - 1, frames - OVERLAP + 1) if frames > 4 * OVERLAP else (0, frames)


def analyze_blocks(blocks: Blocks, sample_rate: int, channels: int, *,
                   source: str = "<array>") -> Analysis:
    """:func:`analyze` of a clip given by a :data:`Blocks` source, read twice: the memory it
    needs does not grow with the clip's length (a block's worth of arrays, the gating blocks'
    energies and a few figures per STFT hop), and the figures equal :func:`analyze`'s on the
    whole clip (to rounding) whatever the blocks' sizes.  A clip under
    :data:`~genrestore.io.MIN_DURATION_S` is a :class:`ParameterError` naming ``source``."""
    # Pass 1: the long-term spectrum (and a finer one for the bass), loudness, sums, extremes,
    # the length.
    welch = _WelchSum(channels, long_term_segment(sample_rate))
    fine = _WelchSum(channels, 2 ** int(np.ceil(np.log2(sample_rate / 5.0))))
    loudness = LoudnessSum(channels, sample_rate)
    sums = _Sums(channels)
    for block in blocks():
        welch.add(block)
        fine.add(block)
        loudness.add(block)
        sums.add(block)
    length = sums.n
    if length < MIN_DURATION_S * sample_rate:
        raise ParameterError(f"{source}: too short ({length} samples; at least "
                             f"{MIN_DURATION_S:g} s is needed)")
    loudness.finish()
    spectrum = LongTermSpectrum(*welch.level_db(sample_rate))
    fine_freqs, fine_psd = fine.psd(sample_rate)
    below = fine_freqs <= LOW_SPECTRUM_HZ
    low_spectrum = LongTermSpectrum(fine_freqs[below], _db(fine_psd[below]))
    cutoff = estimate_cutoff_hz(np.zeros((channels, 0)), sample_rate, spectrum=spectrum)
    # Pass 2: the STFT's noise floors and top band, clipped runs, true peak.
    n_fft = default_n_fft(sample_rate)
    frames = _Frames(channels, length, n_fft)
    bin_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    first, last = _trimmed_range(frames.total)
    tracked = _tracked_bins(bin_freqs, sample_rate)
    tracker = (_FloorTracker(channels, last - first, bin_freqs.size, frames.hop / sample_rate,
                             tracked) if tracked.stop > tracked.start else None)
    top_band = _top_band(bin_freqs, n_fft, sample_rate, cutoff)
    flat = top_band.stop - top_band.start >= 4  # top_band_flatness reads 0 otherwise
    flatness = _Flatness(top_band)
    runs = ClipRuns(sums.high, sums.low, length)
    peak = _TruePeakMax(sums.peaks)

    def spectral(spec: np.ndarray, start: int, *, end: bool = False) -> None:
        if flat and spec.shape[-2]:
            flatness.add(spec)
        if tracker is not None:
            lo, hi = max(first, start), min(last, start + spec.shape[-2])
            if hi > lo:
                part = spec[:, lo - start:hi - start, tracker.crop]
                tracker.add(part.real**2 + part.imag**2, last=end)
            elif end:
                tracker.add(np.zeros((channels, 0, tracker.width), np.float32), last=True)

    for block in blocks():
        start = frames.done
        spectral(frames.add(block), start)
        runs.add(block)
        peak.add(block)
    start = frames.done
    spectral(frames.finish(), start, end=True)
    floor, floor_under_cutoff = _readings(tracker, bin_freqs, sample_rate, n_fft, (None, cutoff),
                                          10.0)
    top_flatness = flatness.result() if flat else 0.0
    mean_square = sums.mean_square()
    level = float(_db(mean_square)) if mean_square > 0 else float("-inf")
    peak_all = float(np.max(sums.peaks, initial=0.0))
    rms = float(np.sqrt(mean_square))
    clipped, clipped_samples = runs.finish()
    true_peak_value = peak.finish()
    lufs = gated_lufs(loudness.energies(loudness.blocks[0]))
    lra = _range_lu(loudness.energies(loudness.blocks[1]))
    nan = float("nan")
    fold = (mono_fold_down(np.array([sums.n, *sums.sum, *sums.square, sums.cross]))
            if channels == 2 else FoldDown(nan, nan, nan))
    return Analysis(
        sample_rate=int(sample_rate),
        channels=int(channels),
        duration_s=length / sample_rate,
        cutoff_hz=cutoff,
        top_band_flatness=top_flatness,
        top_band_noise_like=top_flatness > NOISE_LIKE_FLATNESS,
        noise_floor_dbfs=floor,
        snr_db=level - floor if np.isfinite(level) else 0.0,
        integrated_lufs=lufs,
        loudness_range_lu=lra,
        sample_peak_dbfs=float(20.0 * np.log10(peak_all)) if peak_all > 0 else float("-inf"),
        true_peak_dbtp=(float(20.0 * np.log10(true_peak_value)) if true_peak_value > 0
                        else float("-inf")),
        overs=sums.overs,
        clipped_runs=clipped,
        clipped_samples=clipped_samples,
        dc_offset=sums.dc_offset(),
        crest_factor_db=float(20.0 * np.log10(peak_all / rms)) if rms > 0 else 0.0,
        interchannel_correlation=sums.correlation(),
        is_mono=bool(channels == 1 or (channels == 2 and sums.width_db() <= -40.0)),
        noise_floor_under_cutoff_dbfs=floor_under_cutoff,
        mid_side_db=fold.mid_side_db,
        mono_fold_down_loss_db=fold.loss_db,
        spectrum=spectrum,
        low_spectrum=low_spectrum,
        low_spectrum_total=float(fine_psd.sum()),
    )
