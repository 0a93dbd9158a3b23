"""One STFT for every spectral stage, and the noise-floor estimator they share.

The transform is a Hann-windowed STFT with 75 % overlap and weighted overlap-add
synthesis (Hann analysis and synthesis windows, whose squares sum to a constant at this
overlap), so ``istft(stft(x)) == x`` to float precision and a gain applied to the bins
is applied smoothly.  Spectrograms are ``(channels, frames, bins)`` complex64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

from genrestore.errors import ParameterError
from genrestore.io import as_channels

#: Overlap factor: hop = n_fft // OVERLAP.
OVERLAP = 4


def default_n_fft(sample_rate: int) -> int:
    """An FFT size of about 46 ms: 2048 at 44.1/48 kHz, 1024 at 22-32 kHz."""
    target = 0.046 * sample_rate
    return int(2 ** max(8, round(np.log2(target))))


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


def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann


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
    spec = scipy.fft.rfft(view * _window(n), axis=-1).astype(np.complex64, copy=False)
    return Spectrogram(spec, sample_rate, n, length)


def istft(spec: Spectrogram) -> np.ndarray:
    """Invert :func:`stft`; returns float32 ``(channels, samples)`` of the original length."""
    n, hop = spec.n_fft, spec.hop
    frames = scipy.fft.irfft(spec.data, n=n, axis=-1).astype(np.float32, copy=False)
    frames *= _window(n)
    channels, count, _ = frames.shape
    out = np.zeros((channels, (count + OVERLAP - 1) * hop), dtype=np.float32)
    for part in range(OVERLAP):
        chunk = frames[:, :, part * hop : (part + 1) * hop].reshape(channels, -1)
        out[:, part * hop : part * hop + chunk.shape[-1]] += chunk
    out /= np.float32(np.sum(_window(n) ** 2) / hop)
    start = n - hop
    return out[:, start : start + spec.length]


#: Ratio of a stationary noise's mean power to the uncorrected minimum tracked by
#: :func:`noise_psd` with its defaults; measured on white noise (tests/test_spectral.py checks it).
_MINSTAT_BIAS = 5.9


def noise_psd(
    power: np.ndarray,
    hop_s: float,
    *,
    window_s: float = 2.0,
    smooth_s: float = 0.1,
    smooth_bins: int = 9,
) -> np.ndarray:
    """Track the noise floor of a power spectrogram by minimum statistics.

    ``power`` is ``(..., frames, bins)``.  Each bin's power is averaged over ``smooth_s``
    seconds and its running minimum over ``window_s`` seconds is taken: music moves,
    stationary hiss stays, so the minimum follows the hiss even with no silent lead-in.
    Across frequency a running minimum then a mean over ``smooth_bins`` bins removes
    sustained tonal peaks (hiss is smooth in frequency, notes are not).  The result is
    corrected for the bias of taking minima and returned shaped like ``power``.
    """
    frames = power.shape[-2]
    step = max(1, round(smooth_s / hop_s / 2))  # decimate in time: the floor moves slowly
    smoothed = ndimage.uniform_filter1d(
        power, size=min(2 * step, frames), axis=-2, mode="nearest"
    )[..., ::step, :]
    span = int(min(smoothed.shape[-2], max(2, round(window_s / (hop_s * step)))))
    floor = ndimage.minimum_filter1d(smoothed, size=span, axis=-2, mode="nearest")
    floor = ndimage.minimum_filter1d(floor, size=smooth_bins, axis=-1, mode="nearest")
    floor = ndimage.uniform_filter1d(floor, size=smooth_bins, axis=-1, mode="nearest")
    floor *= np.float32(_MINSTAT_BIAS)
    return np.repeat(floor, step, axis=-2)[..., :frames, :]
