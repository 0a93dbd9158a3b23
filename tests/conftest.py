"""Synthetic test signals, cached: tones, noise, a rendered song."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from genrestore.degrade import DEGRADATIONS, degrade
from genrestore.synth import render_song


def sine(freq_hz: float, rate: int, seconds: float, amplitude: float = 0.5,
         phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase))[np.newaxis].astype(np.float32)


def chord(rate: int, seconds: float) -> np.ndarray:
    """Three sustained sines (a test 'signal' with sparse spectrum)."""
    return sine(440, rate, seconds, 0.2) + sine(660, rate, seconds, 0.15) + sine(
        1320, rate, seconds, 0.1)


def white(rate: int, seconds: float, level_dbfs: float, seed: int = 0, channels: int = 1
          ) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, int(rate * seconds))) * 10 ** (level_dbfs / 20)
            ).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _song(rate: int, seconds: float) -> np.ndarray:
    return render_song(rate, seconds, seed=3)


def song(rate: int = 44100, seconds: float = 6.0) -> np.ndarray:
    return _song(rate, seconds).copy()


def generator_like(clean: np.ndarray, rate: int, *, cutoff_hz: float = 10000.0, seed: int = 0
                   ) -> tuple[np.ndarray, int]:
    """The ``demo`` degradation (mono, 32 kHz, low-pass, -60 dBFS hiss, +2 dBFS peak)."""
    chain = DEGRADATIONS["demo"].replace(cutoff_hz=(cutoff_hz, cutoff_hz))
    return degrade(clean, rate, chain, seed=seed)


def band_power_db(audio: np.ndarray, rate: int, lo_hz: float, hi_hz: float) -> float:
    spec = np.abs(np.fft.rfft(np.asarray(audio, dtype=np.float64), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(np.shape(audio)[-1], 1 / rate)
    band = (freqs >= lo_hz) & (freqs < hi_hz)
    return float(10 * np.log10(spec[..., band].sum() + 1e-30))


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    ref = np.asarray(reference, dtype=np.float64)
    err = np.asarray(estimate, dtype=np.float64) - ref
    return float(10 * np.log10(np.sum(ref**2) / np.sum(err**2)))


@pytest.fixture
def song_44k() -> np.ndarray:
    return song(44100, 6.0)


# --- CI: a skipped test is a failure -------------------------------------------------------
#: Set by .ci/run: every test CI expects to run must run (an extra or the browser missing
#: would otherwise skip quietly).  `make test` on a developer machine may skip.
NO_SKIPS_ENV = "GENRESTORE_NO_SKIPS"
_skipped: list[str] = []


def _note_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)  # a module-level importorskip skips the whole file at collection


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get(NO_SKIPS_ENV) and _skipped:
        terminalreporter.section(f"{NO_SKIPS_ENV} is set: skipped tests fail the run", red=True)
        for line in _skipped:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(NO_SKIPS_ENV) and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
