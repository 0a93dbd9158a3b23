"""The degradation simulator: each named chain does what its description says."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import band_power_db, snr_db, song
from genrestore import analysis
from genrestore.degrade import DEGRADATIONS, codec_roundtrip, degrade, noise
from genrestore.errors import ParameterError

RATE = 44100


def _needs_av() -> None:
    pytest.importorskip("av")


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return song(RATE, 6.0)


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_every_chain_outputs_32k_and_is_seeded(clean: np.ndarray, name: str) -> None:
    if DEGRADATIONS[name].codec:
        _needs_av()
    a, rate = degrade(clean, RATE, name, seed=1)
    b, _ = degrade(clean, RATE, name, seed=1)
    assert rate == 32000
    assert a.dtype == np.float32
    assert np.all(np.isfinite(a))
    assert a.shape[-1] == pytest.approx(clean.shape[-1] * 32000 / RATE, abs=2)
    assert a.shape[0] == (1 if DEGRADATIONS[name].mono else 2)
    np.testing.assert_array_equal(a, b)


def test_musicgen_like(clean: np.ndarray) -> None:
    _needs_av()
    peaks, cutoffs = [], []
    for seed in range(3):
        x, rate = degrade(clean, RATE, "musicgen_like", seed=seed)
        peaks.append(analysis.sample_peak_dbfs(x))
        cutoffs.append(analysis.estimate_cutoff_hz(x, rate))
        assert analysis.noise_floor_dbfs(x, rate) == pytest.approx(-60.0, abs=3.0)
    assert all(-3.01 <= p <= 3.01 for p in peaks)
    assert len(set(np.round(peaks, 2))) == 3
    assert all(7500.0 <= c <= 12500.0 for c in cutoffs)


def test_noisy_has_25_db_snr(clean: np.ndarray) -> None:
    x, _rate = degrade(clean, RATE, "noisy", seed=0)
    reference, _ = degrade(clean, RATE, DEGRADATIONS["noisy"].replace(snr_db=None), seed=0)
    assert snr_db(reference, x) == pytest.approx(25.0, abs=0.1)


def test_clipped_flattens_two_to_three_percent(clean: np.ndarray) -> None:
    x, _ = degrade(clean, RATE, "clipped", seed=0)
    runs, samples = analysis.clipped_runs(x)
    assert 0.02 <= samples / x.size <= 0.03
    assert runs > 50


def test_mp3_roundtrip_keeps_timing_and_cuts_the_top() -> None:
    _needs_av()
    x = song(32000, 4.0)
    y = codec_roundtrip(x, 32000, "mp3", 32.0)
    assert y.shape == x.shape
    assert snr_db(x, y) > 3.0  # aligned: no encoder delay left
    assert band_power_db(y, 32000, 10000, 16000) < band_power_db(x, 32000, 10000, 16000) - 20
    o = codec_roundtrip(x, 32000, "opus", 64.0)
    assert o.shape == x.shape
    assert snr_db(x, o) > 3.0


def test_pink_noise_falls_3_db_per_octave() -> None:
    n = noise((1, 32000 * 8), level_dbfs=-20.0, colour="pink", seed=2)
    assert 20 * np.log10(np.sqrt(np.mean(n.astype(np.float64) ** 2))) == pytest.approx(-20.0, abs=0.01)
    low = band_power_db(n, 32000, 500, 1000)
    high = band_power_db(n, 32000, 4000, 8000)
    assert low - high == pytest.approx(0.0, abs=1.0)  # equal power per octave


def test_unknown_names_are_parameter_errors(clean: np.ndarray) -> None:
    with pytest.raises(ParameterError, match="unknown degradation"):
        degrade(clean, RATE, "vinyl")
    with pytest.raises(ParameterError):
        codec_roundtrip(clean, RATE, "flac", 64)
