"""One STFT for every spectral stage, and the noise-floor estimator they share.

The transform is a Hann-windowed STFT with 75 % overlap and weighted overlap-add
synthesis (Hann analysis and synthesis windows, whose squares sum to a constant at this
overlap), so ``istft(stft(x)) == x`` to float precision and a gain applied to the bins
is applied smoothly.  Spectrograms are ``(channels, frames, bins)`` complex64.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from genrestore.errors import ParameterError
from genrestore.filters import overlap_add_irfft, running_mean, running_min, windowed_rfft
from genrestore.io import as_channels

#: Overlap factor: hop = n_fft // OVERLAP.
OVERLAP = 4


def default_n_fft(sample_rate: int) -> int:
    """The power of two nearest 46 ms (at least 256): 1024 from about 16 to 31 kHz, 2048 at
    32, 44.1 and 48 kHz (64, 46 and 43 ms)."""
    target = 0.046 * sample_rate
    return int(2 ** max(8, round(np.log2(target))))


def _smooth(n: int) -> bool:
    """Whether ``n`` has no prime factor over 11 (the sizes pocketfft transforms fast)."""
    for p in (2, 3, 5, 7, 11):
        while n % p == 0:
            n //= p
    return n == 1


def n_fft_near(target: float) -> int:
    """The FFT size nearest ``target`` that is a multiple of :data:`OVERLAP` and fast to
    transform (no prime factor over 11): an STFT with bins of about a given width in Hz at
    another rate.  A size with a large prime factor (2824 = 8 x 353, the 32 kHz bin width at
    44.1 kHz) transforms about 6x slower."""
    base = max(OVERLAP, OVERLAP * round(target / OVERLAP))
    for step in range(base // OVERLAP):
        for n in (base - OVERLAP * step, base + OVERLAP * step):
            if n >= OVERLAP and _smooth(n):
                return n
    return base


@dataclass(frozen=True)
class Spectrogram:
    """A multichannel STFT plus what is needed to invert it."""

    data: np.ndarray  # (channels, frames, bins) complex64
    sample_rate: int
    n_fft: int
    length: int  # samples of the signal it came from

    @property
    def hop(self) -> int:
        return self.n_fft // OVERLAP

    @property
    def freqs_hz(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_fft, 1.0 / self.sample_rate)

    def bin_of(self, freq_hz: float) -> int:
        """Index of the bin nearest ``freq_hz`` (clamped to the valid range)."""
        k = round(freq_hz * self.n_fft / self.sample_rate)
        return min(max(k, 0), self.n_fft // 2)

    def replace(self, data: np.ndarray) -> Spectrogram:
        return Spectrogram(data, self.sample_rate, self.n_fft, self.length)


def bin_power_sum(data: np.ndarray) -> np.ndarray:
    """The power ``|X|^2`` of ``(channels, frames, bins)`` STFT data summed over channels and
    frames, per bin, in double precision (a few hundred frames at a time: no temporaries the
    size of the spectrogram)."""
    total = np.zeros(data.shape[-1])
    for channel in data:
        for start in range(0, channel.shape[0], 256):
            part = channel[start:start + 256]
            total += (part.real**2 + part.imag**2).sum(axis=0, dtype=np.float64)
    return total


def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann


def window_energy(n_fft: int) -> float:
    """Sum of the squared analysis window: ``|STFT|^2`` divided by it is the power per bin
    in the scale of the signal's variance (white noise of variance s^2 reads s^2)."""
    return float(np.sum(_window(n_fft).astype(np.float64) ** 2))


def stft(audio: np.ndarray, sample_rate: int, *, n_fft: int | None = None) -> Spectrogram:
    """STFT of ``(channels, samples)`` or 1-D (mono) audio; see the module docstring for the
    layout (a 1-D input gives one channel)."""
    n = n_fft or default_n_fft(sample_rate)
    if n % OVERLAP:
        raise ParameterError(f"n_fft must be a multiple of {OVERLAP}, got {n}")
    hop = n // OVERLAP
    x = as_channels(audio)
    length = x.shape[-1]
    frames = -(-(length + n - hop) // hop)  # enough frames to cover every sample fully
    padded = np.zeros((x.shape[0], (frames - 1) * hop + n), dtype=np.float32)
    padded[:, n - hop : n - hop + length] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, n, axis=-1)[:, ::hop]
    spec = windowed_rfft(view, _window(n))
    return Spectrogram(spec, sample_rate, n, length)


def istft(spec: Spectrogram) -> np.ndarray:
    """Invert :func:`stft`; returns float32 ``(channels, samples)`` of the original length."""
    n, hop = spec.n_fft, spec.hop
    out = overlap_add_irfft(spec.data, n, hop, _window(n))
    out /= np.float32(np.sum(_window(n) ** 2) / hop)
    start = n - hop
    return out[:, start : start + spec.length]


def tracker_steps(frames: int, hop_s: float, window_s: float, smooth_s: float) -> tuple[int, int]:
    """``(step, span)``: decimation step in frames and running-minimum span in decimated frames."""
    step = max(1, round(smooth_s / hop_s / 2))  # decimate in time: the floor moves slowly
    decimated = -(-frames // step)
    span = int(min(decimated, max(2, round(window_s / (hop_s * step)))))
    return step, span


def _decimated_mean(power: np.ndarray, size: int, step: int) -> np.ndarray:
    """``uniform_filter1d(power, size, axis=-2, mode="nearest")[..., ::step, :]``, computed
    only at the frames kept (5x faster than filtering every frame along a strided axis)."""
    left = size // 2
    padded = np.concatenate([np.repeat(power[..., :1, :], left, axis=-2), power,
                             np.repeat(power[..., -1:, :], size - 1 - left, axis=-2)], axis=-2)
    count = -(-power.shape[-2] // step)
    out = np.zeros((*power.shape[:-2], count, power.shape[-1]), dtype=np.float32)
    for k in range(size):
        out += padded[..., k : k + step * (count - 1) + 1 : step, :]
    out /= np.float32(size)
    return out


def track_minima(power: np.ndarray, step: int, span: int, smooth_bins: int) -> np.ndarray:
    """The uncorrected minimum-statistics floor, decimated in time by ``step``."""
    smoothed = _decimated_mean(power, min(2 * step, power.shape[-2]), step)
    floor = running_min(smoothed, span, axis=-2)
    floor = running_min(floor, smooth_bins, axis=-1)
    return running_mean(floor, smooth_bins, axis=-1)


#: The white-noise calibration: frames of a 128-point STFT (same window and overlap as
#: :func:`stft`), ``_CAL_WINDOWS`` minimum-statistics windows long, edge bins left out.
_CAL_N_FFT = 128
_CAL_WINDOWS = 32
_CAL_SEED = 20261124


@functools.lru_cache(maxsize=32)
def white_noise_floor(step: int, span: int, smooth_bins: int) -> np.ndarray:
    """What the tracker (:func:`track_minima`, uncorrected, decimated) returns for stationary
    white noise of unit mean power per bin: ``(frames, bins)`` float64, read-only.

    The ratio of a stationary noise's mean power to its tracked minimum depends on the
    decimation ``step``, the ``span`` and ``smooth_bins``, and the smoothed periodogram
    values it takes minima of are correlated (75 %-overlapping Hann frames, neighbouring
    bins share leakage), so there is no closed form for it.  It is measured instead, once
    per configuration (cached), by running a deterministic white-noise periodogram through
    the same tracker.  Because the window and the overlap are fixed, the correlations, and so
    the result, depend only on these three integers, not on the rate or the FFT size.
    """
    hop = _CAL_N_FFT // OVERLAP
    frames = _CAL_WINDOWS * span * step
    rng = np.random.default_rng(_CAL_SEED)
    noise = rng.standard_normal((frames - 1) * hop + _CAL_N_FFT, dtype=np.float32)
    window = _window(_CAL_N_FFT)
    view = np.lib.stride_tricks.sliding_window_view(noise, _CAL_N_FFT)[::hop]
    power = np.abs(windowed_rfft(view, window)) ** 2
    unit = power / np.float32(np.sum(window.astype(np.float64) ** 2))  # mean 1 per bin
    floor = track_minima(unit.astype(np.float32), step, span, smooth_bins)
    edge = smooth_bins + 1  # DC, Nyquist and the bins the frequency filters pad
    out = floor[:, edge:-edge].astype(np.float64)
    out.flags.writeable = False
    return out


def minstat_bias(step: int, span: int, smooth_bins: int) -> float:
    """Mean power of stationary noise over its uncorrected tracked minimum (about 3 to 11,
    depending on the configuration; see :func:`white_noise_floor`)."""
    return float(1.0 / white_noise_floor(step, span, smooth_bins).mean())


def noise_psd(
    power: np.ndarray,
    hop_s: float,
    *,
    window_s: float = 2.0,
    smooth_s: float = 0.1,
    smooth_bins: int = 9,
    phase: int = 0,
) -> np.ndarray:
    """Track the noise floor of a power spectrogram by minimum statistics.

    ``power`` is ``(..., frames, bins)``.  Each bin's power is averaged over ``smooth_s``
    seconds and its running minimum over ``window_s`` seconds is taken: music moves,
    stationary hiss stays, so the minimum follows the hiss even with no silent lead-in.
    Across frequency a running minimum then a mean over ``smooth_bins`` bins removes
    sustained tonal peaks (hiss is smooth in frequency, notes are not).  The result is
    corrected for the bias of taking minima, derived for this very configuration
    (:func:`minstat_bias`), so it is the mean noise power per bin (the scale of ``power``)
    at any rate, hop and ``window_s`` (tests/test_measurements.py checks white noise at 16 to
    48 kHz and 0.2 to 10 s); it is returned shaped like ``power``.  ``phase`` is the index of
    ``power``'s first frame in a longer whole (:mod:`genrestore.stream`).
    """
    frames = power.shape[-2]
    step, span = tracker_steps(frames, hop_s, window_s, smooth_s)
    # ``phase``: the index of the first frame in the whole file's frames (a segment of a long
    # file): the time decimation keeps the file's frames, so segments track as the file does.
    skip = (-phase) % step if frames > step else 0
    floor = track_minima(power[..., skip:, :], step, span, smooth_bins)
    floor *= np.float32(minstat_bias(step, span, smooth_bins))
    floor = np.repeat(floor, step, axis=-2)[..., :frames - skip, :]
    if skip:
        floor = np.concatenate([np.repeat(floor[..., :1, :], skip, axis=-2), floor], axis=-2)
    return floor
