"""Make clean music sound like a text-to-music generator's output, reproducibly.

Each step is a small function; :func:`musicgen_like` chains them the way MusicGen's output
differs from a studio master: mono, 32 kHz, band-limited, a little hiss, and float
samples above full scale.  Randomness comes only from the explicit ``seed``.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from genrestore.stages.resample import resample


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels: ``(channels, n) -> (1, n)``."""
    return np.asarray(audio, dtype=np.float32).mean(axis=0, keepdims=True)


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float, *, order: int = 16) -> np.ndarray:
    """Zero-phase Butterworth low-pass (a codec's band limit)."""
    sos = signal.butter(order // 2, cutoff_hz, fs=sample_rate, output="sos")
    return signal.sosfiltfilt(sos, audio, axis=-1).astype(np.float32)


def add_noise(audio: np.ndarray, *, level_dbfs: float, seed: int = 0) -> np.ndarray:
    """Add white noise whose RMS is ``level_dbfs``."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(np.shape(audio)) * 10.0 ** (level_dbfs / 20.0)
    return (np.asarray(audio) + noise).astype(np.float32)


def set_peak(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale so the sample peak sits at ``peak_dbfs`` (above 0 makes float overs)."""
    x = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(x), initial=0.0))
    return x if peak == 0.0 else (x * (10.0 ** (peak_dbfs / 20.0) / peak)).astype(np.float32)


def musicgen_like(
    audio: np.ndarray,
    sample_rate: int,
    *,
    cutoff_hz: float = 10000.0,
    hiss_dbfs: float = -60.0,
    peak_dbfs: float = 2.0,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Mono, 32 kHz, low-passed at ``cutoff_hz``, hiss at ``hiss_dbfs``, peaks at ``peak_dbfs``.

    Returns ``(audio, 32000)``.
    """
    rate = 32000
    x = resample(to_mono(audio), sample_rate, rate)
    x = lowpass(x, rate, cutoff_hz)
    x = set_peak(x, peak_dbfs - 0.5)
    x = add_noise(x, level_dbfs=hiss_dbfs, seed=seed)
    return set_peak(x, peak_dbfs), rate
