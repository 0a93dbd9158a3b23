"""Gentle mastering compression (pedalboard's compressor) with a level-relative threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genrestore.errors import ParameterError
from genrestore.filters import percentile
from genrestore.io import as_channels
from genrestore.stages.base import Context, StageReport, decision, skipped

_BLOCK_S = 0.1


def block_levels_dbfs(audio: np.ndarray, sample_rate: int, block_s: float = _BLOCK_S) -> np.ndarray:
    """RMS level (dBFS) of consecutive ``block_s`` blocks, channels combined."""
    x = as_channels(audio)
    block = max(1, int(block_s * sample_rate))
    count = x.shape[-1] // block
    if count == 0:
        return np.array([10.0 * np.log10(max(float(np.mean(x**2)), 1e-20))])
    blocks = x[:, : count * block].reshape(x.shape[0], count, block)
    return 10.0 * np.log10(np.maximum((blocks**2).mean(axis=(0, 2)), 1e-20))


def loud_level_dbfs(levels_db: np.ndarray, level_percentile: float) -> float:
    """The loud level :class:`Dynamics` sets its threshold from: the ``level_percentile`` of
    the 100 ms levels (:func:`block_levels_dbfs`) within 40 dB of the loudest."""
    active = levels_db[levels_db > levels_db.max() - 40.0]
    return float(percentile(active, level_percentile))


def compress(
    audio: np.ndarray,
    sample_rate: int,
    *,
    threshold_db: float,
    ratio: float = 1.5,
    attack_ms: float = 30.0,
    release_ms: float = 250.0,
) -> np.ndarray:
    """Feed-forward compression of ``(channels, samples)`` or 1-D (mono) audio, no make-up
    gain; returns ``(channels, samples)``.  ``threshold_db`` is absolute (dBFS, -120..20);
    ``ratio``, ``attack_ms`` and ``release_ms`` follow :class:`Dynamics`'s rules.
    :class:`Dynamics` sets the threshold relative to the clip's own loud level."""
    _check_compressor(ratio, attack_ms, release_ms)
    if not -120.0 <= threshold_db <= 20.0:
        raise ParameterError("compress: threshold_db must be between -120 and 20 dBFS")
    import pedalboard  # where it is used: a clip the stage leaves alone does not load it

    plugin = pedalboard.Compressor(threshold_db=threshold_db, ratio=ratio, attack_ms=attack_ms,
                                   release_ms=release_ms)
    return plugin(as_channels(audio), sample_rate)


def _check_compressor(ratio: float, attack_ms: float, release_ms: float) -> None:
    """The compressor's parameter rules, shared by :func:`compress` and :class:`Dynamics`."""
    if not 1.0 <= ratio <= 20.0:
        raise ParameterError("dynamics.ratio must be between 1 and 20")
    if not 0.0 < attack_ms <= 1000.0 or not 0.0 < release_ms <= 5000.0:
        raise ParameterError("dynamics.attack_ms must be in (0, 1000] and release_ms in (0, 5000]")


@dataclass(frozen=True)
class Dynamics:
    """Compress only the loud passages: the threshold sits ``threshold_offset_db`` relative
    to the clip's own loud level (the ``level_percentile`` of its 100 ms RMS levels)."""

    name: ClassVar[str] = "dynamics"
    ratio: float = 1.5
    threshold_offset_db: float = -3.0
    level_percentile: float = 90.0
    attack_ms: float = 30.0
    release_ms: float = 250.0
    #: When true, compress only clips whose loudness range exceeds ``min_range_lu``.
    adaptive: bool = False
    min_range_lu: float = 8.0

    def __post_init__(self) -> None:
        _check_compressor(self.ratio, self.attack_ms, self.release_ms)
        if not -40.0 <= self.threshold_offset_db <= 20.0:
            raise ParameterError("dynamics.threshold_offset_db must be between -40 and 20")
        if not 0.0 < self.level_percentile <= 100.0:
            raise ParameterError("dynamics.level_percentile must be in (0, 100]")

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        _, declined = decision(self, context, sample_rate)
        if declined is not None:
            return audio, sample_rate, declined
        levels = block_levels_dbfs(audio, sample_rate)
        # The loud level of the whole input: a segment of a long file (genrestore.stream) is
        # given the whole file's levels, so a quiet passage is not compressed against its own.
        whole = levels if context.input_levels_db is None else context.input_levels_db
        loud_db = loud_level_dbfs(whole, self.level_percentile)
        if loud_db < -90.0:
            return audio, sample_rate, skipped(self.name, "silent")
        threshold = loud_db + self.threshold_offset_db
        out = compress(audio, sample_rate, threshold_db=threshold, ratio=self.ratio,
                       attack_ms=self.attack_ms, release_ms=self.release_ms)
        reduction = levels - block_levels_dbfs(out, sample_rate)
        peak_gr = float(np.max(reduction, initial=0.0))
        summary = f"dynamics {self.ratio:g}:1 above {threshold:.1f} dBFS, max GR {peak_gr:.1f} dB"
        details = {"threshold_dbfs": round(threshold, 2), "ratio": self.ratio,
                   "max_gain_reduction_db": round(peak_gr, 2),
                   "mean_gain_reduction_db": round(float(np.mean(reduction)), 2)}
        return out, sample_rate, StageReport(self.name, True, summary, details)
