"""The loudness stage's true-peak limiter (``limit_true_peak``, the stage's ``_limit``).

Physics: it holds the ceiling as :func:`true_peak` measures it, on its own (without the static
trim behind it); what never reaches its limit passes untouched; a steady sine comes out as a
sine (a constant gain makes no harmonics); the gain recovers no faster than ``release_ms``
allows; the channels share one gain.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import song
from genrestore.analysis import integrated_lufs, true_peak, true_peak_dbtp
from genrestore.stages import limit_true_peak
from genrestore.stages import loudness as loudness_module

RATE = 44100
CEILING = -1.0
#: The limiter's own ceiling sits this far under the stage's (the static trim's safety margin).
MARGIN = loudness_module._LIMITER_MARGIN_DB


def drive(x: np.ndarray, over_db: float) -> np.ndarray:
    """``x`` scaled so that its true peak is ``over_db`` over the ceiling."""
    return (x * np.float32(10 ** ((CEILING + over_db - true_peak_dbtp(x)) / 20))).astype(np.float32)


def white(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Broadband up to Nyquist: the hardest case for a true-peak side-chain."""
    return np.random.default_rng(seed).standard_normal((1, int(RATE * seconds))).astype(np.float32)


def pink(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.fft.rfftfreq(n, 1.0 / RATE)[1:] / 100.0)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)[np.newaxis].astype(np.float32)


def sine(freq: float = 1000.0, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(RATE * seconds)) / RATE)[np.newaxis].astype(
        np.float32)


def raw_limiter(x: np.ndarray, release_ms: float = 80.0) -> np.ndarray:
    """The limiter without the static trim that follows it in the stage."""
    return loudness_module._brickwall(x, RATE, CEILING, release_ms, 5.0)


SIGNALS = {"white": white, "pink": pink, "music": lambda: song(RATE, 4.0),
           "sine 1 kHz": sine, "sine 15 kHz": lambda: sine(15000.0)}


@pytest.mark.parametrize("over_db", [3.0, 8.0, 12.0, 20.0])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_the_ceiling_is_held_without_the_static_trim(name: str, over_db: float) -> None:
    x = drive(SIGNALS[name](), over_db)
    raw = raw_limiter(x)
    # The side-chain sees the same interpolated peaks as the meter, so only the gain's slopes
    # inside a 12-sample interpolation window can add to them: far less than the margin.
    assert true_peak_dbtp(raw) <= CEILING - MARGIN + 0.01
    out = limit_true_peak(x, RATE, ceiling_dbtp=CEILING)
    assert true_peak_dbtp(out) <= CEILING
    # It limits no more than it must: the output is not quieter than the input scaled
    # statically to the ceiling (a brick-wall limiter only ever lowers the gain where needed).
    static = integrated_lufs(x, RATE) - over_db - MARGIN
    assert integrated_lufs(out, RATE) >= static - 0.01


def test_a_signal_under_the_ceiling_passes_unchanged() -> None:
    x = drive(song(RATE, 4.0), -0.2)  # true peak 0.2 dB under the ceiling, 0.1 dB over the limit
    x = x * np.float32(10 ** (-MARGIN / 20)) * np.float32(0.999)  # now just under the limit
    out = limit_true_peak(x, RATE, ceiling_dbtp=CEILING)
    assert np.array_equal(out, x)


@pytest.mark.parametrize("over_db", [3.0, 6.0, 12.0])
def test_a_steady_sine_comes_out_as_a_sine_at_the_limit(over_db: float) -> None:
    x = drive(sine(1000.0, 1.0), over_db)
    out = limit_true_peak(x, RATE, ceiling_dbtp=CEILING)[0].astype(np.float64)
    seg = slice(RATE // 10, -RATE // 10)  # after the attack, before the clip's end
    phase = 2 * np.pi * 1000.0 * np.arange(len(out))[seg] / RATE
    basis = np.stack([np.sin(phase), np.cos(phase)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, out[seg], rcond=None)
    residual = out[seg] - basis @ coef
    # A constant gain leaves a sine a sine: what is left is float32 rounding (~-150 dB).  A
    # gain ripple of 1e-4 (0.001 dB) would already show as sidebands at -86 dB.
    thd_n_db = 10 * np.log10(np.sum(residual**2) / np.sum((basis @ coef) ** 2))
    assert thd_n_db < -100.0
    # ... at the limit: a 1 kHz sine's true peak is its amplitude (the interpolator is flat
    # there within 0.03 dB).
    amplitude_db = 20 * np.log10(np.hypot(*coef))
    assert amplitude_db == pytest.approx(CEILING - MARGIN, abs=0.03)


@pytest.mark.parametrize("release_ms", [20.0, 80.0, 300.0])
def test_the_gain_recovers_no_faster_than_the_release(release_ms: float) -> None:
    # A DC level with a 5 ms burst 12 dB over it: out / in is the gain, sample by sample.
    x = np.full((1, 2 * RATE), 0.25, dtype=np.float32)
    burst = slice(RATE // 10, RATE // 10 + int(0.005 * RATE))
    x[0, burst] = 1.0  # true peak ~0 dBTP: the burst is limited, the DC level is not
    gain = (raw_limiter(x, release_ms)[0] / x[0]).astype(np.float64)
    depth = 1.0 - gain
    after = np.arange(burst.stop, x.shape[-1])
    held = depth[burst.stop - 1]
    assert held > 0.05  # the burst was limited ...
    track = after[depth[after] > 1e-3]  # ... and recovers over float32's resolution
    for step_ms in (1.0, 10.0, 50.0):
        step = int(step_ms * 1e-3 * RATE)
        start = track[track + step <= track[-1]]
        slowest = np.exp(-step / (release_ms * 1e-3 * RATE))
        # The gain's depth shrinks by at most exp(-dt / release) over any dt; the straight
        # lines between the block edges bend it by a relative (1 ms / release)^2 / 8 at most.
        assert np.all(depth[start + step] >= depth[start] * slowest * (1 - 1e-3))
    # ... and it does recover at that rate, within one block (1 ms) of lag.
    t = int(3 * release_ms * 1e-3 * RATE)
    expected = held * np.exp(-(t - 0.002 * RATE) / (release_ms * 1e-3 * RATE))
    assert depth[burst.stop + t] <= expected * 1.001


def test_the_channels_share_one_gain() -> None:
    left = drive(song(RATE, 4.0)[:1], 10.0)
    x = np.concatenate([left, 0.1 * left])  # the right channel never reaches the ceiling alone
    out = limit_true_peak(x, RATE, ceiling_dbtp=CEILING)
    np.testing.assert_allclose(out[1], 0.1 * out[0], rtol=1e-5, atol=1e-9)
    assert true_peak(out[1:]) < 0.1 * 10 ** (CEILING / 20) * 1.001  # limited with the left


@pytest.mark.parametrize("over_db", [2.0, 8.0, 16.0])
@pytest.mark.parametrize("name", ["pink", "music"])
def test_the_stage_model_predicts_the_limiter(name: str, over_db: float) -> None:
    """The loudness stage's model runs the limiter's own gain rule on the same block peaks, so
    its prediction differs only by the ramps between blocks: within the stage's 0.2 LU."""
    x = SIGNALS[name]()
    model = loudness_module._LimiterModel(x, RATE, ceiling_dbtp=CEILING, release_ms=80.0)
    gain_db = CEILING + over_db - true_peak_dbtp(x)
    out = limit_true_peak(x * np.float32(10 ** (gain_db / 20)), RATE, ceiling_dbtp=CEILING)
    assert model.lufs(gain_db) == pytest.approx(integrated_lufs(out, RATE), abs=0.2)
