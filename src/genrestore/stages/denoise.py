"""Spectral noise reduction for music with no silent lead-in.

The noise floor is tracked per bin over time by minimum statistics
(:func:`genrestore.spectral.noise_psd`); the gain is a Wiener gain computed from a
time/frequency-smoothed SNR (smoothing is what keeps "musical noise" away), limited to a
maximum attenuation, and blended with unity by ``strength``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genrestore.errors import ParameterError
from genrestore.filters import running_mean
from genrestore.spectral import Spectrogram, istft, noise_psd, stft
from genrestore.stages.base import Context, SpectralStage, StageReport, decision


def denoise_gain(
    spec: Spectrogram,
    *,
    strength: float = 1.0,
    max_attenuation_db: float = 10.0,
    window_s: float = 2.0,
    frame_offset: int = 0,
) -> tuple[np.ndarray, float]:
    """Per-bin gains ``(channels, frames, bins)`` and the mean attenuation of the noise in dB
    (``frame_offset``: ``spec``'s first frame in a longer whole, see :func:`noise_psd`).

    The parameters follow :class:`Denoise`'s rules (a :class:`ParameterError` otherwise)."""
    Denoise(strength=strength, max_attenuation_db=max_attenuation_db, window_s=window_s)
    power = spec.data.real**2 + spec.data.imag**2
    noise = noise_psd(power, spec.hop / spec.sample_rate, window_s=window_s, phase=frame_offset)
    # Smooth the observed power over 3 frames x 3 bins before forming the SNR.
    smoothed = running_mean(running_mean(power, 3, axis=-2), 3, axis=-1)
    snr = np.maximum(smoothed / np.maximum(noise, 1e-20) - 1.0, 0.0)
    gain = snr / (1.0 + snr)
    gain = running_mean(running_mean(gain, 3, axis=-2), 5, axis=-1)
    floor = np.float32(10.0 ** (-max_attenuation_db / 20.0))
    np.maximum(gain, floor, out=gain)
    gain = 1.0 - np.float32(strength) * (1.0 - gain)
    noise_total = float(noise.sum())
    attenuation_db = (
        float(10.0 * np.log10(max(float((gain**2 * noise).sum()) / noise_total, 1e-12)))
        if noise_total > 0
        else 0.0
    )
    return gain.astype(np.float32, copy=False), attenuation_db


def denoise(
    audio: np.ndarray,
    sample_rate: int,
    *,
    strength: float = 1.0,
    max_attenuation_db: float = 10.0,
    window_s: float = 2.0,
) -> np.ndarray:
    """Reduce stationary noise (hiss) in ``(channels, samples)`` or 1-D (mono) audio;
    returns ``(channels, samples)``.

    ``strength`` (0-1) blends between no change and the full Wiener gain;
    ``max_attenuation_db`` bounds how far any bin is pulled down; ``window_s`` is how long
    a stretch the noise tracker may look back over for a quiet moment.  The parameters
    follow :class:`Denoise`'s rules.
    """
    spec = stft(audio, sample_rate)
    gain, _ = denoise_gain(spec, strength=strength, max_attenuation_db=max_attenuation_db,
                           window_s=window_s)
    return istft(spec.replace(spec.data * gain))


@dataclass(frozen=True)
class Denoise(SpectralStage):
    """Stage form of :func:`denoise`."""

    name: ClassVar[str] = "denoise"
    strength: float = 1.0
    max_attenuation_db: float = 10.0
    window_s: float = 2.0
    #: When true, skip clips whose noise floor is already ``min_snr_db`` below their level.
    adaptive: bool = False
    min_snr_db: float = 60.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ParameterError("denoise.strength must be between 0 and 1")
        if not 0.0 <= self.max_attenuation_db <= 40.0:
            raise ParameterError("denoise.max_attenuation_db must be between 0 and 40")
        if not 0.2 <= self.window_s <= 10.0:
            raise ParameterError("denoise.window_s must be between 0.2 and 10")

    def apply_spectrum(self, spec: Spectrogram, context: Context) -> tuple[Spectrogram, StageReport]:
        _, declined = decision(self, context, spec.sample_rate)
        if declined is not None:
            return spec, declined
        gain, attenuation_db = denoise_gain(
            spec, strength=self.strength, max_attenuation_db=self.max_attenuation_db,
            window_s=self.window_s, frame_offset=context.frame_offset,
        )
        report = StageReport(self.name, True, f"denoise {attenuation_db:+.1f} dB",
                             {"noise_attenuation_db": round(attenuation_db, 2)})
        return spec.replace(spec.data * gain), report
