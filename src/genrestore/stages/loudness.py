"""Loudness normalisation to a BS.1770 target with a true-peak brick-wall limiter.

The gain to the target is applied, pedalboard's look-ahead ``BrickwallLimiter`` (true-peak
side-chain) holds the ceiling, and because limiting lowers the loudness a little the gain
is corrected and the limiter re-run until the result is within ``tolerance_lu`` of the
target.  A final true-peak measurement trims any residual inter-sample overshoot, so the
ceiling is held exactly as measured by :func:`genrestore.analysis.true_peak`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pedalboard

from genrestore.analysis import integrated_lufs, true_peak, true_peak_dbtp
from genrestore.errors import ParameterError
from genrestore.stages.base import Context, StageReport, skipped

_MAX_PASSES = 4


def limit_true_peak(
    audio: np.ndarray,
    sample_rate: int,
    *,
    ceiling_dbtp: float = -1.0,
    release_ms: float = 80.0,
    lookahead_ms: float = 5.0,
) -> np.ndarray:
    """Hold ``(channels, samples)`` audio at or below ``ceiling_dbtp`` (4x oversampled peak)."""
    limiter = pedalboard.BrickwallLimiter(ceiling_db=ceiling_dbtp - 0.1, release_ms=release_ms,
                                          lookahead_ms=lookahead_ms, true_peak=True)
    out = limiter(np.ascontiguousarray(audio, dtype=np.float32), sample_rate)
    ceiling = 10.0 ** (ceiling_dbtp / 20.0)
    peak = true_peak(out)
    if peak > ceiling:  # residual overshoot the side-chain missed: trim it statically
        out *= np.float32(ceiling / peak * 0.9999)
    return out


def normalize_loudness(
    audio: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    release_ms: float = 80.0,
    tolerance_lu: float = 0.2,
    input_lufs: float | None = None,
    max_limiting_db: float | None = None,
) -> tuple[np.ndarray, float, float]:
    """Bring audio to ``target_lufs`` with true peaks at or below ``ceiling_dbtp``.

    Returns ``(audio, measured_lufs, gain_db)``.  Silence, and clips shorter than one
    400 ms gating block, are only peak-limited (``measured_lufs`` is ``-inf``).
    ``input_lufs`` saves measuring the input again when the caller already has.
    ``max_limiting_db`` caps how far the gain may push peaks into the limiter (gain above
    what the input's true peak allows); a quiet, peaky clip then ends below the target
    rather than squashed.
    """
    loudness = integrated_lufs(audio, sample_rate) if input_lufs is None else input_lufs
    if not np.isfinite(loudness):
        out = limit_true_peak(audio, sample_rate, ceiling_dbtp=ceiling_dbtp, release_ms=release_ms)
        return out, float("-inf"), 0.0
    start_lufs = loudness
    gain_db = target_lufs - loudness
    cap = float("inf")
    if max_limiting_db is not None:
        cap = ceiling_dbtp - true_peak_dbtp(audio) + max_limiting_db
    gain_db = min(gain_db, cap)
    out = np.asarray(audio, dtype=np.float32)
    tried: list[tuple[float, float]] = []
    best: tuple[float, np.ndarray, float, float] | None = None  # (|error|, audio, lufs, gain)
    for _ in range(_MAX_PASSES):
        scaled = out * np.float32(10.0 ** (gain_db / 20.0))
        limited = limit_true_peak(scaled, sample_rate, ceiling_dbtp=ceiling_dbtp,
                                  release_ms=release_ms)
        loudness = integrated_lufs(limited, sample_rate)
        error = target_lufs - loudness
        if best is None or abs(error) < best[0]:
            best = (abs(error), limited, loudness, gain_db)
        if abs(error) <= tolerance_lu:
            break
        tried.append((gain_db, loudness))
        # LU gained per dB of gain: limiting makes it smaller.  First guess from how much
        # the limiter took on this pass, then the secant through the last two passes.
        taken = max(0.0, gain_db - (loudness - start_lufs))  # dB the limiter took back
        slope = 1.0 - taken / (taken + 1.5)
        if len(tried) >= 2:
            (g0, l0), (g1, l1) = tried[-2], tried[-1]
            if g1 != g0:
                slope = float(np.clip((l1 - l0) / (g1 - g0), 0.25, 1.0))
        if gain_db >= cap and error > 0:
            break  # the cap stops here: the target is out of reach
        gain_db = min(gain_db + error / slope, cap)
    # A target the limiter cannot reach (too little crest factor left) ends at the closest try.
    _, limited, loudness, gain_db = best
    return limited, loudness, gain_db


@dataclass(frozen=True)
class Loudness:
    """Stage form of :func:`normalize_loudness`."""

    name: ClassVar[str] = "loudness"
    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    release_ms: float = 80.0
    max_limiting_db: float = 0.0  # 0: no cap on how hard the limiter works

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_limiting_db <= 30.0:
            raise ParameterError("loudness.max_limiting_db must be between 0 and 30 (0 = no cap)")
        if not -40.0 <= self.target_lufs <= -5.0:
            raise ParameterError("loudness.target_lufs must be between -40 and -5")
        if not -12.0 <= self.ceiling_dbtp <= 0.0:
            raise ParameterError("loudness.ceiling_dbtp must be between -12 and 0")
        if not 1.0 <= self.release_ms <= 2000.0:
            raise ParameterError("loudness.release_ms must be between 1 and 2000")

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        before = integrated_lufs(audio, sample_rate)
        out, after, gain_db = normalize_loudness(
            audio, sample_rate, target_lufs=self.target_lufs, ceiling_dbtp=self.ceiling_dbtp,
            release_ms=self.release_ms, input_lufs=before,
            max_limiting_db=self.max_limiting_db or None,
        )
        peak = true_peak_dbtp(out)
        if not np.isfinite(before):
            report = skipped(self.name, "silent or shorter than 0.4 s; peaks limited only",
                             true_peak_dbtp=round(peak, 2))
            return out, sample_rate, report
        summary = f"loudness {before:.1f}->{after:.1f} LUFS, peak {peak:.1f} dBTP"
        reached = abs(after - self.target_lufs) <= 0.5
        if not reached:
            summary += f" (target {self.target_lufs:g} not reached"
            summary += f": limiting capped at {self.max_limiting_db:g} dB)" if (
                self.max_limiting_db) else ")"
        details = {"input_lufs": round(before, 2), "output_lufs": round(after, 2),
                   "gain_db": round(gain_db, 2), "true_peak_dbtp": round(peak, 2),
                   "target_reached": reached}
        return out, sample_rate, StageReport(self.name, True, summary, details)
