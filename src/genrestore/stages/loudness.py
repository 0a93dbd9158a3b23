"""Loudness normalisation to a BS.1770 target with a true-peak brick-wall limiter.

When the gain to the target keeps the input's true peak under ``ceiling_dbtp`` it is applied as a
plain gain and the limiter does not run.  Otherwise pedalboard's look-ahead ``BrickwallLimiter``
(true-peak side-chain) holds the ceiling, and the gain fed to it is chosen from a model of that
limiter (:class:`_LimiterModel`: instant attack over the look-ahead, gain held while the envelope
is over the ceiling, exponential release only below it), which predicts the loudness of its output
for any gain without running it: within a few tenths of an LU on music and noise, up to a few LU
on sparse transients.  Each real pass corrects the model by what it measured; the gain stays inside
the bracket of the tries made so far (a try louder than the target bounds it from above, one where
more gain still paid bounds it from below), never beyond ``max_limiting_db`` of drive (or
:data:`_MAX_DRIVE_DB` without a cap), and there are at most :data:`_MAX_PASSES` passes; when the
corrected model promises no try closer than the best so far (more gain stopped buying loudness),
it stops.  The last small error is removed by a plain gain: down always (it only lowers the
peaks), up as far as the limited signal's true-peak headroom allows.  A target the limiter cannot
reach ends at the closest try, and the result says why (the cap, or a saturated limiter).  The
ceiling is held exactly as measured by :func:`genrestore.analysis.true_peak`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genrestore.analysis import (
    block_true_peaks,
    gated_lufs,
    gating_blocks,
    k_weighted_energy,
    true_peak,
)
from genrestore.errors import ParameterError
from genrestore.io import as_channels
from genrestore.stages.base import Context, StageReport, skipped

logger = logging.getLogger(__name__)

_LIMITER_MARGIN_DB = 0.1  # the limiter's own ceiling sits this far under ceiling_dbtp


def limit_true_peak(
    audio: np.ndarray,
    sample_rate: int,
    *,
    ceiling_dbtp: float = -1.0,
    release_ms: float = 80.0,
    lookahead_ms: float = 5.0,
) -> np.ndarray:
    """Hold ``(channels, samples)`` or 1-D (mono) audio at or below ``ceiling_dbtp`` (4x
    oversampled peak); returns ``(channels, samples)``.  ``ceiling_dbtp`` and ``release_ms``
    follow :class:`Loudness`'s rules; ``lookahead_ms`` is 0.1-50 ms."""
    Loudness(ceiling_dbtp=ceiling_dbtp, release_ms=release_ms)
    if not 0.1 <= lookahead_ms <= 50.0:
        raise ParameterError("loudness: lookahead_ms must be between 0.1 and 50")
    return _limit(audio, sample_rate, ceiling_dbtp, release_ms, lookahead_ms)[0]


def _limit(audio: np.ndarray, sample_rate: int, ceiling_dbtp: float, release_ms: float,
           lookahead_ms: float = 5.0, *, peaks: np.ndarray | None = None
           ) -> tuple[np.ndarray, float]:
    """:func:`limit_true_peak` without the checks, returning the output's linear true peak;
    ``peaks`` as for :func:`_brickwall`."""
    out = _brickwall(as_channels(audio), sample_rate, ceiling_dbtp, release_ms, lookahead_ms,
                     peaks=peaks)
    return _trim_to_ceiling(out, ceiling_dbtp)


def _brickwall(x: np.ndarray, sample_rate: int, ceiling_dbtp: float, release_ms: float,
               lookahead_ms: float, *, peaks: np.ndarray | None = None) -> np.ndarray:
    """The limiter on ``(channels, samples)`` float32 audio, its ceiling
    :data:`_LIMITER_MARGIN_DB` under ``ceiling_dbtp``.

    The gain is :class:`_LimiterModel`'s, block by block (:func:`_block_gains` of the blocks'
    true peaks held over the look-ahead), linked over the channels, and drawn sample by sample
    as straight lines between its values at the block edges, each the smaller of the two
    blocks' gains: no sample gets more gain than its block allows, and the gain has no steps.
    Audio that never reaches the limit comes back unchanged (a copy).  ``peaks`` are ``x``'s
    :func:`~genrestore.analysis.block_true_peaks` for the limiter's blocks when they are known
    (the loudness stage's model has its input's; a gain scales them).
    """
    m = _block_size(sample_rate)
    limit = 10.0 ** ((ceiling_dbtp - _LIMITER_MARGIN_DB) / 20.0)
    if peaks is None:
        peaks = block_true_peaks(x, m, above=limit)
    held = _held(peaks, _hold_blocks(lookahead_ms, sample_rate, m))
    gains = _block_gains(held, limit, _log_release(release_ms, sample_rate, m))
    if gains.min() == 1.0:
        return x.copy()
    return x * _sample_gains(gains, m)[:x.shape[-1]]


def _trim_to_ceiling(out: np.ndarray, ceiling_dbtp: float) -> tuple[np.ndarray, float]:
    """``(out, its linear true peak)``, ``out`` scaled down (in place) just under the ceiling
    when its true peak is over: the safety net for what the limiter's side-chain missed."""
    ceiling = 10.0 ** (ceiling_dbtp / 20.0)
    peak = true_peak(out)
    if peak > ceiling:
        logger.debug("limiter: static trim of %.4f dB", 20.0 * np.log10(peak / ceiling))
        scale = ceiling / peak * 0.9999
        out *= np.float32(scale)
        peak *= scale
    return out, peak


#: The limiter's gain is computed per block of about this long.
_BLOCK_S = 0.001


def _block_size(sample_rate: int) -> int:
    return max(1, round(sample_rate * _BLOCK_S))


def _hold_blocks(lookahead_ms: float, sample_rate: int, block: int) -> int:
    return int(np.ceil(lookahead_ms * 1e-3 * sample_rate / block))


def _log_release(release_ms: float, sample_rate: int, block: int) -> float:
    """Natural log of the factor by which the gain's depth (``1 - gain``) shrinks per block."""
    return -block / (release_ms * 1e-3 * sample_rate)


def _held(peaks: np.ndarray, hold: int) -> np.ndarray:
    """Each block's peak held over the look-ahead: the largest of it and the next ``hold``."""
    held = peaks.copy()
    span = 1  # held[b] covers blocks b .. b + span - 1; doubled each step
    while span < hold + 1:
        step = min(span, hold + 1 - span)
        held[:-step] = np.maximum(held[:-step], held[step:])
        span += step
    return held


#: Blocks whose gains :func:`_block_gain_chunks` computes at once (about 65 s of 1 ms blocks):
#: a clip up to that long is one chunk, a long file's model needs a chunk's temporaries only.
_GAIN_CHUNK = 1 << 16


def _block_gains(held: np.ndarray, limit: float, log_release: float) -> np.ndarray:
    """The limiter's gain per block for look-ahead held block peaks ``held``.

    Where the held peak is over ``limit`` the gain drops at once to ``limit / held`` (or stays
    lower); it does not recover while the held peak stays over, and recovers only under it,
    its depth ``1 - gain`` shrinking by ``exp(log_release)`` per block.  The depth is then a
    running maximum in log space: a few vectorised passes, no loop over the blocks.  Blocks
    never over the limit, and after them the ones the release has brought back, get exactly 1.
    """
    return np.concatenate([gains for _, gains in
                           _block_gain_chunks(held, limit, log_release)])


def _block_gain_chunks(held: np.ndarray, limit: float, log_release: float, scale: float = 1.0
                       ) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`_block_gains` of ``scale * held`` a chunk of :data:`_GAIN_CHUNK` blocks at a time,
    as ``(first block, float64 gains)``: the release's running sum and the depth's running
    maximum are carried from chunk to chunk, so the gains are those of one pass (the first
    chunk's exactly; later ones to the rounding of the running sum's association).  ``held``
    may be float32 (a long file's model keeps it so); each chunk is computed in float64."""
    released_before, deepest = 0.0, -np.inf
    for first in range(0, max(held.size, 1), _GAIN_CHUNK):
        part = np.asarray(held[first:first + _GAIN_CHUNK], dtype=np.float64)
        if scale != 1.0:
            part = scale * part
        over = part > limit
        depth = np.full(part.shape, -np.inf)
        depth[over] = np.log(np.maximum(1.0 - limit / part[over], 1e-300))
        released = np.cumsum(np.where(over, 0.0, log_release))
        if first:
            released += released_before
        running = np.maximum.accumulate(depth - released)
        if first:
            np.maximum(running, deepest, out=running)
        if part.size:
            released_before, deepest = float(released[-1]), float(running[-1])
        yield first, 1.0 - np.exp(released + running)


def _sample_gains(gains: np.ndarray, block: int) -> np.ndarray:
    """Per-sample gain (float32, ``gains.size * block`` samples): straight lines between the
    block edges, where the gain is the smaller of the two blocks' (the first and last edges
    take their block's), so every sample's gain is at most its block's."""
    edges = np.concatenate([gains[:1], np.minimum(gains[:-1], gains[1:]), gains[-1:]])
    edges = edges.astype(np.float32)
    ramp = np.arange(block, dtype=np.float32) / np.float32(block)
    lines = (edges[1:] - edges[:-1])[:, np.newaxis] * ramp
    lines += edges[:-1, np.newaxis]
    return lines.ravel()


_MAX_PASSES = 3
#: Without a ``max_limiting_db`` cap, no pass drives the input's true peak more than this far over
#: the ceiling.  pedalboard's limiter releases only while its envelope is under the ceiling, so the
#: harder it is driven the more of the clip it holds at the gain of the loudest peak: its output
#: is loudest at about 4 dB of drive on dense noise and 13 dB on the synthetic song, then gets
#: quieter, towards the input scaled statically to the ceiling.  24 dB of peak reduction is past
#: any mastering use even for a clip whose rare transients stand far above the rest.
_MAX_DRIVE_DB = 24.0
#: LU gained per dB of gain below which more gain no longer buys loudness (the limiter saturated).
_SATURATED_SLOPE = 0.1
#: A pass this much louder than the target is brought down by a plain gain, not another pass.
_TRIM_DOWN_LU = 0.5
#: The passes aim this much over the target: a miss upwards costs a plain gain, downwards a pass.
_AIM_LU = 0.1
#: How far past the cap :func:`_finish` asks the model whether more gain would have come closer.
_PAST_CAP_DB = (1.0, 2.0, 4.0, 8.0)


class _LimiterModel:
    """Predicted integrated loudness of :func:`limit_true_peak`'s output for any input gain.

    The clip is cut into the limiter's ~1 ms blocks: each block's K-weighted energy and true
    peak (:func:`~genrestore.analysis.block_true_peaks`, held over the look-ahead).  A gain
    scales the peaks, :func:`_block_gains` gives the limiter's gain per block from them, as the
    limiter itself does, and the output's loudness is BS.1770's gating applied to the block
    energies times the squared gain: a few vectorised passes over the blocks, no limiter run.
    It reads a little loud, as it takes each block's gain for all its samples where the limiter
    ramps between neighbouring blocks' gains, taking the smaller at each edge.
    """

    def __init__(self, audio: np.ndarray, sample_rate: int, *, ceiling_dbtp: float,
                 release_ms: float, lookahead_ms: float = 5.0,
                 cumulative: np.ndarray | None = None, max_gain_db: float | None = None
                 ) -> None:
        x = np.atleast_2d(audio)
        m = _block_size(sample_rate)
        n = x.shape[-1] // m * m
        if cumulative is None:  # the audio's k_weighted_energy, unless the caller has it
            cumulative = k_weighted_energy(np.asarray(x, dtype=np.float64), sample_rate)
        edges = cumulative[:, :n + 1:m]
        energy = np.diff(edges, axis=-1).sum(axis=0)
        # With ``max_gain_db``, a block whose true peak cannot reach the limiter at that gain
        # keeps its sample peak (block_true_peaks' ``above``): it gets gain 1 either way.
        limit = 10.0 ** ((ceiling_dbtp - _LIMITER_MARGIN_DB) / 20.0)
        above = 0.0 if max_gain_db is None else limit * 10.0 ** (-max_gain_db / 20.0)
        self._set(energy, block_true_peaks(x, m, above=above), sample_rate,
                  ceiling_dbtp=ceiling_dbtp, release_ms=release_ms, lookahead_ms=lookahead_ms)

    @classmethod
    def from_blocks(cls, energy: np.ndarray, peaks: np.ndarray, sample_rate: int, *,
                    ceiling_dbtp: float, release_ms: float, lookahead_ms: float = 5.0
                    ) -> _LimiterModel:
        """The model from what it reads of the audio, gathered elsewhere (a long file read
        in pieces): the K-weighted energy of each whole :func:`_block_size` block, summed
        over the channels, and each block's true peak (:func:`block_true_peaks`), kept in
        the dtype given: a long file's are float32 (3.6 million blocks an hour at 1 ms,
        14 MB each; 2^-24 of relative rounding moves a predicted loudness by under 1e-6 LU
        and a held peak by under 1e-6 dB)."""
        model = cls.__new__(cls)
        model._set(np.asarray(energy), np.asarray(peaks), sample_rate,
                   ceiling_dbtp=ceiling_dbtp, release_ms=release_ms, lookahead_ms=lookahead_ms)
        return model

    def _set(self, energy: np.ndarray, peaks: np.ndarray, sample_rate: int, *,
             ceiling_dbtp: float, release_ms: float, lookahead_ms: float) -> None:
        self.m = _block_size(sample_rate)
        self.energy = energy
        #: The input's block true peaks as given (the limiter reads them, scaled by its gain).
        self.peaks = peaks
        self.held = _held(peaks[:energy.size], _hold_blocks(lookahead_ms, sample_rate, self.m))
        self.limit = 10.0 ** ((ceiling_dbtp - _LIMITER_MARGIN_DB) / 20.0)
        self.log_release = _log_release(release_ms, sample_rate, self.m)
        # 400 ms gating blocks every 100 ms, in whole 1 ms blocks (at least one block).
        self.block = max(1, min(round(0.4 * sample_rate / self.m), self.energy.size))
        step = max(1, round(0.1 * sample_rate / self.m))
        self.starts = np.arange(0, self.energy.size - self.block + 1, step)

    def block_energies(self, gain_db: float) -> np.ndarray:
        """The predicted output's 400 ms gating-block energies (every 100 ms), as
        :func:`~genrestore.analysis.gating_blocks` would read them: :meth:`lufs` gates them;
        album mode gates those of every track together."""
        scale = 10.0 ** (gain_db / 20.0)
        # The running sum of the gained energy, read at the gating blocks' edges only, a
        # chunk of blocks at a time (no whole-file temporaries on a long file).
        edges = np.concatenate([self.starts, self.starts + self.block])
        order = np.argsort(edges, kind="stable")
        at = np.zeros(edges.size)
        sorted_edges = edges[order]
        total = 0.0
        for first, gain in _block_gain_chunks(self.held, self.limit, self.log_release, scale):
            part = np.asarray(self.energy[first:first + gain.size], dtype=np.float64)
            cumulative = np.cumsum(part * (scale * gain) ** 2)
            if first:
                cumulative += total
            lo, hi = np.searchsorted(sorted_edges, [first + 1, first + gain.size + 1])
            at[order[lo:hi]] = cumulative[sorted_edges[lo:hi] - first - 1]
            if cumulative.size:
                total = float(cumulative[-1])
        ends = at[self.starts.size:]
        return (ends - at[:self.starts.size]) / (self.block * self.m)

    def lufs(self, gain_db: float) -> float:
        energy = self.block_energies(gain_db)
        loud = -0.691 + 10.0 * np.log10(np.maximum(energy, 1e-30))
        kept = energy[loud > -70.0]
        if kept.size == 0:
            return float("-inf")
        gate = -0.691 + 10.0 * np.log10(kept.mean()) - 10.0
        return float(-0.691 + 10.0 * np.log10(energy[(loud > -70.0) & (loud > gate)].mean()))


#: The limiter model under a public name: album mode (:mod:`genrestore.album`) predicts a
#: whole album's loudness for one gain from each track's model.
LimiterModel = _LimiterModel


def solve_gain(predict: Callable[[float], float], target: float, low: float, high: float
               ) -> tuple[float, float]:
    """The smallest gain in ``[low, high]`` that ``predict`` puts at ``target`` (or the one
    where it is loudest): the solver the loudness stage aims its limiter model with, for album
    mode's model of the whole album."""
    return _solve(predict, target, low, high)


def limiter_model(audio: np.ndarray, sample_rate: int, *, ceiling_dbtp: float = -1.0,
                  release_ms: float = 80.0) -> _LimiterModel:
    """The model of :func:`limit_true_peak` for ``(channels, samples)`` or 1-D audio: its
    ``lufs(gain_db)`` and ``block_energies(gain_db)`` predict the limited output's loudness
    for any gain without running the limiter (a little loud: see :class:`_LimiterModel`)."""
    Loudness(ceiling_dbtp=ceiling_dbtp, release_ms=release_ms)
    return _LimiterModel(as_channels(audio), sample_rate, ceiling_dbtp=ceiling_dbtp,
                         release_ms=release_ms)


@dataclass(frozen=True)
class LoudnessResult:
    """What :func:`normalize_loudness` did, in full (the stage reports it)."""

    audio: np.ndarray
    lufs: float
    gain_db: float  # total static gain: before the limiter plus the final plain correction
    limiter_passes: int
    reached: bool
    #: Why the target was not reached: "" (it was), "cap" (``max_limiting_db``, or
    #: :data:`_MAX_DRIVE_DB` without one, stopped a gain that would still have bought loudness)
    #: or "limiter" (more gain no longer made it louder).
    limited_by: str
    input_lufs: float  # as given, or as measured here
    true_peak_dbtp: float  # of ``audio``


def _plain_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return np.asarray(audio, dtype=np.float32) * np.float32(10.0 ** (gain_db / 20.0))


def _corrected(model: _LimiterModel, known: list[tuple[float, float]]) -> Callable[[float], float]:
    """The model's prediction corrected by the ``known`` ``(gain, measured LUFS)`` points: their
    errors, interpolated linearly between them (exact at every measured point) and, past the
    largest, extrapolated along the last two (so the corrected slope there is the measured one)."""
    known = sorted(known)
    gains = [g for g, _ in known]
    errors = [level - model.lufs(g) for g, level in known]
    trend = (errors[-1] - errors[-2]) / (gains[-1] - gains[-2]) if len(known) > 1 and (
        gains[-1] - gains[-2] > 0.05) else 0.0

    def predict(gain_db: float) -> float:
        error = float(np.interp(gain_db, gains, errors)) + trend * max(0.0, gain_db - gains[-1])
        return model.lufs(gain_db) + error

    return predict


def _solve(predict: Callable[[float], float], target: float, low: float, high: float
           ) -> tuple[float, float]:
    """The smallest gain in ``[low, high]`` that ``predict`` puts at ``target``, or, when it puts
    none there, the gain where it is loudest.  Returns ``(gain_db, predicted_lufs)``.

    The whole range is scanned in 1 dB steps: loudness against gain is not unimodal (a clip of
    sparse transients first loses loudness as they are limited, then gains it again once its
    quieter body dominates the gated blocks).
    """
    grid = np.linspace(low, high, max(2, int(np.ceil(high - low)) + 1))
    levels: list[float] = []
    for k, g in enumerate(grid):
        levels.append(predict(float(g)))
        if levels[-1] < target:
            continue
        if k == 0:
            return float(g), levels[0]
        a, b = float(grid[k - 1]), float(g)
        for _ in range(12):  # bisection inside the step that crosses
            mid = 0.5 * (a + b)
            a, b = (mid, b) if predict(mid) < target else (a, mid)
        return b, predict(b)
    k = int(np.argmax(levels))
    a, b = float(grid[max(k - 1, 0)]), float(grid[min(k + 1, grid.size - 1)])
    ratio = 0.5 * (np.sqrt(5.0) - 1.0)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    at_c, at_d = predict(c), predict(d)
    for _ in range(10):  # golden section around the loudest step: one new point per step
        if at_c >= at_d:
            b, d, at_d = d, c, at_c
            c = b - ratio * (b - a)
            at_c = predict(c)
        else:
            a, c, at_c = c, d, at_d
            d = a + ratio * (b - a)
            at_d = predict(d)
    g = 0.5 * (a + b)
    level = predict(g)
    return (g, level) if level > levels[k] else (float(grid[k]), levels[k])


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
    rather than squashed.  At most three limiter passes; a target out of reach ends at the
    closest try (:func:`loudness_to_target` says why).
    """
    result = loudness_to_target(audio, sample_rate, target_lufs=target_lufs,
                                ceiling_dbtp=ceiling_dbtp, release_ms=release_ms,
                                tolerance_lu=tolerance_lu, input_lufs=input_lufs,
                                max_limiting_db=max_limiting_db)
    return result.audio, result.lufs, result.gain_db


def loudness_to_target(
    audio: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    release_ms: float = 80.0,
    tolerance_lu: float = 0.2,
    input_lufs: float | None = None,
    max_limiting_db: float | None = None,
) -> LoudnessResult:
    """:func:`normalize_loudness` with the whole story: passes, target reached, and if not, why.

    ``audio`` is ``(channels, samples)`` or 1-D (mono); the result is ``(channels, samples)``.
    The parameters follow :class:`Loudness`'s rules (``max_limiting_db=None`` is no cap);
    ``tolerance_lu`` is 0.01-3 LU."""
    Loudness(target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, release_ms=release_ms,
             max_limiting_db=0.0 if max_limiting_db is None else max_limiting_db)
    if not 0.01 <= tolerance_lu <= 3.0:
        raise ParameterError("loudness: tolerance_lu must be between 0.01 and 3")
    x = as_channels(audio)
    # The loudness of a gain-scaled clip is read from the same gating blocks (gated_lufs):
    # each level below is measured once.
    cumulative = k_weighted_energy(x.astype(np.float64), sample_rate)  # for blocks and model
    blocks = gating_blocks(x, sample_rate, cumulative=cumulative) if input_lufs is None else None
    start = gated_lufs(blocks) if blocks is not None else input_lufs
    if not np.isfinite(start):
        out, out_peak = _limit(x, sample_rate, ceiling_dbtp, release_ms)
        return LoudnessResult(out, float("-inf"), 0.0, 1, False, "", start, _dbtp(out_peak))
    peak = true_peak(x)
    free = ceiling_dbtp - 20.0 * np.log10(peak)  # the most gain that needs no limiting
    wanted = target_lufs - start
    if wanted <= free:  # a plain gain reaches the target with the peaks under the ceiling
        out = _plain_gain(x, wanted)
        if blocks is None:
            blocks = gating_blocks(x, sample_rate, cumulative=cumulative)
        return LoudnessResult(out, gated_lufs(blocks * 10.0 ** (wanted / 10.0)), wanted, 0, True,
                              "", start, _dbtp(peak) + wanted)

    cap = free + (max_limiting_db if max_limiting_db is not None else _MAX_DRIVE_DB)
    # The model is read at gains up to the cap, and past it by _finish (_PAST_CAP_DB).
    model = _LimiterModel(x, sample_rate, ceiling_dbtp=ceiling_dbtp, release_ms=release_ms,
                          cumulative=cumulative, max_gain_db=cap + max(_PAST_CAP_DB))
    def measure(gain_db: float) -> _Try:
        limited, limited_peak = _limit(_plain_gain(x, gain_db), sample_rate, ceiling_dbtp,
                                       release_ms, peaks=model.peaks * 10.0 ** (gain_db / 20.0))
        limited_blocks = gating_blocks(limited, sample_rate)
        return _Try(gain_db, gated_lufs(limited_blocks), limited, limited_blocks, limited_peak)

    tries, points = bracket_gain(model, start, free, cap, target_lufs, tolerance_lu, measure)
    return _finish(tries, target_lufs, tolerance_lu, ceiling_dbtp, model=model, points=points,
                   cap=cap, input_lufs=start)


def bracket_gain(model: _LimiterModel, start: float, free: float, cap: float, target_lufs: float,
                 tolerance_lu: float, measure: Callable[[float], _Try]
                 ) -> tuple[list[_Try], list[tuple[float, float]]]:
    """The loudness stage's search for the limiter's gain: the model (corrected by what was
    measured) proposes a gain, ``measure`` runs the limiter at it and meters the result, and the
    bracket of gains narrows (:data:`_MAX_PASSES` at most).  Returns the tries and the measured
    ``(gain, LUFS)`` points; :func:`_pick` then chooses.  ``measure`` runs on the audio in memory,
    or on a long file a chunk at a time (:mod:`genrestore.stream`)."""
    # Real points: (gain, measured LUFS).  The free gain is one without a limiter run.
    points: list[tuple[float, float]] = [(free, start + free)]
    tries: list[_Try] = []
    low, high = free, cap  # the bracket: later gains stay strictly inside it
    rising = (free, start + free)  # the last try below the target where more gain still paid
    gain_db, _ = _solve(_corrected(model, points), target_lufs + _AIM_LU, low, high)
    for _ in range(_MAX_PASSES):
        tried = measure(gain_db)
        level = tried.lufs
        tries.append(tried)
        points.append((gain_db, level))
        if target_lufs - tolerance_lu <= level <= target_lufs + _TRIM_DOWN_LU:
            break
        if level > target_lufs:
            high = min(high, gain_db)  # too loud: the target lies at a smaller gain
        elif gain_db > rising[0] and (level - rising[1]) / (gain_db - rising[0]) > _SATURATED_SLOPE:
            rising = (gain_db, level)
            low = max(low, gain_db)  # more gain still paid: the target lies at a larger one
        # Else more gain stopped paying here (measured, never assumed): the corrected model, whose
        # slope past the last try is now the measured one, says whether anything closer is left.
        if high - low < 0.05 or len(tries) == _MAX_PASSES:
            break
        gain_db, predicted = _solve(_corrected(model, points), target_lufs + _AIM_LU, low + 0.01,
                                    high - 0.01)
        if predicted < target_lufs and predicted - max(t.lufs for t in tries) < 0.5 * tolerance_lu:
            break  # out of reach, and no gain left in the bracket promises a closer try
    return tries, points


def gain_and_limit(
    audio: np.ndarray,
    sample_rate: int,
    *,
    gain_db: float,
    ceiling_dbtp: float = -1.0,
    release_ms: float = 80.0,
) -> LoudnessResult:
    """A fixed gain, then the true-peak limiter at ``ceiling_dbtp`` when the gained peaks are
    over it (album mode: one gain for every track of an album, chosen by
    :func:`genrestore.album.plan_album`).  No target: ``reached`` is always True and the
    result's ``lufs`` is what the gain and the limiter made of the input."""
    Loudness(ceiling_dbtp=ceiling_dbtp, release_ms=release_ms, gain_db=gain_db)
    x = as_channels(audio)
    blocks = gating_blocks(x, sample_rate)
    start = gated_lufs(blocks)
    gained = _plain_gain(x, gain_db)
    peak = true_peak(gained)
    if peak <= 10.0 ** (ceiling_dbtp / 20.0):
        return LoudnessResult(gained, gated_lufs(blocks * 10.0 ** (gain_db / 10.0)), gain_db, 0,
                              True, "", start, _dbtp(peak))
    out, out_peak = _limit(gained, sample_rate, ceiling_dbtp, release_ms)
    return LoudnessResult(out, gated_lufs(gating_blocks(out, sample_rate)), gain_db, 1, True,
                          "", start, _dbtp(out_peak))


def _dbtp(peak: float) -> float:
    return float(20.0 * np.log10(peak)) if peak > 0 else float("-inf")


@dataclass(frozen=True)
class _Try:
    """One limiter pass: the gain fed to it, and its output with that output's measurements."""

    gain_db: float
    lufs: float
    audio: np.ndarray | None  # None: a long file's try, rendered again when chosen
    blocks: np.ndarray  # gating blocks (:func:`~genrestore.analysis.gating_blocks`)
    peak: float  # linear true peak


def _pick(tries: list[_Try], target: float, tolerance: float, ceiling_dbtp: float
          ) -> tuple[int, float]:
    """``(which try, its trim in dB)``: the closest try, what is left of its error removed by a
    plain gain, down always (it only lowers the peaks), up as far as the try's true-peak
    headroom allows.  Among tries that reach the target that way, the least limited (smallest
    gain) wins."""
    trims = []
    for t in tries:
        if t.lufs >= target:
            trims.append(target - t.lufs)
        else:
            headroom = ceiling_dbtp - _dbtp(t.peak) - 0.001
            trims.append(max(0.0, min(target - t.lufs, headroom)))
    ends = [t.lufs + trim for t, trim in zip(tries, trims, strict=True)]
    good = [k for k, end in enumerate(ends) if abs(end - target) <= tolerance]
    pick = min(good, key=lambda k: tries[k].gain_db) if good else int(np.argmax(ends))
    return pick, trims[pick]


def _finish(tries: list[_Try], target: float, tolerance: float, ceiling_dbtp: float, *,
            model: _LimiterModel, points: list[tuple[float, float]], cap: float,
            input_lufs: float) -> LoudnessResult:
    """Pick the closest try and remove what is left of the error by a plain gain (:func:`_pick`)."""
    pick, trim = _pick(tries, target, tolerance, ceiling_dbtp)
    chosen = tries[pick]
    gain_db, level, out = chosen.gain_db, chosen.lufs, chosen.audio
    if trim != 0.0:
        out = _plain_gain(out, trim)
        level = gated_lufs(chosen.blocks * 10.0 ** (trim / 10.0))
    reached = abs(level - target) <= tolerance
    why = ""
    if not reached:  # the cap is to blame if, past it, the limiter would have come closer
        predict = _corrected(model, points)
        still_rising = predict(cap) - predict(cap - 1.0) > _SATURATED_SLOPE
        beyond = max(predict(cap + step) for step in _PAST_CAP_DB) > level + tolerance
        why = "cap" if gain_db >= cap - 0.5 and (still_rising or beyond) else "limiter"
    return LoudnessResult(out, level, gain_db + trim, len(tries), reached, why, input_lufs,
                          _dbtp(chosen.peak) + trim)


@dataclass(frozen=True)
class Loudness:
    """Stage form of :func:`normalize_loudness`."""

    name: ClassVar[str] = "loudness"
    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    release_ms: float = 80.0
    max_limiting_db: float = 0.0  # 0: no cap on how hard the limiter works
    #: Album mode: apply ``gain_db`` and the limiter, whatever the loudness (the album's one
    #: gain, :mod:`genrestore.album`); ``target_lufs`` and ``max_limiting_db`` are then unused.
    fixed_gain: bool = False
    gain_db: float = 0.0

    def __post_init__(self) -> None:
        if not -60.0 <= self.gain_db <= 60.0:
            raise ParameterError("loudness.gain_db must be between -60 and 60")
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
        if self.fixed_gain:
            return self._apply_fixed_gain(audio, sample_rate)
        result = loudness_to_target(
            audio, sample_rate, target_lufs=self.target_lufs, ceiling_dbtp=self.ceiling_dbtp,
            release_ms=self.release_ms, max_limiting_db=self.max_limiting_db or None,
        )
        out, before, after, peak = result.audio, result.input_lufs, result.lufs, result.true_peak_dbtp
        if not np.isfinite(before):
            report = skipped(self.name, "silent or shorter than 0.4 s; peaks limited only",
                             true_peak_dbtp=round(peak, 2))
            return out, sample_rate, report
        summary = f"loudness {before:.1f}->{after:.1f} LUFS, peak {peak:.1f} dBTP"
        if result.limited_by == "cap":
            summary += (f" (target {self.target_lufs:g} not reached: limiting capped at "
                        f"{self.max_limiting_db or _MAX_DRIVE_DB:g} dB)")
        elif result.limited_by == "limiter":
            summary += (f" (target {self.target_lufs:g} not reached: the limiter is saturated, "
                        "more gain makes it no louder)")
        details = {"input_lufs": round(before, 2), "output_lufs": round(after, 2),
                   "gain_db": round(result.gain_db, 2), "true_peak_dbtp": round(peak, 2),
                   "target_reached": result.reached, "limiter_passes": result.limiter_passes,
                   "not_reached_because": result.limited_by or None}
        return out, sample_rate, StageReport(self.name, True, summary, details)

    def _apply_fixed_gain(self, audio: np.ndarray, sample_rate: int
                          ) -> tuple[np.ndarray, int, StageReport]:
        result = gain_and_limit(audio, sample_rate, gain_db=self.gain_db,
                                ceiling_dbtp=self.ceiling_dbtp, release_ms=self.release_ms)
        before, after, peak = result.input_lufs, result.lufs, result.true_peak_dbtp
        limited = ", limited" if result.limiter_passes else ""
        summary = (f"loudness album gain {self.gain_db:+.1f} dB{limited}: {before:.1f}->"
                   f"{after:.1f} LUFS, peak {peak:.1f} dBTP")
        details = {"input_lufs": round(before, 2), "output_lufs": round(after, 2),
                   "gain_db": round(self.gain_db, 2), "true_peak_dbtp": round(peak, 2),
                   "target_reached": None, "limiter_passes": result.limiter_passes,
                   "not_reached_because": None, "album": True}
        return result.audio, sample_rate, StageReport(self.name, True, summary, details)
