"""Declipping: rebuild the peaks that clipping flattened.

Each clipped run (see :func:`genrestore.analysis.clipped_runs`) is re-estimated by
least-squares autoregressive interpolation (Janssen, Veldhuis and Vries 1986): an AR model is
fitted to the unclipped samples around the run, and the missing samples are those that
minimise the model's prediction error over the window; a second pass refits the model with
that estimate in place and solves again.  The result is made *consistent* with
the clipping: a rebuilt sample can only be further from zero than the clip level, on the
same side.  Rebuilt peaks rise above the old clip level (and above full scale); the
pipeline's limiter and loudness stage bring them back under the ceiling.

Float overs (samples above full scale that were never clipped) are left alone here: they
are ordinary float samples that later gain and the limiter bring down, never a clipper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genrestore.analysis import CLIP_FLATNESS, clipped_mask, flat_runs
from genrestore.errors import ParameterError
from genrestore.io import as_channels
from genrestore.stages.base import Context, StageReport, decision, skipped


def _prediction_error_filter(window: np.ndarray, known: np.ndarray, order: int
                             ) -> np.ndarray | None:
    """``pef`` with ``e[i] = sum_k pef[k] * x[i + k]`` (``pef[-1] = 1``): an AR model fitted
    by least squares (covariance method) on the stretches where every sample is known."""
    frames = np.lib.stride_tricks.sliding_window_view(window, order + 1)
    usable = np.lib.stride_tricks.sliding_window_view(known, order + 1).all(axis=1)
    data = frames[usable]
    if data.shape[0] < 2 * order:
        return None
    past, present = data[:, :-1], data[:, -1]
    gram = past.T @ past
    gram[np.diag_indices(order)] += 1e-9 * max(float(np.trace(gram)) / order, 1e-30)
    try:
        coefficients = np.linalg.solve(gram, -(past.T @ present))
    except np.linalg.LinAlgError:
        return None
    return np.append(coefficients, 1.0)


def _interpolate(window: np.ndarray, unknown: np.ndarray, pef: np.ndarray) -> np.ndarray:
    """Least-squares AR interpolation (Janssen et al. 1986) of ``window[unknown]``: the
    values that minimise the prediction error over the window, the other samples fixed.
    With ``B = A^T A`` (``A`` the prediction-error matrix), ``B[i, j]`` is the filter's
    autocorrelation at ``|i - j|`` away from the window's edges."""
    order = pef.size - 1
    zeroed = window.copy()
    zeroed[unknown] = 0.0
    residual = np.correlate(zeroed, pef, "valid")  # e with the gaps at zero
    gradient = np.convolve(residual, pef)[unknown]
    autocorrelation = np.correlate(pef, pef, "full")[order:]
    # The unknown positions are sorted and distinct, so two that are more than ``order``
    # apart in index are more than ``order`` apart in time: the matrix is banded, and a
    # banded Cholesky solve costs O(u * order^2) instead of O(u^3).
    u = unknown.size
    band = min(order, u - 1)
    upper = np.zeros((band + 1, u))  # LAPACK's upper banded storage
    for k in range(band + 1):
        lag = unknown[k:] - unknown[: u - k]
        upper[band - k, k:] = np.where(lag <= order, autocorrelation[np.minimum(lag, order)], 0.0)
    from scipy.linalg import solveh_banded  # only for clips with clipped runs: a slow import

    return -solveh_banded(upper, gradient)


def _consistent_solve(window: np.ndarray, unknown: np.ndarray, pef: np.ndarray) -> np.ndarray:
    """Interpolate ``window[unknown]`` consistently with the clipping: samples whose estimate
    falls inside the clip level are pinned to it and the rest solved again (twice at most)."""
    level = window[unknown]
    sign = np.sign(level)
    free = np.ones(unknown.size, bool)
    estimate = level.copy()
    for _ in range(3):
        trial = window.copy()
        trial[unknown[~free]] = level[~free]
        estimate[free] = _interpolate(trial, unknown[free], pef)
        estimate[~free] = level[~free]
        inconsistent = free & (sign * estimate < np.abs(level))
        if not inconsistent.any():
            break
        free &= ~inconsistent
        if not free.any():
            break
    return sign * np.maximum(sign * estimate, np.abs(level))


def _declip_block(window: np.ndarray, clipped: np.ndarray, unknown: np.ndarray,
                  order: int, passes: int = 2) -> np.ndarray | None:
    """Rebuild ``window[unknown]``.  The first pass fits the AR model to the unclipped
    stretches only; each later pass refits it with the previous estimate in place of the
    flat tops being rebuilt (the peaks' own shape then informs the model) and solves again:
    0.5-2 dB more SNR on real music.  Clipped samples that are not rebuilt in this block
    (runs too long, or handled by a neighbouring block) stay unknown in every pass: their
    flat tops are not the signal."""
    rebuilt = np.zeros_like(clipped)
    rebuilt[unknown] = True
    current, estimate = window, None
    for step in range(passes):
        known = ~clipped if step == 0 else ~clipped | rebuilt
        pef = _prediction_error_filter(current, known, order)
        if pef is None:
            return estimate
        estimate = _consistent_solve(window, unknown, pef)
        current = window.copy()
        current[unknown] = estimate
    return estimate


def declip(
    audio: np.ndarray,
    *,
    order: int = 32,
    min_run: int = 3,
    tolerance: float = CLIP_FLATNESS,
    max_run: int = 256,
    max_gain_db: float = 12.0,
    block: int = 2048,
) -> tuple[np.ndarray, int]:
    """Rebuild clipped runs of ``(channels, samples)`` or 1-D (mono) audio; returns
    ``(audio as (channels, samples), runs fixed)``.  The parameters follow :class:`Declip`'s
    rules.

    A run is a flat top of :func:`genrestore.analysis.clipped_mask` (``tolerance`` is its
    flatness).  The clip is processed in half-overlapping blocks of ``block`` samples:
    an AR model of ``order`` is fitted to the block's unclipped stretches, and every run
    whose middle lies in the block's central half is interpolated jointly (then refitted
    and solved once more, see :func:`_declip_block`).  Runs longer than
    ``max_run``, too near the ends of the clip, or whose estimate rises more than
    ``max_gain_db`` above the clip level (the model does not fit there) keep their flat tops.
    """
    Declip(order=order, min_run=min_run, max_run=max_run, max_gain_db=max_gain_db, block=block)
    x = as_channels(audio).astype(np.float64)
    peak = float(np.max(np.abs(x), initial=0.0))
    if peak == 0.0:
        return x.astype(np.float32), 0
    limit = peak * 10.0 ** (max_gain_db / 20.0)
    hop = block // 2
    fixed = 0
    for channel in x:
        clipped = clipped_mask(channel, min_run=min_run, tolerance=tolerance)
        runs = [(s, e) for s, e in flat_runs(clipped, min_run)
                if e - s <= max_run and s >= order and channel.size - e >= order]
        if not runs:
            continue
        # Only the blocks that hold a run's middle are visited (runs are sorted, so each
        # block's runs are one contiguous slice): linear in the clip's length.
        blocks = np.array([(s + e) // 2 for s, e in runs]) // hop
        firsts = np.flatnonzero(np.diff(blocks, prepend=-1))
        for first, last in zip(firsts, [*firsts[1:], len(runs)], strict=True):
            centre = int(blocks[first]) * hop
            chosen = runs[first:last]
            lo = max(0, min(chosen[0][0], centre) - hop // 2 - order)
            hi = min(channel.size, max(chosen[-1][1], centre + hop) + hop // 2 + order)
            unknown = np.concatenate([np.arange(s, e) for s, e in chosen]) - lo
            window = channel[lo:hi]
            try:
                rebuilt = _declip_block(window, clipped[lo:hi], unknown, order)
            except np.linalg.LinAlgError:  # scipy.linalg raises numpy's
                continue
            if rebuilt is None or not np.all(np.isfinite(rebuilt)):
                continue
            if np.max(np.abs(rebuilt)) > limit:
                continue
            window[unknown] = rebuilt
            fixed += len(chosen)
    return x.astype(np.float32), fixed


@dataclass(frozen=True)
class Declip:
    """Stage form of :func:`declip`; acts only when the analysis found clipped runs."""

    name: ClassVar[str] = "declip"
    order: int = 32
    min_run: int = 3
    max_run: int = 256
    max_gain_db: float = 12.0
    block: int = 2048

    def __post_init__(self) -> None:
        if not 4 <= self.order <= 64:
            raise ParameterError("declip.order must be between 4 and 64")
        if not 2 <= self.min_run <= self.max_run <= 4096:
            raise ParameterError("declip needs 2 <= min_run <= max_run <= 4096")
        if not 0.0 < self.max_gain_db <= 40.0:
            raise ParameterError("declip.max_gain_db must be above 0 and at most 40")
        if not 8 * self.order <= self.block <= 65536 or self.block % 2:
            raise ParameterError("declip.block must be even, at least 8 x order and at most 65536")

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        _, declined = decision(self, context, sample_rate)
        if declined is not None:
            return audio, sample_rate, declined
        out, fixed = declip(audio, order=self.order, min_run=self.min_run, max_run=self.max_run,
                            max_gain_db=self.max_gain_db, block=self.block)
        if fixed == 0:
            return audio, sample_rate, skipped(self.name, "clipped runs too long to rebuild")
        gain = float(np.max(np.abs(out)) / max(float(np.max(np.abs(audio))), 1e-30))
        return out, sample_rate, StageReport(
            self.name, True, f"declip {fixed} runs",
            {"runs_fixed": fixed, "runs_found": context.analysis.clipped_runs,
             "peak_gain_db": 20.0 * np.log10(gain)})
