"""The few filters the restore path needs, on numpy alone: FFTs, IIR sections, running
minima and means, a windowed-sinc FIR.

A user runs ``genrestore restore clip.wav`` as one process per clip, so import time is
part of the work: on the 2-core development machine ``import scipy.signal`` takes about
1.1 s (it pulls in scipy.stats, scipy.interpolate and scipy.optimize), ``scipy.fft`` and
``scipy.ndimage`` about 0.3 s each, while the restoration of a 10 s clip takes about
0.3 s.  These functions do what the restore path used from those modules, on numpy
(imported anyway), and equal scipy's results to rounding: ``tests/test_filters.py``
compares each with its scipy counterpart.  The rest of the package (benchmarks, metrics,
degradations, training) keeps using scipy, imported where it is used.

IIR sections run as one state-space system, a block of samples at a time: within a block
the output is a matrix product with the impulse response (BLAS does the work), and the state
is carried from block to block by a second, smaller product, so there is no per-sample Python
loop and no truncation (equal to ``scipy.signal.sosfilt`` within 1e-11 of the output's scale,
at 1.2-1.5x its time here, where fast convolution took 3-4x).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from genrestore.errors import ParameterError

#: Samples per block, and blocks per group, of the blocked state-space filter.
_BLOCK = 64
_GROUP = 32
#: Groups filtered at a time by :func:`_blocked` (256 KB of float64 a row).
_CHUNK_GROUPS = 16


#: Frames transformed at a time by :func:`windowed_rfft` and :func:`overlap_add_irfft`: a
#: working set that stays in cache.  Transforming a whole clip's frames in one call builds
#: temporaries of tens of MB that cost more than the transforms (about 2x at 30 s stereo).
_FFT_ROWS = 64


def windowed_rfft(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The real FFT of ``frames * window`` along the last axis, complex64, ``frames`` being
    ``(..., count, n)`` (a strided view is fine).  The product is formed in double precision
    and transformed there (numpy's float32 transform is slower than its float64 one here),
    :data:`_FFT_ROWS` frames at a time."""
    frames = np.asarray(frames)
    if frames.ndim == 1:
        return windowed_rfft(frames[np.newaxis], window)[0]
    window = np.asarray(window, dtype=np.float64)
    n = frames.shape[-1]
    out = np.empty((*frames.shape[:-1], n // 2 + 1), dtype=np.complex64)
    buffer = np.empty((_FFT_ROWS, n))
    for index in np.ndindex(frames.shape[:-2]):
        rows, spec = frames[index], out[index]
        for start in range(0, rows.shape[0], _FFT_ROWS):
            chunk = rows[start:start + _FFT_ROWS]
            product = buffer[:chunk.shape[0]]
            np.multiply(chunk, window, out=product)
            spec[start:start + _FFT_ROWS] = np.fft.rfft(product, axis=-1)
    return out


def overlap_add_irfft(spec: np.ndarray, n: int, hop: int, window: np.ndarray) -> np.ndarray:
    """Inverse real FFT of ``(channels, count, n // 2 + 1)`` frames, each times ``window``,
    overlap-added ``hop`` apart (``n`` a multiple of ``hop``): float32
    ``(channels, (count - 1) * hop + n)``, frame ``k`` starting at ``k * hop``.
    :data:`_FFT_ROWS` frames at a time."""
    channels, count, _ = spec.shape
    window = np.asarray(window, dtype=np.float32)
    out = np.zeros((channels, max(count - 1, 0) * hop + n), dtype=np.float32)
    for c in range(channels):
        for start in range(0, count, _FFT_ROWS):
            frames = np.fft.irfft(spec[c, start:start + _FFT_ROWS], n=n, axis=-1)
            frames = frames.astype(np.float32)
            frames *= window
            rows = frames.shape[0]
            for part in range(n // hop):  # each frame's part-th hop lands in one run of samples
                first = (start + part) * hop
                out[c, first:first + rows * hop] += frames[:, part * hop:(part + 1) * hop].ravel()
    return out


def hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` points (``scipy.signal.get_window("hann", n)``,
    which is ``[1.0]`` for one point)."""
    if n == 1:
        return np.ones(1)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def kaiser_lowpass(taps: int, cutoff: float, beta: float) -> np.ndarray:
    """Linear-phase low-pass FIR by the window method, as ``scipy.signal.firwin(taps,
    cutoff, window=("kaiser", beta))``: a sinc cut at ``cutoff`` (a fraction of Nyquist),
    Kaiser-windowed, scaled to unit gain at DC."""
    m = np.arange(taps) - (taps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(taps, beta)
    return h / h.sum()


def butter2_highpass(cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """Second-order Butterworth high-pass as one section ``(1, 6)``, as
    ``scipy.signal.butter(2, cutoff_hz, "highpass", fs=sample_rate, output="sos")``
    (bilinear transform, prewarped at the corner)."""
    if not 0.0 < cutoff_hz < sample_rate / 2.0:
        raise ParameterError(f"high-pass corner {cutoff_hz} Hz is not between 0 and Nyquist")
    k = math.tan(math.pi * cutoff_hz / sample_rate)
    a0 = 1.0 + math.sqrt(2.0) * k + k * k
    return np.array([[1.0 / a0, -2.0 / a0, 1.0 / a0, 1.0,
                      2.0 * (k * k - 1.0) / a0, (1.0 - math.sqrt(2.0) * k + k * k) / a0]])


def _sections(sos: np.ndarray) -> np.ndarray:
    sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
    if sos.ndim != 2 or sos.shape[1] != 6 or np.any(sos[:, 3] == 0.0):
        raise ParameterError("second-order sections must be (n, 6) with a0 != 0")
    return sos / sos[:, 3:4]


def _state_space(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(A, B, C, D)`` of the cascade: each section in transposed direct form II (state
    ``(z1, z2)``: ``y = b0 x + z1``, ``z1' = b1 x - a1 y + z2``, ``z2' = b2 x - a2 y``), each
    section fed by the previous one's output."""
    a = np.zeros((0, 0))
    b = c = np.zeros(0)
    d = 1.0
    for b0, b1, b2, _, a1, a2 in sos:
        a_s = np.array([[-a1, 1.0], [-a2, 0.0]])
        b_s = np.array([b1 - a1 * b0, b2 - a2 * b0])
        m = a.shape[0]
        joined = np.zeros((m + 2, m + 2))
        joined[:m, :m], joined[m:, m:], joined[m:, :m] = a, a_s, np.outer(b_s, c)
        a, b, c, d = joined, np.concatenate([b, b_s * d]), np.concatenate([b0 * c, [1.0, 0.0]]), b0 * d
    return a, b, c, d


@functools.lru_cache(maxsize=32)
def _plan(key: bytes, sections: int) -> tuple[np.ndarray, ...]:
    """The matrices of the blocked filter (see :func:`_zero_state`), once per filter."""
    a, b, c, d = _state_space(np.frombuffer(key).reshape(sections, 6))
    # Poles on the unit circle come out of eigvals within rounding of 1: refuse those too.
    if a.size and np.max(np.abs(np.linalg.eigvals(a))) >= 1.0 - 1e-9:
        raise ParameterError("the filter is unstable (a pole on or outside the unit circle)")
    m, size, group = a.shape[0], _BLOCK, _GROUP
    powers = [np.eye(m)]
    for _ in range(size):
        powers.append(powers[-1] @ a)
    impulse = np.array([d] + [c @ powers[k - 1] @ b for k in range(1, size)])
    toeplitz = np.zeros((size, size))  # out[k] = sum_j impulse[k - j] in[j]
    for k in range(size):
        toeplitz[k, :k + 1] = impulse[k::-1]
    observe = np.array([c @ powers[k] for k in range(size)])  # (size, m): state -> outputs
    feed = np.array([powers[size - 1 - j] @ b for j in range(size)])  # (size, m): in -> end state
    step = powers[size]  # the state's propagation over one block
    steps = [np.eye(m)]
    for _ in range(group):
        steps.append(steps[-1] @ step)
    within = np.zeros((group * m, group * m))  # block starts' states from the group's inputs
    for k in range(1, group):
        for i in range(k):
            within[i * m:(i + 1) * m, k * m:(k + 1) * m] = steps[k - 1 - i].T
    carry = np.concatenate([steps[k].T @ observe.T for k in range(group)], axis=1)
    return toeplitz.T, feed, within, observe.T, steps[1].T, steps[group].T, carry


def _zero_state(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfilt(sos, x)`` along the last axis (float64, from rest)."""
    return _blocked(sos, x)[0]


def _blocked(sos: np.ndarray, x: np.ndarray, initial: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.sosfilt(sos, x)`` along the last axis (float64), from the state-space
    state ``initial`` (``(rows, m)``; rest when ``None``), and the state after the last group
    (the state after ``x`` when its length is a multiple of :data:`SPAN`).

    Blocks of :data:`_BLOCK` samples: the zero-state output of a block is its samples times
    a Toeplitz matrix of the impulse response; the state each block starts with is the
    previous state propagated over a block plus what the previous block's samples fed in.
    Those states are found for :data:`_GROUP` blocks at once from the group's start state
    (one more product), and only the group start states are carried in a Python loop.
    The signal is filtered :data:`_CHUNK_GROUPS` groups at a time into the output, so every
    temporary is small and reused: whole-signal temporaries cost more in fresh memory (page
    faults) than the products themselves (2-3x the time, measured on 10-30 s clips)."""
    toeplitz, feed, within, observe, one, whole, carry = _plan(sos.tobytes(), sos.shape[0])
    m = feed.shape[1]
    n, rows = x.shape[-1], x.shape[:-1]
    span = _BLOCK * _GROUP
    total = -(-n // span) * span
    data = x.reshape(-1, n)
    count = data.shape[0]
    out = np.empty((count, total // span, span))
    out_blocks = out.reshape(count, total // _BLOCK, _BLOCK)
    state = np.zeros((count, m)) if initial is None else initial.reshape(count, m).copy()
    step = _CHUNK_GROUPS * span
    for lo in range(0, total, step):
        hi = min(lo + step, total)
        groups = (hi - lo) // span
        if hi <= n:
            piece = data[:, lo:hi]
        else:  # the last groups, zero-padded
            piece = np.zeros((count, hi - lo))
            piece[:, :n - lo] = data[:, lo:n]
        blocks = piece.reshape(count, groups * _GROUP, _BLOCK)
        chunk = out[:, lo // span:hi // span]  # (count, groups, span): a view
        np.matmul(blocks, toeplitz, out=out_blocks[:, lo // _BLOCK:hi // _BLOCK])
        fed = (blocks @ feed).reshape(count, groups, _GROUP, m)
        starts = (fed.reshape(count, groups, _GROUP * m) @ within).reshape(
            count, groups, _GROUP, m)
        ends = starts[:, :, -1, :] @ one + fed[:, :, -1, :]  # each group's end state from rest
        entering = np.empty((count, groups, m))
        for g in range(groups):
            entering[:, g] = state
            state = state @ whole + ends[:, g]
        chunk += (starts.reshape(count, groups * _GROUP, m) @ observe).reshape(
            count, groups, span)
        chunk += entering @ carry
    return out.reshape(*rows, total)[..., :n], state.reshape(*rows, m)


#: Samples of one group of the blocked filter: :class:`SosStream` filters whole groups.
SPAN = _BLOCK * _GROUP


class SosStream:
    """:func:`sosfilt` over consecutive pieces of a long signal, ``(rows, samples)`` each:
    the pieces' outputs, joined, equal ``sosfilt`` of the joined input (to rounding).  Whole
    groups of :data:`SPAN` samples are filtered as they arrive (the state is carried between
    them); the rest waits for the next piece, so each output may lag its input by up to
    ``SPAN - 1`` samples, and :meth:`flush` returns what is left."""

    def __init__(self, sos: np.ndarray, rows: int) -> None:
        self.sos = _sections(sos)
        self.rows = rows
        self.state: np.ndarray | None = None
        self.pending = np.zeros((rows, 0))

    def process(self, x: np.ndarray) -> np.ndarray:
        data = np.concatenate([self.pending, np.asarray(x, dtype=np.float64)], axis=-1)
        usable = data.shape[-1] // SPAN * SPAN
        self.pending = data[:, usable:]
        if usable == 0:
            return np.zeros((self.rows, 0))
        out, self.state = _blocked(self.sos, data[:, :usable], self.state)
        return out

    def flush(self) -> np.ndarray:
        """The output of the samples still held back (the filter's state is then spent)."""
        data, self.pending = self.pending, np.zeros((self.rows, 0))
        if data.shape[-1] == 0:
            return data
        return _blocked(self.sos, data, self.state)[0]


def sosfilt(sos: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Filter ``x`` along ``axis`` through second-order sections from rest, as
    ``scipy.signal.sosfilt`` (float64 out)."""
    sos = _sections(sos)
    data = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    if data.shape[-1] == 0:
        return np.moveaxis(data.copy(), -1, axis)
    return np.moveaxis(_zero_state(sos, data), -1, axis)


@functools.lru_cache(maxsize=32)
def _unit_steady_state(key: bytes, sections: int) -> np.ndarray:
    """The state-space state (:func:`_state_space`) that a constant input of 1 holds the
    cascade in: ``(I - A)^-1 B``."""
    a, b, _, _ = _state_space(np.frombuffer(key).reshape(sections, 6))
    return np.linalg.solve(np.eye(a.shape[0]) - a, b)


def _from_steady_state(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Filter along the last axis as if each row's first value had been its input forever
    (``sosfilt`` with ``zi = sosfilt_zi(sos) * x[..., 0]``): the blocked filter started from
    the steady state of that constant."""
    _plan(sos.tobytes(), sos.shape[0])  # refuses an unstable filter before solving for it
    state = x[..., :1] * _unit_steady_state(sos.tobytes(), sos.shape[0])
    return _blocked(sos, x, state)[0]


def sosfiltfilt(sos: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Zero-phase forward-backward filtering, as ``scipy.signal.sosfiltfilt`` with its
    defaults: odd extension at both ends by ``3 * (2 * sections + 1 - trailing zeros)``
    samples and steady-state initial conditions (float64 out)."""
    sos = _sections(sos)
    data = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    zeros = min(int(np.sum(sos[:, 2] == 0.0)), int(np.sum(sos[:, 5] == 0.0)))
    edge = 3 * (2 * sos.shape[0] + 1 - zeros)
    n = data.shape[-1]
    if n <= edge:
        raise ParameterError(f"sosfiltfilt needs more than {edge} samples, got {n}")
    left = 2.0 * data[..., :1] - data[..., edge:0:-1]
    right = 2.0 * data[..., -1:] - data[..., -2:-edge - 2:-1]
    extended = np.concatenate([left, data, right], axis=-1)
    forward = _from_steady_state(sos, extended)
    backward = _from_steady_state(sos, forward[..., ::-1])[..., ::-1]
    return np.moveaxis(backward[..., edge:edge + n], -1, axis)


def _nearest_padded(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` along its last axis with ``size // 2`` copies of its first value before it and
    ``size - 1 - size // 2`` of its last after it (ndimage's ``mode="nearest"``, origin 0)."""
    left, right = size // 2, size - 1 - size // 2
    return np.concatenate([np.repeat(x[..., :1], left, axis=-1), x,
                           np.repeat(x[..., -1:], right, axis=-1)], axis=-1)


#: Up to this window, a running minimum or mean is a few passes over shifted copies (each a
#: fast whole-array operation); above it, work per sample that does not grow with the window.
_SHIFTED_MAX = 64


def _shifts(x: np.ndarray, size: int, axis: int) -> list[np.ndarray]:
    """The ``size`` windows' shifted views of ``x`` along ``axis`` (edges extended by their
    nearest value), without moving the axis: along a middle axis each view is whole rows."""
    axis = axis % x.ndim
    n = x.shape[axis]
    left, right = size // 2, size - 1 - size // 2
    first = np.take(x, [0] * left, axis=axis)
    last = np.take(x, [n - 1] * right, axis=axis)
    padded = np.concatenate([first, x, last], axis=axis)
    head = (slice(None),) * axis
    return [padded[(*head, slice(k, k + n))] for k in range(size)]


def running_min(x: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    """Minimum over a centred window of ``size`` along ``axis``, edges extended by their
    nearest value: ``scipy.ndimage.minimum_filter1d(x, size, axis, mode="nearest")``.
    Small windows take the minimum of shifted copies; large ones Van Herk / Gil-Werman
    (about three comparisons per sample whatever the size)."""
    if size < 1:
        raise ParameterError("running_min needs a window of at least 1")
    data = np.asarray(x)
    if size == 1 or data.shape[axis] == 0:
        return data.copy()
    if size <= _SHIFTED_MAX:
        views = _shifts(data, size, axis)
        out = views[0].copy()
        for view in views[1:]:
            np.minimum(out, view, out=out)
        return out
    moved = np.moveaxis(data, axis, -1)
    n = moved.shape[-1]
    padded = _nearest_padded(moved, size)
    blocks = -(-padded.shape[-1] // size)
    full = np.concatenate([padded, np.repeat(padded[..., -1:], blocks * size - padded.shape[-1],
                                             axis=-1)], axis=-1)
    shaped = full.reshape(*moved.shape[:-1], blocks, size)
    prefix = np.minimum.accumulate(shaped, axis=-1).reshape(full.shape)
    suffix = np.minimum.accumulate(shaped[..., ::-1], axis=-1)[..., ::-1].reshape(full.shape)
    # The window [i, i + size) holds the end of one block and the start of the next.
    out = np.minimum(suffix[..., :n], prefix[..., size - 1:size - 1 + n])
    return np.moveaxis(out, -1, axis)


def running_mean(x: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    """Mean over a centred window of ``size`` along ``axis``, edges extended by their
    nearest value: ``scipy.ndimage.uniform_filter1d(x, size, axis, mode="nearest")``
    (the input's float type out)."""
    if size < 1:
        raise ParameterError("running_mean needs a window of at least 1")
    data = np.asarray(x)
    kind = data.dtype if np.issubdtype(data.dtype, np.floating) else np.dtype(np.float64)
    if size == 1 or data.shape[axis] == 0:
        return data.astype(kind, copy=True)
    if size <= 16:  # a few shifted sums (in the input's precision) beat a cumulative sum
        views = _shifts(data, size, axis)
        total = views[0].astype(kind, copy=True)
        for view in views[1:]:
            total += view
        total /= kind.type(size)
        return total
    moved = np.moveaxis(data, axis, -1)
    n = moved.shape[-1]
    padded = _nearest_padded(moved, size)
    cumulative = np.zeros((*moved.shape[:-1], padded.shape[-1] + 1))
    np.cumsum(padded, axis=-1, out=cumulative[..., 1:])
    total = cumulative[..., size:size + n] - cumulative[..., :n]
    return np.moveaxis((total / size).astype(kind), -1, axis)


#: Output samples per block of :func:`fir_filter_centred`'s overlap-add.
_OLA_BLOCK = 1 << 16


def fir_filter_centred(x: np.ndarray, taps: np.ndarray, axis: int = -1) -> np.ndarray:
    """Filter ``x`` along ``axis`` with an odd-length linear-phase FIR and remove its delay:
    the output has the input's length and is aligned with it (sample ``n`` of the output is
    ``sum_k taps[k] x[n + (len(taps) - 1) / 2 - k]``, the input taken as zero outside), as
    ``scipy.signal.fftconvolve(x, taps, mode="same")``.  FFT overlap-add in blocks of
    64k output samples (bounded memory on long clips), in double precision; the input's float
    type out."""
    h = np.asarray(taps, dtype=np.float64)
    if h.ndim != 1 or h.size % 2 == 0:
        raise ParameterError("fir_filter_centred needs a 1-D FIR of odd length")
    data = np.asarray(x)
    kind = data.dtype if np.issubdtype(data.dtype, np.floating) else np.dtype(np.float64)
    moved = np.moveaxis(data, axis, -1)
    n, delay = moved.shape[-1], h.size // 2
    size = 1 << int(np.ceil(np.log2(_OLA_BLOCK + h.size - 1)))
    spectrum = np.fft.rfft(h, size)
    full = np.zeros((*moved.shape[:-1], n + h.size - 1))
    for start in range(0, n, _OLA_BLOCK):
        block = moved[..., start : start + _OLA_BLOCK].astype(np.float64)
        length = block.shape[-1] + h.size - 1
        full[..., start : start + length] += np.fft.irfft(
            np.fft.rfft(block, size) * spectrum, size)[..., :length]
    return np.moveaxis(full[..., delay : delay + n].astype(kind), -1, axis)


def _along_last(x: np.ndarray, axis: int | None, what: str) -> np.ndarray:
    """``x`` as float64 with ``axis`` last (flattened for ``None``), refused when empty."""
    data = np.asarray(x, dtype=np.float64)
    data = data.ravel() if axis is None else np.moveaxis(data, axis, -1)
    if data.shape[-1] == 0:
        raise ParameterError(f"{what} of an empty array")
    return data


def percentile(x: np.ndarray, q: float | Sequence[float], axis: int | None = None
               ) -> np.ndarray:
    """``numpy.percentile(x, q, axis=axis)`` (its default, linear interpolation between the
    two nearest ranks) for NaN-free ``x`` and a scalar or 1-D ``q`` in [0, 100], by
    partitioning, as float64.  numpy's own checks for NaN through ``numpy.ma``, whose import
    costs 12 ms or more of a one-clip CLI run; nothing genrestore measures holds NaN (audio
    is validated on the way in)."""
    if np.ndim(q) > 1 or np.any(np.asarray(q) < 0.0) or np.any(np.asarray(q) > 100.0):
        raise ParameterError("percentile: q must be a number or a list of numbers in 0..100")
    data = _along_last(x, axis, "percentile")
    n = data.shape[-1]
    where = np.asarray(q, dtype=np.float64) / 100.0 * (n - 1)
    low = np.floor(where).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    ranks = np.sort(np.concatenate([low.ravel(), high.ravel()]))
    ordered = np.partition(data, ranks, axis=-1)  # repeated ranks are fine
    below, above = ordered[..., low], ordered[..., high]
    fraction = where - low
    # numpy's lerp: from below for t < 0.5, from above otherwise (exact at both ends).
    values = np.where(fraction < 0.5, below + (above - below) * fraction,
                      above - (above - below) * (1.0 - fraction))
    values = np.moveaxis(values, -1, 0) if values.ndim > 1 and np.ndim(q) else values
    return values[()]  # a numpy scalar where numpy gives one


def median(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """``numpy.median(x, axis=axis)`` for NaN-free ``x`` (see :func:`percentile`), float64."""
    data = _along_last(x, axis, "median")
    n = data.shape[-1]
    k = n // 2
    if n % 2:
        return np.partition(data, k, axis=-1)[..., k][()]
    ordered = np.partition(data, [k - 1, k], axis=-1)
    return ((ordered[..., k - 1] + ordered[..., k]) / 2.0)[()]
