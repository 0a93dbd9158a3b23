"""genrestore.filters against the scipy routines it stands in for (on the restore path,
scipy's import would cost more than the restoration of a short clip)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, signal

from genrestore import filters
from genrestore.analysis import k_weighting_sos
from genrestore.errors import ParameterError


def _music(rate: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Tones, a DC offset and noise: content at both ends of the band."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    tones = sum(np.sin(2 * np.pi * f * t + p) for f, p in ((27.0, 0.3), (440.0, 1.0), (9000.0, 2.0)))
    return 0.2 * tones + 0.05 + 0.1 * rng.standard_normal((channels, t.size))


def test_fft_helpers_match_numpy_and_keep_single_precision() -> None:
    x = np.random.default_rng(1).standard_normal((3, 1000)).astype(np.float32)
    window = filters.hann(1000).astype(np.float32)
    spec = filters.windowed_rfft(x, window)
    assert spec.dtype == np.complex64
    np.testing.assert_allclose(spec, np.fft.rfft(x.astype(np.float64) * window), rtol=1e-6,
                               atol=1e-4)
    # Strided frames of two channels, more of them than one chunk of rows (and not a multiple).
    n, hop = 64, 16
    signal_ = np.random.default_rng(2).standard_normal((2, 200 * hop + n)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(signal_, n, axis=-1)[:, ::hop]
    assert frames.shape[1] > filters._FFT_ROWS
    window = filters.hann(n)
    spec = filters.windowed_rfft(frames, window)
    np.testing.assert_allclose(spec, np.fft.rfft(frames * window), rtol=1e-6, atol=1e-5)
    # Overlap-add of the inverse: the windowed frames summed hop apart, in single precision.
    out = filters.overlap_add_irfft(spec, n, hop, window)
    assert out.dtype == np.float32
    expected = np.zeros(signal_.shape)
    for k in range(frames.shape[1]):
        expected[:, k * hop:k * hop + n] += frames[:, k] * window**2
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 8, 2048, 2816])
def test_hann_is_scipys_periodic_hann(n: int) -> None:
    np.testing.assert_allclose(filters.hann(n), signal.get_window("hann", n), atol=1e-15)


def test_kaiser_lowpass_is_firwin() -> None:
    np.testing.assert_allclose(filters.kaiser_lowpass(48, 0.25, 5.0),
                               signal.firwin(48, 0.25, window=("kaiser", 5.0)), atol=1e-15)
    np.testing.assert_allclose(filters.kaiser_lowpass(31, 0.6, 8.0),
                               signal.firwin(31, 0.6, window=("kaiser", 8.0)), atol=1e-15)


@pytest.mark.parametrize(("corner", "rate"), [(30.0, 32000), (250.0, 44100), (9000.0, 48000)])
def test_butter2_highpass_is_scipys_design(corner: float, rate: int) -> None:
    np.testing.assert_allclose(filters.butter2_highpass(corner, rate),
                               signal.butter(2, corner, "highpass", fs=rate, output="sos"),
                               rtol=1e-12, atol=1e-14)
    with pytest.raises(ParameterError):
        filters.butter2_highpass(rate / 2.0, rate)


def _sos_cases() -> list[tuple[str, np.ndarray, int]]:
    return [
        ("k-weighting 32 kHz", k_weighting_sos(32000), 32000),
        ("k-weighting 48 kHz", k_weighting_sos(48000), 48000),
        ("butterworth 20 Hz", signal.butter(2, 20.0, "highpass", fs=44100, output="sos"), 44100),
        ("elliptic low-pass", signal.ellip(6, 0.5, 60, 0.3, output="sos"), 48000),
    ]


@pytest.mark.parametrize(("name", "sos", "rate"), _sos_cases(), ids=lambda v: str(v)[:20])
def test_sosfilt_is_scipys(name: str, sos: np.ndarray, rate: int) -> None:
    # Both round in double precision; the state of a section with poles near z = 1 grows to
    # about 1 / (1 - r)^2 times its output, so the two agree to about 1e-10, not 1e-16.
    for seconds in (0.01, 0.3, 3.0):  # less than one group of blocks, and many groups
        x = _music(rate, seconds, channels=2)
        expected = signal.sosfilt(sos, x, axis=-1)
        got = filters.sosfilt(sos, x, axis=-1)
        assert got.shape == x.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    # Along another axis, and a float32 input gives float64 as scipy's does.
    x = _music(rate, 0.5, channels=3).astype(np.float32).T
    got = filters.sosfilt(sos, x, axis=0)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, signal.sosfilt(sos, x, axis=0), atol=1e-9)


@pytest.mark.parametrize(("name", "sos", "rate"), _sos_cases(), ids=lambda v: str(v)[:20])
def test_sosfiltfilt_is_scipys_edges_included(name: str, sos: np.ndarray, rate: int) -> None:
    for seconds in (0.05, 2.0):
        x = _music(rate, seconds, channels=2, seed=3)
        expected = signal.sosfiltfilt(sos, x, axis=-1)
        got = filters.sosfiltfilt(sos, x, axis=-1)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_sosfiltfilt_refuses_what_is_shorter_than_its_padding() -> None:
    with pytest.raises(ParameterError, match="more than 9 samples"):
        filters.sosfiltfilt(filters.butter2_highpass(100.0, 8000), np.ones(9))


def test_an_unstable_section_is_refused() -> None:
    with pytest.raises(ParameterError, match="unstable"):
        filters.sosfilt(np.array([[1.0, 0.0, 0.0, 1.0, -2.0, 1.0]]), np.ones(10))
    with pytest.raises(ParameterError, match="unstable"):  # a pole at z = 1, zero-phase
        filters.sosfiltfilt(np.array([[1.0, 0.0, 0.0, 1.0, -1.0, 0.0]]), np.ones(100))


def test_a_long_ringing_filter_is_followed_across_blocks() -> None:
    """A 5 Hz high-pass at 48 kHz rings for seconds: the state carried from block to block
    must follow it that far (its poles are 1 - 5e-4 from z = 1, so rounding is larger)."""
    sos = signal.butter(2, 5.0, "highpass", fs=48000, output="sos")
    x = np.zeros(48000 * 4)
    x[0] = 1.0
    expected = signal.sosfilt(sos, x)
    np.testing.assert_allclose(filters.sosfilt(sos, x), expected, atol=1e-10)


@pytest.mark.parametrize("size", [1, 2, 3, 8, 9, 33, 200])
def test_running_min_is_ndimages(size: int) -> None:
    rng = np.random.default_rng(size)
    x = rng.standard_normal((3, 150, 41)).astype(np.float32)
    for axis in (1, 2, -1):
        np.testing.assert_array_equal(filters.running_min(x, size, axis=axis),
                                      ndimage.minimum_filter1d(x, size, axis=axis, mode="nearest"))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 9, 17, 64, 300])
def test_running_mean_is_ndimages(size: int) -> None:
    rng = np.random.default_rng(size)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal((2, 120, 37)) * 10 + 3).astype(dtype)
        for axis in (1, -1):
            got = filters.running_mean(x, size, axis=axis)
            assert got.dtype == dtype
            np.testing.assert_allclose(
                got, ndimage.uniform_filter1d(x, size, axis=axis, mode="nearest"),
                rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)


def test_running_windows_refuse_an_empty_window() -> None:
    with pytest.raises(ParameterError):
        filters.running_min(np.ones(4), 0)
    with pytest.raises(ParameterError):
        filters.running_mean(np.ones(4), 0)


@pytest.mark.parametrize("length", [1000, 70001, 200000])
def test_fir_filter_centred_is_fftconvolve_same(length: int) -> None:
    rng = np.random.default_rng(length)
    x = rng.standard_normal((2, length)).astype(np.float32)
    taps = signal.firwin(1025, 0.3) * np.hanning(1025)
    out = filters.fir_filter_centred(x, taps)
    assert out.dtype == np.float32
    assert out.shape == x.shape
    expected = signal.fftconvolve(x.astype(np.float64), taps[np.newaxis], mode="same")
    assert np.max(np.abs(out - expected)) < 1e-5
    with pytest.raises(ParameterError):
        filters.fir_filter_centred(x, taps[:-1])


@pytest.mark.parametrize(("shape", "axis"), [((7,), None), ((8,), None), ((1,), None),
                                             ((3, 9), 1), ((3, 10), 0), ((4, 6, 5), 1),
                                             ((4, 6, 5), -2)])
def test_percentile_and_median_are_numpys(shape: tuple[int, ...], axis: int | None) -> None:
    x = np.random.default_rng(len(shape)).standard_normal(shape)
    x[..., 0] = x[..., -1]  # ties too
    for q in (0.0, 10.0, 33.3, 50.0, 95.0, 100.0, [10.0, 95.0]):
        ours, theirs = filters.percentile(x, q, axis=axis), np.percentile(x, q, axis=axis)
        assert np.shape(ours) == np.shape(theirs)
        np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=0.0)
    np.testing.assert_allclose(filters.median(x, axis=axis), np.median(x, axis=axis), rtol=1e-14,
                               atol=0.0)
    with pytest.raises(ParameterError):
        filters.median(np.zeros(0))
    for q in ([[10.0, 20.0], [30.0, 40.0]], -1.0, 150.0):  # numpy raises, or reshapes
        with pytest.raises(ParameterError):
            filters.percentile(x, q, axis=axis)
