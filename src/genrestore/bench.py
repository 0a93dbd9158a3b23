"""Benchmarks whose output the README quotes: ``genrestore bench --speed``, ``--clean DIR``
(full-reference quality on degraded clean music), ``--real DIR`` (no-reference figures),
``--declip DIR``, ``--match DIR`` (reference matching) and ``--memory`` (peak memory and time
of long files)."""

from __future__ import annotations

import csv
import logging
import statistics
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf

from genrestore.analysis import effective_bandwidth_hz, integrated_lufs
from genrestore.degrade import degrade, get_degradation
from genrestore.errors import FILE_ERRORS, ParameterError
from genrestore.io import read_audio
from genrestore.metrics import full_reference, no_reference
from genrestore.parallel import worker_pool
from genrestore.pipeline import DEFAULT_PRESET, load_preset, run_pipeline
from genrestore.stages import StageReport
from genrestore.stages.match import (
    ReferenceProfile,
    band_levels_db,
    load_reference,
    match_reference,
    matched_bands,
    spectrum_distance_db,
    with_reference,
)
from genrestore.stages.resample import resample
from genrestore.synth import render_song

log = logging.getLogger(__name__)


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
    #: Whole-process wall time (median) of ``genrestore restore`` on the clip written to a
    #: file, and of ffmpeg's stock chain (:data:`FFMPEG_CHAIN`) on it, ``None`` without ffmpeg.
    process_s: float | None = None
    ffmpeg_s: float | None = None
    channels: int = 1

    @property
    def realtime_factor(self) -> float:
        return self.clip_seconds / self.total_s


#: ffmpeg's stock chain for the same job (declip, denoise, soxr resampling to 44.1 kHz,
#: EBU R128 loudness), the reference line of ``genrestore bench --speed``.
FFMPEG_CHAIN = "adeclip,afftdn,aresample=44100:resampler=soxr,loudnorm"


def compile_package() -> None:
    """Write genrestore's bytecode (``__pycache__``) where it is missing, as ``pip install``
    does for a wheel.  An editable install (``make``'s) has none until a first import writes
    it, and with ``PYTHONDONTWRITEBYTECODE`` set none is ever written: every process would
    then compile the package's source again (0.13 s a process on the development machine),
    which no installed copy pays."""
    import compileall

    import genrestore

    folder = Path(genrestore.__file__).parent
    if not compileall.compile_dir(folder, quiet=1):
        log.warning("could not write the bytecode of %s: the whole-process times include "
                    "compiling it", folder)


def process_times(clip: np.ndarray, rate: int, preset: str, repeats: int
                  ) -> tuple[float, float | None]:
    """Median whole-process wall times of ``genrestore restore`` (start-up, reading, 24-bit
    writing included) and of ffmpeg's :data:`FFMPEG_CHAIN` (``None`` when ``ffmpeg`` is not
    on the PATH) on ``clip`` written to a WAV file, run in turn so that drift hits both.

    genrestore's bytecode is compiled first (:func:`compile_package`), as an installed
    package has it: the timed processes then start as a user's do."""
    import shutil
    import subprocess
    import sys
    import tempfile

    import soundfile as sf

    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "clip.wav"
        sf.write(source, np.atleast_2d(clip).T, rate, subtype="FLOAT")
        commands = [[sys.executable, "-m", "genrestore", "restore", str(source), "-o",
                     str(Path(tmp) / "genrestore.wav"), "--preset", preset, "--overwrite", "-q"]]
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is not None:
            commands.append([ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                             "-i", str(source), "-af", FFMPEG_CHAIN, "-ar", "44100",
                             "-c:a", "pcm_s24le", str(Path(tmp) / "ffmpeg.wav")])
        times: list[list[float]] = [[] for _ in commands]
        for run in range(repeats + 1):  # the first round warms the file cache, not counted
            for command, spent in zip(commands, times, strict=True):
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                if run:
                    spent.append(time.perf_counter() - start)
    medians = [statistics.median(t) for t in times]
    return medians[0], (medians[1] if ffmpeg is not None else None)


def speed_benchmark(
    *, seconds: float = 30.0, preset: str = DEFAULT_PRESET, repeats: int = 5, seed: int = 0,
    whole_process: bool = True, channels: int = 1,
) -> SpeedResult:
    """Time ``preset`` on a ``seconds``-long clip degraded by the ``demo`` chain (32 kHz, 10 kHz
    low-pass, hiss at -60 dBFS, +2 dBFS peaks), mono, or with ``channels=2`` the same chain
    keeping the synthetic song's stereo (issue 11's second clip: stereo with light hiss).

    One process; BLAS runs on one thread (the restore entry points pin it, for identical
    bytes everywhere: :func:`genrestore.parallel.one_blas_thread`), numpy's FFT is
    single-threaded.  Reports the median over
    ``repeats`` runs, per step, and
    the time of genrestore's BS.1770 meter against pyloudnorm's on the same clip.  With
    ``whole_process``, also the whole-process times of :func:`process_times`.
    """
    if channels not in (1, 2):
        raise ParameterError(f"speed benchmark: channels must be 1 or 2, not {channels}")
    clean = render_song(44100, seconds, seed=seed)
    chain = get_degradation("demo")
    if channels == 2:
        chain = chain.replace(mono=False)
    clip, rate = degrade(clean, 44100, chain, seed=seed)
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
        channels=channels,
        clip_seconds=seconds,
        input_rate_hz=rate,
        repeats=repeats,
        total_s=statistics.median(totals),
        steps_s={k: statistics.median(v) for k, v in steps.items()},
        loudness_own_s=statistics.median(own),
        loudness_pyloudnorm_s=statistics.median(ref),
        loudness_difference_lu=abs(mine - theirs),
        **dict(zip(("process_s", "ffmpeg_s"),
                   process_times(clip, rate, preset, repeats) if whole_process else (None, None),
                   strict=True)),
    )


def format_speed(result: SpeedResult) -> str:
    """A Markdown table of a :class:`SpeedResult`."""
    lines = [
        f"preset `{result.preset}`, {result.clip_seconds:g} s "
        f"{'stereo' if result.channels == 2 else 'mono'} clip at "
        f"{result.input_rate_hz} Hz -> 44100 Hz, median of {result.repeats} runs, one process",
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
    if result.process_s is not None:
        line = (f"whole process on the same clip as a file (start-up, reading and writing "
                f"included), median of {result.repeats} runs: `genrestore restore` "
                f"{result.process_s:.2f} s")
        if result.ffmpeg_s is None:
            line += "; ffmpeg is not on the PATH, so no reference line"
        else:
            ratio = result.process_s / result.ffmpeg_s
            line += (f", ffmpeg's stock chain (`-af {FFMPEG_CHAIN}`, 24-bit) "
                     f"{result.ffmpeg_s:.2f} s: genrestore is "
                     + (f"{ratio:.1f}x slower" if ratio > 1 else f"{1 / ratio:.1f}x faster"))
        lines.append(line)
    return "\n".join(lines)


# --- Quality: full reference (clean music, degraded, restored) and no reference -------------

BENCH_RATES_HZ = (44100, 48000)
FULL_REFERENCE_KEYS = ("lsd", "lsd_low", "lsd_high", "mrstft", "si_sdr_db", "visqol_moslqo")
#: "Never worse": a clip is listed when a preset's ViSQOL is this much below ``none``'s.
NEVER_WORSE_MOS = 0.05


@dataclass(frozen=True)
class QualityRow:
    """One clip x degradation x preset of the full-reference benchmark."""

    clip: str
    degradation: str
    preset: str
    metrics: dict[str, float]
    realtime_factor: float
    acted: str  # the stages that acted, comma-separated


def excerpt(audio: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """The ``seconds`` that start a third of the way in (past most intros); the whole clip
    when it is shorter.  Deterministic, so every run measures the same music."""
    n = round(seconds * sample_rate)
    total = audio.shape[-1]
    if total <= n:
        return audio
    start = min(total // 3, total - n)
    return audio[..., start : start + n]


def _seed(*parts: str) -> int:
    return zlib.crc32(":".join(parts).encode("utf-8"))


def _acted(reports: tuple[StageReport, ...]) -> str:
    return ",".join(r.stage for r in reports if r.acted and r.stage != "resample")


def quality_clip(
    clean: np.ndarray,
    sample_rate: int,
    *,
    name: str,
    degradations: Sequence[str],
    presets: Sequence[str],
    visqol: bool = False,
    split_hz: float = 8000.0,
) -> list[QualityRow]:
    """Degrade ``clean`` with each named chain, restore with each preset, compare with the
    clean original.  The reference is the clean clip at 44.1 or 48 kHz (resampled to
    44.1 kHz from any other rate); restorations are made at that rate.  A reference that is
    itself band-limited (Ogg Vorbis stops near 16 kHz) is judged only below its own
    bandwidth (:func:`~genrestore.analysis.effective_bandwidth_hz`, the 60 dB rule): content
    the reference does not have can be neither right nor wrong."""
    ref_rate = sample_rate if sample_rate in BENCH_RATES_HZ else 44100
    reference = clean if ref_rate == sample_rate else resample(clean, sample_rate, ref_rate)
    band = effective_bandwidth_hz(reference, ref_rate)
    loaded = {p: load_preset(p) for p in presets}
    rows = []
    for degradation in degradations:
        degraded, rate = degrade(clean, sample_rate, degradation, seed=_seed(name, degradation))
        for preset_name, preset in loaded.items():
            start = time.perf_counter()
            result = run_pipeline(degraded, rate, preset, output_rate_hz=ref_rate)
            spent = time.perf_counter() - start
            figures = full_reference(reference, result.audio, ref_rate, split_hz=split_hz,
                                     visqol=visqol, max_hz=max(band, split_hz + 2000.0))
            figures["reference_band_hz"] = band
            rows.append(QualityRow(name, degradation, preset_name, figures,
                                   degraded.shape[-1] / rate / spent, _acted(result.reports)))
    return rows


def _quality_job(args: tuple[Path, str, float, tuple[str, ...], tuple[str, ...], bool]
                 ) -> list[QualityRow] | str:
    path, name, seconds, degradations, presets, visqol = args
    try:
        audio, rate = read_audio(path)
        clip = excerpt(audio, rate, seconds)
        return quality_clip(clip, rate, name=name, degradations=degradations, presets=presets,
                            visqol=visqol)
    except FILE_ERRORS as exc:
        return f"{path}: {exc}"


def quality_benchmark(
    clean_files: Sequence[tuple[Path, str]],
    *,
    degradations: Sequence[str],
    presets: Sequence[str],
    seconds: float = 10.0,
    visqol: bool = False,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[QualityRow], list[str]]:
    """Run :func:`quality_clip` on an excerpt of every ``(path, name)``; returns the rows and
    one error line per file that could not be measured."""
    for d in degradations:
        get_degradation(d)
    for p in presets:
        load_preset(p)
    tasks = [(path, name, seconds, tuple(degradations), tuple(presets), visqol)
             for path, name in clean_files]
    rows: list[QualityRow] = []
    errors: list[str] = []
    def collect(task: tuple, outcome: list[QualityRow] | str) -> None:
        if isinstance(outcome, str):
            errors.append(outcome)
        else:
            rows.extend(outcome)
        if progress is not None:
            progress(task[1])

    if jobs > 1 and len(tasks) > 1:
        with worker_pool(jobs) as pool:
            for task, outcome in zip(tasks, pool.map(_quality_job, tasks), strict=True):
                collect(task, outcome)
    else:
        for task in tasks:
            collect(task, _quality_job(task))
    return rows, errors


def write_quality_csv(rows: Sequence[QualityRow], path: Path) -> None:
    """One row per clip x degradation x preset."""
    keys = [k for k in (*FULL_REFERENCE_KEYS, "reference_band_hz")
            if any(k in r.metrics for r in rows)]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip", "degradation", "preset", *keys, "realtime_factor", "acted"])
        for r in rows:
            writer.writerow([r.clip, r.degradation, r.preset,
                             *(f"{r.metrics[k]:.4f}" for k in keys),
                             f"{r.realtime_factor:.1f}", r.acted])


def quality_means(rows: Sequence[QualityRow]) -> dict[tuple[str, str], dict[str, float]]:
    """Mean of every metric (and the real-time factor) per ``(degradation, preset)``."""
    groups: dict[tuple[str, str], list[QualityRow]] = defaultdict(list)
    for r in rows:
        groups[(r.degradation, r.preset)].append(r)
    means = {}
    for key, members in groups.items():
        keys = [k for k in FULL_REFERENCE_KEYS if k in members[0].metrics]
        means[key] = {k: float(np.mean([m.metrics[k] for m in members])) for k in keys}
        means[key]["realtime_factor"] = float(np.median([m.realtime_factor for m in members]))
        means[key]["clips"] = float(len(members))
    return means


def worse_than_none(rows: Sequence[QualityRow], *, baseline: str = "none",
                    metric: str = "visqol_moslqo", margin: float = NEVER_WORSE_MOS
                    ) -> list[tuple[QualityRow, float]]:
    """Rows whose ``metric`` is more than ``margin`` worse than the ``baseline`` preset's on
    the same clip and degradation (higher is better for ViSQOL and SI-SDR, lower for the
    distances).  Returns ``(row, difference)`` pairs, worst first."""
    higher_better = metric in ("visqol_moslqo", "si_sdr_db")
    base = {(r.clip, r.degradation): r.metrics.get(metric) for r in rows if r.preset == baseline}
    found = []
    for r in rows:
        ref = base.get((r.clip, r.degradation))
        if r.preset == baseline or ref is None or metric not in r.metrics:
            continue
        diff = r.metrics[metric] - ref if higher_better else ref - r.metrics[metric]
        if diff < -margin:
            found.append((r, diff))
    return sorted(found, key=lambda pair: pair[1])


def format_quality(rows: Sequence[QualityRow], *, baseline: str = "none") -> str:
    """Markdown: means per degradation x preset, and the clips where a preset is worse than
    ``baseline`` on ViSQOL (or, without ViSQOL, on LSD)."""
    means = quality_means(rows)
    keys = [k for k in FULL_REFERENCE_KEYS if any(k in m for m in means.values())]
    labels = {"lsd": "LSD", "lsd_low": "LSD <8k", "lsd_high": "LSD >8k", "mrstft": "MR-STFT",
              "si_sdr_db": "SI-SDR dB", "visqol_moslqo": "ViSQOL"}
    arrows = {"si_sdr_db": "↑", "visqol_moslqo": "↑"}
    head = [f"{labels[k]} {arrows.get(k, '↓')}" for k in keys]
    lines = ["| degradation | preset | clips | " + " | ".join(head) + " | x real time |",
             "|---|---|---:|" + "---:|" * (len(keys) + 1)]
    for (degradation, preset), m in means.items():
        cells = " | ".join(f"{m[k]:.3f}" if k != "si_sdr_db" else f"{m[k]:.1f}" for k in keys)
        lines.append(f"| {degradation} | {preset} | {int(m['clips'])} | {cells} | "
                     f"{m['realtime_factor']:.0f} |")
    metric = "visqol_moslqo" if "visqol_moslqo" in keys else "lsd"
    margin = NEVER_WORSE_MOS if metric == "visqol_moslqo" else 0.0
    worse = worse_than_none(rows, baseline=baseline, metric=metric, margin=margin)
    lines += ["", f"Never worse ({metric}, margin {margin:g}, against `{baseline}`): "
              + (f"**{len(worse)} case(s) worse**" if worse else "no clip is worse")]
    for r, diff in worse:
        lines.append(f"- {r.clip} / {r.degradation} / {r.preset}: {diff:+.3f}")
    return "\n".join(lines)


@dataclass(frozen=True)
class RealRow:
    """No-reference figures of one real clip before and after one preset."""

    clip: str
    preset: str
    before: dict[str, float]
    after: dict[str, float]
    acted: str
    realtime_factor: float


def real_benchmark(files: Sequence[tuple[Path, str]], *, presets: Sequence[str],
                   progress: Callable[[str], None] | None = None
                   ) -> tuple[list[RealRow], list[str]]:
    """Restore every file with every preset; no-reference figures before and after."""
    loaded = {p: load_preset(p) for p in presets}
    rows, errors = [], []
    for path, name in files:
        try:
            audio, rate = read_audio(path)
            before = no_reference(audio, rate)
            for preset_name, preset in loaded.items():
                start = time.perf_counter()
                result = run_pipeline(audio, rate, preset)
                spent = time.perf_counter() - start
                rows.append(RealRow(name, preset_name, before,
                                    no_reference(result.audio, result.sample_rate),
                                    _acted(result.reports), audio.shape[-1] / rate / spent))
        except FILE_ERRORS as exc:
            errors.append(f"{path}: {exc}")
        if progress is not None:
            progress(name)
    return rows, errors


REAL_KEYS = ("integrated_lufs", "true_peak_dbtp", "bandwidth_hz", "noise_floor_dbfs",
             "clipped_fraction", "loudness_range_lu")


def write_real_csv(rows: Sequence[RealRow], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip", "preset", *(f"{k}_before" for k in REAL_KEYS),
                         *(f"{k}_after" for k in REAL_KEYS), "realtime_factor", "acted"])
        for r in rows:
            writer.writerow([r.clip, r.preset, *(f"{r.before[k]:.4g}" for k in REAL_KEYS),
                             *(f"{r.after[k]:.4g}" for k in REAL_KEYS),
                             f"{r.realtime_factor:.1f}", r.acted])


def format_real(rows: Sequence[RealRow]) -> str:
    """Markdown: per preset, medians before/after and how many clips end off target."""
    lines = ["| preset | clips | LUFS before -> after (median) | |LUFS - median| max | "
             "true peak max dBTP | bandwidth kHz (median) | noise floor dBFS (median) | "
             "clipped % max | x real time |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    by_preset: dict[str, list[RealRow]] = defaultdict(list)
    for r in rows:
        by_preset[r.preset].append(r)
    for preset, members in by_preset.items():
        def med(side: str, key: str, members: list[RealRow] = members) -> float:
            return float(np.median([getattr(m, side)[key] for m in members]))
        after_lufs = np.array([m.after["integrated_lufs"] for m in members])
        spread = float(np.max(np.abs(after_lufs - np.median(after_lufs))))
        lines.append(
            f"| {preset} | {len(members)} | {med('before', 'integrated_lufs'):.1f} -> "
            f"{med('after', 'integrated_lufs'):.1f} | {spread:.1f} | "
            f"{max(m.after['true_peak_dbtp'] for m in members):+.2f} | "
            f"{med('before', 'bandwidth_hz') / 1000:.1f} -> {med('after', 'bandwidth_hz') / 1000:.1f} | "
            f"{med('before', 'noise_floor_dbfs'):.1f} -> {med('after', 'noise_floor_dbfs'):.1f} | "
            f"{100 * max(m.after['clipped_fraction'] for m in members):.2f} | "
            f"{np.median([m.realtime_factor for m in members]):.0f} |")
    return "\n".join(lines)


# --- Declipping: SNR against the unclipped original ---------------------------------------


@dataclass(frozen=True)
class DeclipRow:
    """One clip clipped at ``fraction`` of its samples, before and after :func:`declip`."""

    clip: str
    fraction: float
    snr_clipped_db: float
    snr_declipped_db: float
    runs_fixed: int

    @property
    def gain_db(self) -> float:
        return self.snr_declipped_db - self.snr_clipped_db


def _snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    ref = np.asarray(reference, dtype=np.float64)
    error = np.asarray(estimate, dtype=np.float64) - ref
    return float(10.0 * np.log10(np.sum(ref * ref) / max(float(np.sum(error * error)), 1e-30)))


def declip_benchmark(files: Sequence[tuple[Path, str]], *, fractions: Sequence[float] = (0.02, 0.03),
                     seconds: float = 10.0) -> tuple[list[DeclipRow], list[str]]:
    """Hard-clip an excerpt of every file at the level that flattens each ``fraction`` of
    its samples (no gain change afterwards) and measure the SNR against the unclipped
    excerpt before and after :func:`~genrestore.stages.declip.declip`."""
    from genrestore.stages import declip

    rows, errors = [], []
    for path, name in files:
        try:
            audio, rate = read_audio(path)
        except FILE_ERRORS as exc:
            errors.append(f"{path}: {exc}")
            continue
        clean = excerpt(audio, rate, seconds)
        for fraction in fractions:
            level = float(np.quantile(np.abs(clean), 1.0 - fraction))
            clipped = np.clip(clean, -level, level)
            rebuilt, fixed = declip(clipped)
            rows.append(DeclipRow(name, fraction, _snr_db(clean, clipped),
                                  _snr_db(clean, rebuilt), fixed))
    return rows, errors


def format_declip(rows: Sequence[DeclipRow]) -> str:
    """Markdown: one row per clip and clip fraction, then the mean gain."""
    lines = ["| clip | clipped | SNR clipped dB | SNR declipped dB | gain dB | runs |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.clip} | {100 * r.fraction:g} % | {r.snr_clipped_db:.1f} | "
              f"{r.snr_declipped_db:.1f} | {r.gain_db:+.1f} | {r.runs_fixed} |" for r in rows]
    if rows:
        gains = [r.gain_db for r in rows]
        lines += ["", f"mean gain {np.mean(gains):+.1f} dB, smallest {min(gains):+.1f} dB, "
                      f"{sum(g >= 5.0 for g in gains)} of {len(gains)} at least +5 dB"]
    return "\n".join(lines)


# --- Reference matching: 1/3-octave distance to another track --------------------------------


@dataclass(frozen=True)
class MatchRow:
    """One clip restored without and with another track as its reference."""

    clip: str
    reference: str
    degradation: str
    high_hz: float  # the top of the matched range (the match stage's)
    bands: int  # third-octave bands compared
    before_db: float  # RMS band difference to the reference, restored without it
    after_db: float  # ... restored with it
    stage_after_db: float  # ... as the match stage left it, before the loudness stage
    clamped: int  # bands whose wanted change is beyond the stage's clamp (max boost / cut)
    self_change_db: float  # largest band change: the restored clip matched to itself (a file)
    chain_self_change_db: float  # ... restored again by the preset with it as the reference
    lufs: float  # loudness of the matched output
    reference_lufs: float


def _match_report(reports: tuple[StageReport, ...]) -> StageReport | None:
    return next((r for r in reports if r.stage == "match"), None)


def match_clip(clean: np.ndarray, sample_rate: int, reference: ReferenceProfile, *, name: str,
               reference_name: str, preset: str = DEFAULT_PRESET,
               degradation: str = "musicgen_like", output_rate_hz: int = 44100) -> MatchRow:
    """Degrade ``clean`` (``"none"``: leave it), restore it with ``preset`` without and with
    ``reference`` and measure the distance of both to the reference
    (:func:`~genrestore.stages.match.spectrum_distance_db`, 60 Hz to the top of the range
    the match stage used).  Self-match: the first restoration (without reference), written
    as a 24-bit WAV file and read as the reference, matched to itself with
    :func:`~genrestore.stages.match.match_reference`; and the clip restored once more by the
    preset with that file as its reference (the match stage then sees the audio before the
    loudness stage, whose limiter changes the bands again).  Each gives the largest change of
    a band level (dB) against the first restoration, over the same bands."""
    chosen = load_preset(preset)
    if degradation == "none":
        clip, rate = clean, sample_rate
    else:
        clip, rate = degrade(clean, sample_rate, degradation, seed=_seed(name, degradation))
    plain = run_pipeline(clip, rate, chosen, output_rate_hz=output_rate_hz)
    matched = run_pipeline(clip, rate, with_reference(chosen, reference),
                           output_rate_hz=output_rate_hz)
    report = _match_report(matched.reports)
    high = float(report.details.get("high_hz", 16000.0)) if report else 16000.0
    before = spectrum_distance_db(plain.audio, output_rate_hz, reference, high_hz=high)
    after = spectrum_distance_db(matched.audio, output_rate_hz, reference, high_hz=high)
    with tempfile.TemporaryDirectory() as tmp:
        own_path = Path(tmp) / "restored.wav"
        sf.write(own_path, plain.audio.T, output_rate_hz, subtype="PCM_24")
        own = load_reference(own_path)
    itself = match_reference(plain.audio, output_rate_hz, own)
    again = run_pipeline(clip, rate, with_reference(chosen, own), output_rate_hz=output_rate_hz)
    levels = band_levels_db(plain.audio, output_rate_hz)
    mask = matched_bands(levels, reference, low_hz=60.0, high_hz=high)

    def change(audio: np.ndarray) -> float:
        moved = band_levels_db(audio, output_rate_hz)[mask] - levels[mask]
        return float(np.max(np.abs(moved), initial=0.0))

    details = report.details if report else {}
    boost, cut = details.get("max_boost_db", 0.0), details.get("max_cut_db", 0.0)
    clamped = sum(v > boost or v < -cut for v in details.get("wanted_db", []))
    return MatchRow(name, reference_name, degradation, high, int(mask.sum()), before, after,
                    float(details.get("rms_after_db", float("nan"))), clamped, change(itself),
                    change(again.audio),
                    integrated_lufs(matched.audio, output_rate_hz), reference.integrated_lufs)


def match_benchmark(files: Sequence[tuple[Path, str]], *, seconds: float = 10.0,
                    preset: str = DEFAULT_PRESET, degradations: Sequence[str] = ("musicgen_like",),
                    progress: Callable[[str], None] | None = None
                    ) -> tuple[list[MatchRow], list[str]]:
    """Pair every file with the next one in the list (the last with the first) and run
    :func:`match_clip` on an excerpt of the first with the whole second as the reference."""
    for d in degradations:
        if d != "none":
            get_degradation(d)
    load_preset(preset)
    rows: list[MatchRow] = []
    errors: list[str] = []
    for i, (path, name) in enumerate(files):
        ref_path, ref_name = files[(i + 1) % len(files)]
        try:
            if ref_path == path:
                raise ParameterError("--match needs at least two files")
            reference = load_reference(ref_path)
            audio, rate = read_audio(path)
            clip = excerpt(audio, rate, seconds)
            rows += [match_clip(clip, rate, reference, name=name, reference_name=ref_name,
                                preset=preset, degradation=d) for d in degradations]
        except FILE_ERRORS as exc:
            errors.append(f"{path}: {exc}")
        if progress is not None:
            progress(name)
    return rows, errors


#: The benchmark's aim for a clip matched to another track (dB RMS over the bands).
MATCH_AIM_DB = 1.5


def format_match(rows: Sequence[MatchRow]) -> str:
    """Markdown: one row per clip and reference, then the summary."""
    lines = ["| clip | reference | degradation | bands (60 Hz-top) | before dB | after dB | "
             "after, before loudness dB | bands beyond the clamp | "
             "self-match dB | self-match in the chain dB | LUFS (reference) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r.clip} | {r.reference} | {r.degradation} | {r.bands} (to "
              f"{r.high_hz / 1000:.1f} kHz) | {r.before_db:.2f} | {r.after_db:.2f} | "
              f"{r.stage_after_db:.2f} | {r.clamped} | "
              f"{r.self_change_db:.3f} | {r.chain_self_change_db:.2f} | {r.lufs:.1f} "
              f"({r.reference_lufs:.1f}) |" for r in rows]
    if rows:
        after = [r.after_db for r in rows]
        reachable = [r for r in rows if not r.clamped]
        reachable_ok = sum(r.after_db <= MATCH_AIM_DB for r in reachable)
        lines += ["", f"1/3-octave RMS difference to the reference: before mean "
                      f"{np.mean([r.before_db for r in rows]):.2f} dB, after mean "
                      f"{np.mean(after):.2f} dB, max {max(after):.2f} dB; "
                      f"{sum(a <= MATCH_AIM_DB for a in after)} of {len(rows)} within "
                      f"{MATCH_AIM_DB:g} dB ({reachable_ok} of {len(reachable)} "
                      f"that need no band beyond the stage's clamp); self-match largest band change "
                      f"{max(r.self_change_db for r in rows):.3f} dB "
                      f"({max(r.chain_self_change_db for r in rows):.2f} dB in the chain)"]
    return "\n".join(lines)


# --- Limiter: genrestore's true-peak limiter against pedalboard's -----------------------------

LIMITER_DRIVES_DB = (3.0, 8.0, 12.0)
#: Window of the slowly varying gain the music cases' distortion is measured against (s).
SLOW_GAIN_S = 0.05


@dataclass(frozen=True)
class LimiterRow:
    """One case x drive x limiter of ``genrestore bench --limiter``."""

    case: str
    drive_db: float  # the input's true peak over the ceiling
    limiter: str
    time_ms: float  # median, including the static trim and its true-peak measurement
    raw_peak_dbtp: float  # the limiter's output, before the static trim
    true_peak_dbtp: float  # after it
    lufs: float
    distortion_db: float
    measure: str  # "THD+N" (steady sine) or "ESR" (error against a slowly varying gain)


def _pedalboard_limit(x: np.ndarray, sample_rate: int, ceiling_dbtp: float,
                      release_ms: float) -> np.ndarray:
    """pedalboard's look-ahead ``BrickwallLimiter`` (true-peak side-chain), set as the loudness
    stage set it before it had its own limiter (ceiling 0.1 dB under ``ceiling_dbtp``)."""
    import pedalboard

    limiter = pedalboard.BrickwallLimiter(ceiling_db=ceiling_dbtp - 0.1, release_ms=release_ms,
                                          lookahead_ms=5.0, true_peak=True)
    return limiter(x, sample_rate)


def _pink_noise(sample_rate: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(sample_rate * seconds)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spectrum[1:] /= np.sqrt(freqs[1:] / 100.0)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)[np.newaxis].astype(np.float32)


def _sine_burst(sample_rate: int, seconds: float) -> np.ndarray:
    """A 1 kHz sine between 0.5 s silences, with 5 ms raised-cosine edges."""
    n = int(sample_rate * seconds)
    edge = int(0.005 * sample_rate)
    env = np.ones(n)
    env[:edge] = env[-edge:][::-1] = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    burst = env * np.sin(2 * np.pi * 1000.0 * np.arange(n) / sample_rate)
    silence = np.zeros(sample_rate // 2)
    return np.concatenate([silence, burst, silence])[np.newaxis].astype(np.float32)


def _drums(sample_rate: int, seconds: float, seed: int) -> np.ndarray:
    """Sparse transients over a quiet pad: a kick (falling 90->45 Hz sine, 2 ms click) on the
    beats and a snare (noise, 40 ms decay) between them, 120 bpm; the pad ~24 dB under."""
    rng = np.random.default_rng(seed)
    n = int(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    x = 0.02 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    hit = np.arange(int(0.3 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * np.cumsum(45.0 + 45.0 * np.exp(-hit / 0.03)) / sample_rate)
    kick = kick * np.exp(-hit / 0.08) + rng.standard_normal(hit.size) * np.exp(-hit / 0.002)
    snare = rng.standard_normal(hit.size) * np.exp(-hit / 0.04) * 0.5
    beat = sample_rate // 2
    for k, start in enumerate(range(0, n - hit.size, beat // 2)):
        x[start:start + hit.size] += kick if k % 2 == 0 else snare
    return x[np.newaxis].astype(np.float32)


def _thd_n_db(y: np.ndarray, sample_rate: int, frequency: float, start: int, stop: int) -> float:
    """Power of what is left of ``y[start:stop]`` after the best-fitting sine at ``frequency``
    (and DC) is removed, relative to that sine, in dB (channel 0)."""
    seg = np.asarray(y[0, start:stop], dtype=np.float64)
    phase = 2 * np.pi * frequency * np.arange(start, stop) / sample_rate
    basis = np.stack([np.sin(phase), np.cos(phase), np.ones_like(phase)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, seg, rcond=None)
    sine = basis[:, :2] @ coef[:2]
    return float(10 * np.log10(np.sum((seg - basis @ coef) ** 2) / np.sum(sine**2)))


def _esr_db(x: np.ndarray, y: np.ndarray, sample_rate: int) -> float:
    """Error of ``y`` against the input ``x`` times the limiter's gain smoothed over
    :data:`SLOW_GAIN_S` (a least-squares gain in a sliding Hann window), relative to ``y``, in dB:
    what the limiter does on time scales shorter than a slowly riding gain (its attacks, its
    fast gain changes, any waveform distortion)."""
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    window = np.hanning(int(SLOW_GAIN_S * sample_rate) | 1)
    cross = np.convolve((x64 * y64).sum(axis=0), window, mode="same")
    power = np.convolve((x64 * x64).sum(axis=0), window, mode="same")
    slow = cross / np.maximum(power, 1e-12 * power.max())
    return float(10 * np.log10(np.sum((y64 - slow * x64) ** 2) / np.sum(y64**2)))


def limiter_benchmark(*, repeats: int = 5, ceiling_dbtp: float = -1.0,
                      release_ms: float = 80.0) -> list[LimiterRow]:
    """genrestore's limiter (the loudness stage's ``_limit``) against pedalboard's
    ``BrickwallLimiter`` with the same static trim, on five cases at
    :data:`LIMITER_DRIVES_DB` of drive: the synthetic song (30 s, mono and stereo), pink noise
    (10 s), a 1 kHz sine burst (3 s) and sparse drum hits (10 s), all at 44.1 kHz.

    Times are medians of ``repeats`` runs in this process (set ``OMP_NUM_THREADS=1`` for one
    core).  Distortion is the sine's THD+N over its steady part (0.1 s after the attack to 0.1 s
    before the end), and for the other cases the error against a slowly riding gain
    (:func:`_esr_db`).
    """
    from genrestore.analysis import true_peak_dbtp
    from genrestore.stages import loudness

    rate = 44100
    song = render_song(rate, 30.0, seed=0)
    cases = {
        "song (mono)": song[:1].copy(),
        "song (stereo)": song,
        "pink noise": _pink_noise(rate, 10.0, seed=0),
        "1 kHz sine burst": _sine_burst(rate, 2.0),
        "drum hits": _drums(rate, 10.0, seed=0),
    }
    limiters: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "pedalboard": lambda x: _pedalboard_limit(x, rate, ceiling_dbtp, release_ms),
        "genrestore": lambda x: loudness._brickwall(x, rate, ceiling_dbtp, release_ms, 5.0),
    }
    rows = []
    for case, clean in cases.items():
        for drive in LIMITER_DRIVES_DB:
            x = clean * np.float32(10 ** ((ceiling_dbtp + drive - true_peak_dbtp(clean)) / 20))
            for name, limit in limiters.items():
                raw = limit(x)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    loudness._trim_to_ceiling(limit(x), ceiling_dbtp)
                    times.append(time.perf_counter() - start)
                out, peak = loudness._trim_to_ceiling(raw.copy(), ceiling_dbtp)
                if case.startswith("1 kHz"):
                    half = rate // 2
                    distortion = _thd_n_db(out, rate, 1000.0, half + rate // 10,
                                           out.shape[-1] - half - rate // 10)
                else:
                    distortion = _esr_db(x, out, rate)
                rows.append(LimiterRow(case, drive, name, statistics.median(times) * 1000.0,
                                       true_peak_dbtp(raw), float(20 * np.log10(peak)),
                                       integrated_lufs(out, rate), distortion,
                                       "THD+N" if case.startswith("1 kHz") else "ESR"))
    return rows


def format_limiter(rows: Sequence[LimiterRow], *, ceiling_dbtp: float = -1.0) -> str:
    """A Markdown table of :func:`limiter_benchmark`'s rows."""
    lines = [
        f"true-peak limiter, ceiling {ceiling_dbtp:g} dBTP, release 80 ms, look-ahead 5 ms, "
        "44.1 kHz; raw TP: before the static trim",
        "",
        "| case | drive dB | limiter | ms | raw TP dBTP | TP dBTP | LUFS | distortion dB |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    lines += [f"| {r.case} | {r.drive_db:g} | {r.limiter} | {r.time_ms:.1f} | "
              f"{r.raw_peak_dbtp:.3f} | {r.true_peak_dbtp:.3f} | {r.lufs:.2f} | "
              f"{r.distortion_db:.1f} ({r.measure}) |" for r in rows]
    return "\n".join(lines)


# --- Memory: peak resident memory and time of `genrestore restore` on long files ------------

#: ``genrestore bench --memory``'s default lengths (minutes).
MEMORY_MINUTES = (1.0, 10.0, 60.0)
#: Each synthetic long file is rendered and written this many seconds at a time.
_PIECE_S = 60.0


@dataclass(frozen=True)
class MemoryRow:
    """One ``genrestore restore`` run on a synthetic file: its child process's peak resident
    memory (the kernel's ``ru_maxrss`` of that one process) and wall time."""

    minutes: float
    channels: int
    rate_hz: int
    output_rate_hz: int
    peak_rss_mb: float
    wall_s: float


def write_long_clip(path: Path, seconds: float, *, rate: int = 32000, channels: int = 1,
                    seed: int = 0) -> Path:
    """Write a MusicGen-like file of ``seconds`` (the synthetic song degraded by the ``demo``
    chain, as ``scripts/batch_clips.py`` makes it, a new seed each minute) at ``rate`` with
    ``channels`` (the second a quieter, time-reversed copy of the first), 16-bit WAV, rendered
    and written a minute at a time: the benchmark never holds the file.  A file already at
    ``path`` with that length, rate and channels is kept (the hour takes minutes to render)."""
    total = round(seconds * rate)
    if path.is_file():
        info = sf.info(str(path))
        if (info.frames, info.samplerate, info.channels) == (total, rate, channels):
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", rate, channels, subtype="PCM_16") as f:
        done, piece = 0, 0
        while done < total:
            piece_s = min(_PIECE_S, (total - done) / rate + 0.1)
            clip, got = degrade(render_song(44100, piece_s, seed=seed + piece), 44100, "demo",
                                seed=seed + piece)
            if got != rate:
                clip = resample(clip, got, rate)
            clip = clip[:1]
            if channels == 2:
                clip = np.concatenate([clip, 0.8 * clip[:, ::-1]])
            part = np.clip(clip[:, :total - done], -1.0, 1.0)
            f.write(np.ascontiguousarray(part.T))
            done += part.shape[-1]
            piece += 1
    return path


#: The child of :func:`peak_memory_run`: genrestore's CLI, then its own peak resident memory
#: (``VmHWM``: the high-water mark of the memory of the program exec started) written to the
#: file named by its first argument.
_PEAK_CHILD = """\
import sys
from genrestore.cli import main
report, arguments = sys.argv[1], sys.argv[2:]
sys.argv = ["genrestore", *arguments]
try:
    code = main(arguments)
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as out:
        out.write(peak)
sys.exit(code)
"""


def peak_memory_run(arguments: Sequence[str]) -> tuple[float, float]:
    """``(peak resident MB, wall seconds)`` of ``genrestore ARGUMENTS`` in a child process
    of its own (Linux).  The peak is the child's ``VmHWM``, which starts afresh at exec:
    ``ru_maxrss`` from ``wait4`` would not do, as exec keeps the high-water mark of the
    memory it replaces, and a child started from a large process (a test run at 1.4 GB)
    read that process's peak as its own."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "peak"
        command = [sys.executable, "-c", _PEAK_CHILD, str(report), *arguments]
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise ParameterError(f"genrestore {' '.join(arguments)} failed ({done.returncode}): "
                                 f"{done.stderr.decode(errors='replace').strip()[-500:]}")
        return int(report.read_text()) / 1024.0, wall  # VmHWM is in kB


def memory_benchmark(*, minutes: Sequence[float] = MEMORY_MINUTES, channels: int = 1,
                     rate: int = 32000, preset: str = DEFAULT_PRESET, folder: Path | None = None,
                     progress: Callable[[str], None] | None = None) -> list[MemoryRow]:
    """Restore a synthetic file of each length in ``minutes`` (:func:`write_long_clip`) with
    ``genrestore restore`` in a child process of its own, one at a time, and measure that
    child's peak resident memory and wall time (start-up, reading and 24-bit writing
    included).  The output rate is ``rate`` where genrestore writes it, else 44.1 kHz.  The
    files go to ``folder`` and stay there to be used again (a temporary folder otherwise)."""

    from genrestore.preset import OUTPUT_RATES_HZ

    if channels not in (1, 2):
        raise ParameterError("bench --memory: channels must be 1 or 2")
    if not minutes or min(minutes) <= 0:
        raise ParameterError("bench --memory: lengths must be positive minutes")
    output_rate = rate if rate in OUTPUT_RATES_HZ else 44100
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        where = folder or Path(tmp)
        for length in minutes:
            source = write_long_clip(where / f"long_{length:g}min_{rate}_{channels}ch.wav",
                                     length * 60.0, rate=rate, channels=channels)
            out = Path(tmp) / "restored.wav"
            peak, wall = peak_memory_run([
                "restore", str(source), "-o", str(out), "--preset", preset,
                "--rate", str(output_rate), "--overwrite", "-q"])
            out.unlink(missing_ok=True)
            rows.append(MemoryRow(length, channels, rate, output_rate, peak, wall))
            if progress is not None:
                progress(f"{length:g} min")
    return rows


def format_memory(rows: Sequence[MemoryRow], preset: str = DEFAULT_PRESET) -> str:
    """A Markdown table of :func:`memory_benchmark`'s rows, each run's time also as a multiple
    of the shortest file's (the issue's linearity figure: 60 minutes in at most 65x the time
    of 1 minute)."""
    if not rows:
        return ""
    first = min(rows, key=lambda r: r.minutes)
    lines = [
        f"`genrestore restore --preset {preset}` in a child process per file: synthetic "
        f"MusicGen-like files, {'mono' if first.channels == 1 else 'stereo'} "
        f"{first.rate_hz} Hz 16-bit -> {first.output_rate_hz} Hz 24-bit",
        "",
        f"| minutes | peak RSS (MB) | wall (s) | time / {first.minutes:g}-minute time | "
        "length ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.minutes:g} | {r.peak_rss_mb:.0f} | {r.wall_s:.1f} | "
              f"{r.wall_s / first.wall_s:.1f}x | {r.minutes / first.minutes:g}x |" for r in rows]
    return "\n".join(lines)
