"""One array layout at every public entry point (issue 9, review C2 and R2).

A 1-D array is mono everywhere: every stage function, ``stft``, ``run_pipeline`` and
``restore`` give the same numbers for ``x`` and ``x[np.newaxis]``; stage functions return
``(channels, samples)``; ``restore`` returns the layout it was given.  Every public stage
function checks its parameters with its stage class's rules.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import genrestore
from conftest import generator_like, song
from genrestore.errors import ParameterError
from genrestore.pipeline import load_preset, run_pipeline
from genrestore.spectral import stft
from genrestore.stages import (
    compress,
    declip,
    denoise,
    dither,
    extend_bandwidth,
    limit_true_peak,
    normalize_loudness,
    resample,
    shape_spectrum,
    widen,
)

RATE = 32000


def _clip() -> np.ndarray:
    """A 1-D, 1 s, band-limited, noisy, clipped mono clip: every stage has work to do."""
    x, rate = generator_like(song(44100, 2.0), 44100, cutoff_hz=9000.0, seed=7)
    assert rate == RATE
    return np.clip(x[0, :RATE] * 1.5, -0.9, 0.9)


def _first(out: Any) -> np.ndarray:
    return out[0] if isinstance(out, tuple) else out


STAGE_FUNCTIONS: dict[str, Callable[[np.ndarray], Any]] = {
    "declip": lambda x: declip(x),
    "denoise": lambda x: denoise(x, RATE, strength=0.8),
    "resample": lambda x: resample(x, RATE, 44100),
    "extend_bandwidth": lambda x: extend_bandwidth(x, RATE, cutoff_hz=9000.0),
    "compress": lambda x: compress(x, RATE, threshold_db=-30.0, ratio=2.0),
    "shape_spectrum": lambda x: shape_spectrum(x, RATE, highpass_hz=40.0, tilt_db=2.0),
    "normalize_loudness": lambda x: normalize_loudness(x, RATE, target_lufs=-16.0),
    "limit_true_peak": lambda x: limit_true_peak(x * 4.0, RATE),
    "widen": lambda x: widen(x, RATE, correlation=0.7),
    "dither": lambda x: dither(x, bits=16, shape="hp_tpdf", seed=3),
}


@pytest.mark.parametrize("name", sorted(STAGE_FUNCTIONS))
def test_stage_functions_take_1d_as_mono(name: str) -> None:
    x = _clip()
    one_d = _first(STAGE_FUNCTIONS[name](x))
    two_d = _first(STAGE_FUNCTIONS[name](x[np.newaxis]))
    assert one_d.ndim == 2, "stage functions return (channels, samples)"
    assert one_d.shape == two_d.shape
    assert one_d.shape[0] == (2 if name == "widen" else 1)
    np.testing.assert_array_equal(one_d, two_d)
    assert np.array_equal(x, _clip()), "the input array is not altered"


def test_stft_takes_1d_as_one_channel() -> None:
    x = _clip()
    spec = stft(x, RATE)
    assert spec.data.shape[0] == 1
    np.testing.assert_array_equal(spec.data, stft(x[np.newaxis], RATE).data)


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 100), np.float32), np.zeros((3, 32000), np.float32),
                                 np.zeros(32000, np.int16)])
def test_other_layouts_are_parameter_errors(bad: np.ndarray) -> None:
    with pytest.raises(ParameterError):
        denoise(bad, RATE)
    with pytest.raises(ParameterError):
        stft(bad, RATE)
    with pytest.raises(ParameterError):
        genrestore.restore(bad, RATE)


@pytest.mark.parametrize(("call", "message"), [
    (lambda x: denoise(x, RATE, strength=3.0), "denoise.strength"),
    (lambda x: denoise(x, RATE, window_s=0.01), "denoise.window_s"),
    (lambda x: extend_bandwidth(x, RATE, cutoff_hz=9000.0, strength=-1.0), "bwe.strength"),
    (lambda x: extend_bandwidth(x, RATE, cutoff_hz=0.0), "cutoff_hz"),
    (lambda x: declip(x, order=1000), "declip.order"),
    (lambda x: declip(x, block=100), "declip.block"),
    (lambda x: compress(x, RATE, threshold_db=-20.0, ratio=0.5), "dynamics.ratio"),
    (lambda x: compress(x, RATE, threshold_db=-20.0, attack_ms=0.0), "attack_ms"),
    (lambda x: shape_spectrum(x, RATE, highpass_hz=900.0), "eq.highpass_hz"),
    (lambda x: shape_spectrum(x, RATE, tilt_db=30.0), "eq.tilt_db"),
    (lambda x: resample(x, RATE, 1), "rate 1 Hz"),
    (lambda x: resample(x, RATE, 44100, quality="best"), "resample.quality"),
    (lambda x: widen(x, RATE, correlation=1.5), "stereo.correlation"),
    (lambda x: dither(x, bits=12), "16 or 24"),
    (lambda x: normalize_loudness(x, RATE, target_lufs=0.0), "loudness.target_lufs"),
    (lambda x: normalize_loudness(x, RATE, max_limiting_db=-3.0), "loudness.max_limiting_db"),
    (lambda x: limit_true_peak(x, RATE, ceiling_dbtp=3.0), "loudness.ceiling_dbtp"),
    (lambda x: limit_true_peak(x, RATE, release_ms=0.0), "loudness.release_ms"),
])
def test_stage_functions_validate_like_their_stage_class(call: Callable[[np.ndarray], Any],
                                                         message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        call(_clip())


def test_restore_returns_the_layout_it_was_given() -> None:
    x = _clip()
    one_d, rate = genrestore.restore(x, RATE)
    two_d, _ = genrestore.restore(x[np.newaxis], RATE)
    assert rate == 44100
    assert one_d.shape == (44100,)
    assert two_d.shape == (1, 44100)
    np.testing.assert_array_equal(one_d, two_d[0])
    widened, _ = genrestore.restore(x, RATE, stereo={"enabled": True})
    assert widened.shape == (2, 44100), "a mono clip made stereo cannot stay 1-D"


def test_run_pipeline_and_guard_see_the_validated_array() -> None:
    x = _clip()
    preset = load_preset("auto")
    one_d = run_pipeline(x, RATE, preset)
    two_d = run_pipeline(x[np.newaxis], RATE, preset)
    np.testing.assert_array_equal(one_d.audio, two_d.audio)
    assert one_d.reports == two_d.reports


def _peak_bytes(audio: np.ndarray) -> int:
    tracemalloc.start()
    try:
        genrestore.restore(audio, RATE)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_1d_clip_costs_no_more_memory_than_the_2d_clip() -> None:
    # Review C2: a 1-D clip was taken as n channels (an n x n spectrogram: 774 MB for 0.5 s).
    x = np.tile(_clip(), 10)  # 10 s
    assert _peak_bytes(x) < 2 * _peak_bytes(x[np.newaxis])
