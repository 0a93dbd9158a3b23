"""Metric sanity: identity, invariance to delay and gain, sensitivity where damage is."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import song, white
from genrestore import metrics
from genrestore.degrade import lowpass

RATE = 44100


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return song(RATE, 6.0)


def test_identity(clean: np.ndarray) -> None:
    m = metrics.full_reference(clean, clean, RATE)
    assert m["lsd"] == pytest.approx(0.0, abs=1e-6)
    assert m["mrstft"] == pytest.approx(0.0, abs=1e-6)
    assert m["si_sdr_db"] > 100.0


@pytest.mark.parametrize("delay", [1, 37, -200])
def test_delay_and_gain_do_not_count(clean: np.ndarray, delay: int) -> None:
    shifted = np.roll(clean, delay, axis=-1) * 10 ** (-6 / 20)
    m = metrics.full_reference(clean, shifted, RATE)
    assert m["lsd"] < 0.05
    assert m["mrstft"] < 0.05
    assert m["si_sdr_db"] > 60.0


def test_lowpass_hurts_above_the_cutoff_only(clean: np.ndarray) -> None:
    damaged = lowpass(clean, RATE, 8500.0)
    m = metrics.full_reference(clean, damaged, RATE, split_hz=8000.0)
    assert m["lsd_high"] > 1.0
    assert m["lsd_low"] < 0.1
    assert m["lsd"] > 0.5


def test_noise_lowers_si_sdr_by_the_right_amount(clean: np.ndarray) -> None:
    noise = white(RATE, 6.0, -40.0, seed=5, channels=2)
    signal_db = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2))
    expected = signal_db - 10 * np.log10(np.mean(noise.astype(np.float64) ** 2))
    assert metrics.si_sdr(clean, clean + noise, RATE) == pytest.approx(expected, abs=0.5)


def test_mono_estimate_of_stereo_reference_compares_downmixes(clean: np.ndarray) -> None:
    mono = clean.mean(axis=0, keepdims=True)
    assert metrics.lsd(clean, mono, RATE) < 1e-3


def test_no_reference_figures(clean: np.ndarray) -> None:
    figures = metrics.no_reference(clean, RATE)
    assert set(figures) >= {"integrated_lufs", "loudness_range_lu", "true_peak_dbtp",
                            "clipped_fraction", "bandwidth_hz", "noise_floor_dbfs",
                            "stereo_width_db", "interchannel_correlation"}
    assert figures["clipped_fraction"] == 0.0
    clipped = np.clip(clean * 4.0, -1.0, 1.0)
    assert metrics.no_reference(clipped, RATE)["clipped_fraction"] > 0.01
    narrow = metrics.no_reference(lowpass(clean, RATE, 6000.0), RATE)["bandwidth_hz"]
    assert 5000.0 < narrow < 9000.0


@pytest.mark.skipif(not metrics.visqol_available(), reason="visqol-python not installed")
@pytest.mark.slow
def test_visqol_orders_damage(clean: np.ndarray) -> None:
    short = clean[:, : 4 * RATE]
    good = metrics.visqol_moslqo(short, short, RATE)
    bad = metrics.visqol_moslqo(short, lowpass(short, RATE, 4000.0), RATE)
    assert good > 4.0
    assert bad < good - 1.0


def test_max_hz_judges_only_the_references_band(clean: np.ndarray) -> None:
    reference = lowpass(clean, RATE, 15000.0)
    hiss = white(RATE, 6.0, -50.0, seed=3, channels=2)
    above = hiss - lowpass(hiss, RATE, 17000.0)  # new content only above 17 kHz
    extended = reference + above
    assert metrics.full_reference(reference, extended, RATE)["lsd_high"] > 0.5
    judged = metrics.full_reference(reference, extended, RATE, max_hz=15000.0)
    assert judged["lsd_high"] < 0.1
    assert judged["si_sdr_db"] > 40.0
