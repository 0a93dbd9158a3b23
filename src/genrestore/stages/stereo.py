"""Mono to stereo, mono-compatibly: ``L = x + s``, ``R = x - s``.

The side signal ``s`` is the input through a cascade of Schroeder all-pass filters (flat
magnitude, a frequency-dependent phase, so it is decorrelated from ``x``) and a high-pass that
keeps the bass centred.  The mid channel ``(L + R) / 2`` is therefore the input itself, and
a listener on a mono speaker hears exactly the original.  The side gain is solved so that the
inter-channel (Pearson) correlation lands on ``correlation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genrestore.analysis import interchannel_correlation
from genrestore.errors import ParameterError
from genrestore.filters import butter2_highpass, sosfiltfilt
from genrestore.io import as_channels
from genrestore.stages.base import Context, StageReport, decision

#: All-pass delays (ms) and gain: mutually prime-ish lengths spread the phase evenly.
ALLPASS_MS = (4.7, 7.3, 11.9, 17.3)
ALLPASS_GAIN = 0.6


def _allpass(x: np.ndarray, delay: int, gain: float) -> np.ndarray:
    """Schroeder all-pass ``y[n] = -g x[n] + x[n - M] + g y[n - M]``, computed ``M`` samples
    at a time (each block needs only the previous one)."""
    n = x.size
    padded = np.concatenate([np.zeros(delay), x, np.zeros((-n) % delay)])
    blocks = padded.reshape(-1, delay)  # block k holds x[(k-1)M : kM]
    out = np.zeros_like(blocks)
    for k in range(1, blocks.shape[0]):
        out[k] = -gain * blocks[k] + blocks[k - 1] + gain * out[k - 1]
    return out[1:].reshape(-1)[:n]


def decorrelate(mono: np.ndarray, sample_rate: int, *, bass_hz: float = 250.0) -> np.ndarray:
    """A decorrelated copy, ``(1, samples)``, of ``(1, samples)`` or 1-D mono audio with the
    same spectrum above ``bass_hz`` and nothing below it."""
    x = as_channels(mono, dtype=np.float64)
    if x.shape[0] != 1:
        raise ParameterError("decorrelate takes mono audio (one channel)")
    s = x[0]
    for ms in ALLPASS_MS:
        s = _allpass(s, max(1, round(ms * sample_rate / 1000.0)), ALLPASS_GAIN)
    return sosfiltfilt(butter2_highpass(bass_hz, sample_rate), s)[np.newaxis]


def side_sums(mono: np.ndarray, side: np.ndarray) -> np.ndarray:
    """The sums :func:`widen` solves its side gain from, of a mono signal and its
    side from :func:`decorrelate`: ``[n, sum x, sum s, sum x^2, sum s^2, sum x s]`` (float64).
    Sums of consecutive pieces add up to the whole signal's."""
    x, s = np.asarray(mono, dtype=np.float64).ravel(), np.asarray(side, dtype=np.float64).ravel()
    return np.array([x.size, x.sum(), s.sum(), x @ x, s @ s, x @ s])


def widen(mono: np.ndarray, sample_rate: int, *, correlation: float = 0.8,
          bass_hz: float = 250.0, sums: np.ndarray | None = None) -> np.ndarray:
    """``(1, samples)`` or 1-D mono to ``(2, samples)`` stereo whose mid is the input and
    whose left/right correlation is ``correlation`` (between 0 and 1).  The parameters
    follow :class:`Stereo`'s rules.  ``sums`` (:func:`side_sums`) are those of a whole
    signal this is a piece of (a segment of a long file): the gain is then the whole
    signal's, so every piece gets the same."""
    Stereo(correlation=correlation, bass_hz=bass_hz)
    x = as_channels(mono, dtype=np.float64)
    if x.shape[0] != 1:
        raise ParameterError("widen takes mono audio (one channel); downmix a stereo file first")
    side = decorrelate(x, sample_rate, bass_hz=bass_hz)

    def stereo(gain: float) -> np.ndarray:
        return np.concatenate([x + gain * side, x - gain * side])

    # Pearson correlation of x + g s and x - g s from three sums (means removed).
    if sums is None:
        xc, sc = x - x.mean(), side - side.mean()
        sxx, sss, sxs = float(np.sum(xc * xc)), float(np.sum(sc * sc)), float(np.sum(xc * sc))
    else:
        n, sx, ss, raw_xx, raw_ss, sxs = (float(v) for v in sums)
        # Centred by subtraction: a signal that is nearly all DC can come out a hair under
        # zero; what is left under 1e-12 of the raw sum is rounding, and counts as nothing.
        sxx, sss = raw_xx - sx * sx / n, raw_ss - ss * ss / n
        sxx = sxx if sxx > 1e-12 * raw_xx else 0.0
        sss = sss if sss > 1e-12 * raw_ss else 0.0
        sxs = sxs - sx * ss / n

    def error(gain: float) -> float:
        left = sxx + 2 * gain * sxs + gain * gain * sss
        right = sxx - 2 * gain * sxs + gain * gain * sss
        return (sxx - gain * gain * sss) / max(np.sqrt(left * right), 1e-30) - correlation

    high = 4.0 * np.sqrt(sxx / max(sss, 1e-30))  # correlation near -0.9 for uncorrelated side
    if sxx == 0.0 or sss == 0.0 or error(high) > 0.0:
        return stereo(0.0).astype(np.float32)  # silence or no content above the bass
    from scipy import optimize  # only here: its import takes longer than a short restore

    gain = optimize.brentq(error, 0.0, high, xtol=1e-6 * high)
    return stereo(gain).astype(np.float32)


@dataclass(frozen=True)
class Stereo:
    """Stage form of :func:`widen`: acts on mono input (or two identical channels) only,
    and only when ``enabled`` (set by a preset or ``genrestore restore --stereo``)."""

    name: ClassVar[str] = "stereo"
    enabled: bool = False
    correlation: float = 0.8
    bass_hz: float = 250.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.correlation < 1.0:
            raise ParameterError("stereo.correlation must be at least 0 and below 1")
        if not 20.0 <= self.bass_hz <= 1000.0:
            raise ParameterError("stereo.bass_hz must be between 20 and 1000")

    def side(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mono, side)``: the mono signal this stage widens and its decorrelated side,
        ``(1, samples)`` float64 each."""
        mono = np.asarray(audio, dtype=np.float32).mean(axis=0, keepdims=True)
        x = as_channels(mono, dtype=np.float64)
        return x, decorrelate(x, sample_rate, bass_hz=self.bass_hz)

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        _, declined = decision(self, context, sample_rate)
        if declined is not None:
            return audio, sample_rate, declined
        mono = np.asarray(audio, dtype=np.float32).mean(axis=0, keepdims=True)
        out = widen(mono, sample_rate, correlation=self.correlation, bass_hz=self.bass_hz,
                    sums=context.side_sums)
        reached = interchannel_correlation(out)
        return out, sample_rate, StageReport(
            self.name, True, f"stereo correlation {reached:.2f}",
            {"correlation": reached, "bass_hz": self.bass_hz})
