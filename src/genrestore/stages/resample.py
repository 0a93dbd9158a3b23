"""Sample-rate conversion with soxr at very high quality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import soxr

from genrestore.errors import ParameterError
from genrestore.stages.base import Context, StageReport

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def resample(
    audio: np.ndarray, sample_rate: int, target_rate_hz: int, *, quality: str = "VHQ"
) -> np.ndarray:
    """Resample ``(channels, samples)`` audio from ``sample_rate`` to ``target_rate_hz``.

    soxr's linear-phase filter; the output has ``round(samples * target / rate)`` samples.
    """
    if quality not in QUALITIES:
        raise ParameterError(f"resample quality must be one of {QUALITIES}, not {quality!r}")
    if target_rate_hz == sample_rate:
        return np.asarray(audio, dtype=np.float32)
    x = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).T)
    y = soxr.resample(x, sample_rate, target_rate_hz, quality=quality)
    return np.ascontiguousarray(np.atleast_2d(y.T), dtype=np.float32)


@dataclass(frozen=True)
class Resample:
    """Resample to the pipeline's output rate (``rate_hz = 0``) or a fixed rate."""

    name: ClassVar[str] = "resample"
    rate_hz: int = 0
    quality: str = "VHQ"

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ParameterError(f"resample.quality must be one of {QUALITIES}")
        if self.rate_hz < 0:
            raise ParameterError("resample.rate_hz must be 0 (the output rate) or positive")

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        target = self.rate_hz or context.output_rate_hz
        if target == sample_rate:
            return audio, sample_rate, StageReport(self.name, False, f"{sample_rate} Hz kept")
        out = resample(audio, sample_rate, target, quality=self.quality)
        summary = f"resample {sample_rate / 1000:g}->{target / 1000:g} kHz"
        return out, target, StageReport(self.name, True, summary, {"from_hz": sample_rate,
                                                                    "to_hz": target})
