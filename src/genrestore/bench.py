"""Benchmarks whose output the README quotes: ``genrestore bench speed``."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyloudnorm

from genrestore.analysis import integrated_lufs
from genrestore.degrade import degrade
from genrestore.pipeline import DEFAULT_PRESET, load_preset, run_pipeline
from genrestore.synth import render_song


@dataclass(frozen=True)
class SpeedResult:
    """Median timings of one preset on one synthetic MusicGen-like clip."""

    preset: str
    clip_seconds: float
    input_rate_hz: int
    repeats: int
    total_s: float
    steps_s: dict[str, float]
    loudness_own_s: float
    loudness_pyloudnorm_s: float
    loudness_difference_lu: float

    @property
    def realtime_factor(self) -> float:
        return self.clip_seconds / self.total_s


def speed_benchmark(
    *, seconds: float = 30.0, preset: str = DEFAULT_PRESET, repeats: int = 5, seed: int = 0
) -> SpeedResult:
    """Time ``preset`` on a ``seconds``-long clip degraded by the ``demo`` chain (mono, 32 kHz).

    Everything genrestore runs is single-threaded (numpy/scipy FFTs, pedalboard, soxr),
    so this is a one-core figure.  Reports the median over ``repeats`` runs, per step, and
    the time of genrestore's BS.1770 meter against pyloudnorm's on the same clip.
    """
    clean = render_song(44100, seconds, seed=seed)
    clip, rate = degrade(clean, 44100, "demo", seed=seed)
    chosen = load_preset(preset)
    run_pipeline(clip, rate, chosen)  # warm-up: imports, FFT plans
    totals: list[float] = []
    steps: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        start = time.perf_counter()
        result = run_pipeline(clip, rate, chosen)
        totals.append(time.perf_counter() - start)
        for label, spent in result.timings_s:
            steps[label].append(spent)
    output = result.audio
    own, ref = [], []
    meter = pyloudnorm.Meter(result.sample_rate)
    for _ in range(repeats):
        start = time.perf_counter()
        mine = integrated_lufs(output, result.sample_rate)
        own.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = meter.integrated_loudness(np.asarray(output.T, dtype=np.float64))
        ref.append(time.perf_counter() - start)
    return SpeedResult(
        preset=chosen.name,
        clip_seconds=seconds,
        input_rate_hz=rate,
        repeats=repeats,
        total_s=statistics.median(totals),
        steps_s={k: statistics.median(v) for k, v in steps.items()},
        loudness_own_s=statistics.median(own),
        loudness_pyloudnorm_s=statistics.median(ref),
        loudness_difference_lu=abs(mine - theirs),
    )


def format_speed(result: SpeedResult) -> str:
    """A Markdown table of a :class:`SpeedResult`."""
    lines = [
        f"preset `{result.preset}`, {result.clip_seconds:g} s mono clip at "
        f"{result.input_rate_hz} Hz -> 44100 Hz, median of {result.repeats} runs, one core",
        "",
        "| step | ms |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v * 1000:.1f} |" for k, v in result.steps_s.items()]
    lines += [
        f"| **total** | **{result.total_s * 1000:.1f}** |",
        "",
        f"real-time factor: **{result.realtime_factor:.0f}x**",
        f"BS.1770 meter on the output: genrestore {result.loudness_own_s * 1000:.1f} ms, "
        f"pyloudnorm {result.loudness_pyloudnorm_s * 1000:.1f} ms, "
        f"difference {result.loudness_difference_lu:.3f} LU",
    ]
    return "\n".join(lines)
