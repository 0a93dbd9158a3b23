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

IIR sections are applied by fast convolution with their impulse response, which is
computed from the frequency response and is exact to 1e-14 of its peak, because it is
truncated only where the slowest pole has decayed that far.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from genrestore.errors import ParameterError

#: The impulse response is kept until the slowest pole has decayed to this fraction.
_DECAY = 1e-14
#: Overlap-add transforms are this many times the impulse response (at least).
_OLA_RATIO = 4
_OLA_MIN = 4096


def next_fast_len(n: int) -> int:
    """The smallest length at or above ``n`` with no prime factor over 5 (a fast FFT size)."""
    if n <= 6:
        return max(1, n)
    best = 2 ** math.ceil(math.log2(n))
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three * 2 ** max(0, math.ceil(math.log2(n / three)))
            best = min(best, size)
            three *= 3
        five *= 5
    return best


def rfft(x: np.ndarray, n: int | None = None, axis: int = -1) -> np.ndarray:
    """``numpy.fft.rfft`` in double precision (numpy's float32 path is slower here),
    returned as complex64 for float32 input."""
    out = np.fft.rfft(np.asarray(x, dtype=np.float64), n=n, axis=axis)
    return out.astype(np.complex64) if np.asarray(x).dtype == np.float32 else out


def irfft(spec: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """``numpy.fft.irfft``, returned as float32 for complex64 input."""
    out = np.fft.irfft(spec, n=n, axis=axis)
    return out.astype(np.float32) if spec.dtype == np.complex64 else out


def hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` points (``scipy.signal.get_window("hann", n)``)."""
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


def impulse_length(sos: np.ndarray) -> int:
    """Samples after which the sections' impulse response stays under 1e-14 of its peak,
    read from the response itself (computed once per filter)."""
    sos = _sections(sos)
    return _measured_tail(sos.tobytes(), sos.shape[0])


def _decay_bound(sos: np.ndarray) -> int:
    """A safe upper bound of :func:`impulse_length`: twice the slowest pole's decay time to
    1e-14 (which covers repeated poles and large residues)."""
    radius = max(float(np.max(np.abs(np.roots(s[3:])), initial=0.0)) for s in sos)
    if radius >= 1.0:
        raise ParameterError("the filter is unstable (a pole on or outside the unit circle)")
    if radius == 0.0:
        return 2 * sos.shape[0] + 1
    return math.ceil(2.0 * math.log(_DECAY) / math.log(radius)) + 4 * sos.shape[0]


@functools.lru_cache(maxsize=64)
def _measured_tail(key: bytes, sections: int) -> int:
    sos = np.frombuffer(key).reshape(sections, 6)
    bound = _decay_bound(sos)
    size = 2 ** math.ceil(math.log2(2 * bound + 8))  # time aliasing far under 1e-14 at the bound
    h = np.abs(np.fft.irfft(frequency_response(sos, size), n=size))[:bound]
    return int(np.flatnonzero(h > _DECAY * h.max())[-1]) + 2 if h.max() > 0 else 1


def frequency_response(sos: np.ndarray, n: int) -> np.ndarray:
    """The sections' response at the ``n // 2 + 1`` bins of a length-``n`` real FFT."""
    sos = _sections(sos)
    z = np.exp(-2j * np.pi * np.arange(n // 2 + 1) / n)  # z^-1 on the bins
    response = np.ones(n // 2 + 1, dtype=np.complex128)
    for b0, b1, b2, a0, a1, a2 in sos:
        response *= (b0 + z * (b1 + z * b2)) / (a0 + z * (a1 + z * a2))
    return response


def _dc_gain(sos: np.ndarray) -> float:
    return float(np.prod(sos[:, :3].sum(axis=1) / sos[:, 3:].sum(axis=1)))


def _zero_state(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfilt(sos, x)`` along the last axis (float64, initial state zero),
    by overlap-add convolution with the impulse response."""
    n = x.shape[-1]
    tail = impulse_length(sos)
    size = max(_OLA_MIN, 2 ** math.ceil(math.log2(_OLA_RATIO * tail)))
    if n + tail <= size:  # one transform covers it
        size = next_fast_len(n + tail)
    block = size - tail
    response = frequency_response(sos, size)
    count = -(-n // block)
    padded = np.zeros((*x.shape[:-1], count * block))
    padded[..., :n] = x
    frames = padded.reshape(*x.shape[:-1], count, block)
    y = np.fft.irfft(np.fft.rfft(frames, n=size, axis=-1) * response, n=size, axis=-1)
    out = y[..., :block].copy()
    if count > 1:
        out[..., 1:, :tail] += y[..., :-1, block:]  # each block's ringing into the next
    return out.reshape(*x.shape[:-1], count * block)[..., :n]


def sosfilt(sos: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Filter ``x`` along ``axis`` through second-order sections from rest, as
    ``scipy.signal.sosfilt`` (float64 out)."""
    sos = _sections(sos)
    data = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    if data.shape[-1] == 0:
        return np.moveaxis(data.copy(), -1, axis)
    return np.moveaxis(_zero_state(sos, data), -1, axis)


def _from_steady_state(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Filter along the last axis as if each row's first value had been its input forever
    (``sosfilt`` with ``zi = sosfilt_zi(sos) * x[..., 0]``): the response to the constant
    is the DC gain times it, and the rest is the zero-state response to the difference."""
    first = x[..., :1]
    return _zero_state(sos, x - first) + _dc_gain(sos) * first


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
    """``x`` along the last axis with ``size // 2`` copies of its first value before it and
    ``size - 1 - size // 2`` of its last after it (ndimage's ``mode="nearest"``, origin 0)."""
    left, right = size // 2, size - 1 - size // 2
    return np.concatenate([np.repeat(x[..., :1], left, axis=-1), x,
                           np.repeat(x[..., -1:], right, axis=-1)], axis=-1)


def running_min(x: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    """Minimum over a centred window of ``size`` along ``axis``, edges extended by their
    nearest value: ``scipy.ndimage.minimum_filter1d(x, size, axis, mode="nearest")``.
    Van Herk / Gil-Werman: about three comparisons per sample whatever the size."""
    if size < 1:
        raise ParameterError("running_min needs a window of at least 1")
    data = np.moveaxis(np.asarray(x), axis, -1)
    n = data.shape[-1]
    if size == 1 or n == 0:
        return np.moveaxis(data.copy(), -1, axis)
    padded = _nearest_padded(data, size)
    blocks = -(-padded.shape[-1] // size)
    full = np.concatenate([padded, np.repeat(padded[..., -1:], blocks * size - padded.shape[-1],
                                             axis=-1)], axis=-1)
    shaped = full.reshape(*data.shape[:-1], blocks, size)
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
    data = np.moveaxis(np.asarray(x), axis, -1)
    kind = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
    n = data.shape[-1]
    if size == 1 or n == 0:
        return np.moveaxis(data.astype(kind, copy=True), -1, axis)
    padded = _nearest_padded(data, size)
    if size <= 16:  # a few shifted sums beat a cumulative sum in double
        total = padded[..., :n].astype(np.float64)
        for k in range(1, size):
            total += padded[..., k:k + n]
    else:
        cumulative = np.zeros((*data.shape[:-1], padded.shape[-1] + 1))
        np.cumsum(padded, axis=-1, out=cumulative[..., 1:])
        total = cumulative[..., size:size + n] - cumulative[..., :n]
    return np.moveaxis((total / size).astype(kind), -1, axis)
