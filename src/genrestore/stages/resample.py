"""Sample-rate conversion with soxr at very high quality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import soxr

from genrestore.errors import ParameterError
from genrestore.io import MAX_RATE_HZ, MIN_RATE_HZ, as_channels
from genrestore.stages.base import Context, StageReport, decision

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def resample(
    audio: np.ndarray, sample_rate: int, target_rate_hz: int, *, quality: str = "VHQ"
) -> np.ndarray:
    """Resample ``(channels, samples)`` or 1-D (mono) audio from ``sample_rate`` to
    ``target_rate_hz``; returns ``(channels, samples)``.

    soxr's linear-phase filter; the output has ``round(samples * target / rate)`` samples.
    Both rates must lie in 8-384 kHz (:data:`genrestore.io.MIN_RATE_HZ` ..
    :data:`~genrestore.io.MAX_RATE_HZ`).
    """
    Resample(quality=quality)
    for rate in (sample_rate, target_rate_hz):
        if not isinstance(rate, (int, np.integer)) or not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
            raise ParameterError(f"resample: rate {rate} Hz is outside {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz")
    x = as_channels(audio)
    if target_rate_hz == sample_rate:
        return x
    y = soxr.resample(np.ascontiguousarray(x.T), sample_rate, target_rate_hz, quality=quality)
    return np.ascontiguousarray(np.atleast_2d(y.T), dtype=np.float32)


@dataclass(frozen=True)
class Resample:
    """Resample to the pipeline's output rate (``--rate``, ``output_rate_hz``): the one place
    the output rate is chosen, so a preset cannot write a rate the caller did not ask for."""

    name: ClassVar[str] = "resample"
    quality: str = "VHQ"

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ParameterError(f"resample.quality must be one of {QUALITIES}")

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        target = context.output_rate_hz
        _, declined = decision(self, context, sample_rate)
        if declined is not None:
            return audio, sample_rate, declined
        out = resample(audio, sample_rate, target, quality=self.quality)
        summary = f"resample {sample_rate / 1000:g}->{target / 1000:g} kHz"
        return out, target, StageReport(self.name, True, summary, {"from_hz": sample_rate,
                                                                    "to_hz": target})
