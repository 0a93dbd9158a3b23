"""Running a preset (:mod:`genrestore.preset`) on audio: analysis, the stages in order with
their reports, the guard, and the file path (read, dither, write).

Data flows one way: read -> analyse -> stages -> limiter -> dither -> write.  Consecutive
spectral stages (denoise, bwe) share one STFT analysis and synthesis.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from genrestore import stream
from genrestore.analysis import Analysis, analyze, analyze_blocks, integrated_lufs, true_peak_dbtp
from genrestore.errors import AudioFileError, ParameterError
from genrestore.io import probe, read_audio, read_blocks, validate_audio, write_audio
from genrestore.parallel import one_blas_thread
from genrestore.preset import (
    DEFAULT_PRESET,
    OUTPUT_RATES_HZ,
    DitherSettings,
    Overrides,
    Preset,
    load_preset,
    parse_set_option,
    parse_value,
    preset_names,
)
from genrestore.spectral import istft, stft
from genrestore.stages import Context, SpectralStage, Stage, StageReport
from genrestore.stages.dither import dither
from genrestore.stages.match import resolve_references

if TYPE_CHECKING:
    from genrestore.guard import Finding

log = logging.getLogger(__name__)
R = TypeVar("R")

__all__ = [  # the preset model is genrestore.preset's, re-exported here for convenience
    "DEFAULT_PRESET",
    "GUARD_ROUNDS",
    "DitherSettings",
    "FileResult",
    "Overrides",
    "Preset",
    "RestoreResult",
    "load_preset",
    "parse_set_option",
    "parse_value",
    "preset_names",
    "restore",
    "restore_file",
    "restore_to_file",
    "run_pipeline",
]


@dataclass(frozen=True)
class RestoreResult:
    """Restored audio plus the input's analysis and what each stage did."""

    audio: np.ndarray
    sample_rate: int
    analysis: Analysis
    reports: tuple[StageReport, ...]
    timings_s: tuple[tuple[str, float], ...] = ()  # (step, seconds), in order

    @property
    def output_levels(self) -> tuple[float, float] | None:
        """``(integrated LUFS, true peak dBTP)`` of ``audio`` as the loudness stage measured
        them (to 0.01), when it ran last and acted; ``None`` otherwise."""
        return _loudness_figures(self.reports)


def _loudness_figures(reports: tuple[StageReport, ...]) -> tuple[float, float] | None:
    """The loudness stage's figures for its output, when no stage changed the audio after it.
    The guard and the file summary read them instead of metering the output again."""
    stages = [r for r in reports if r.stage != "guard"]
    last = stages[-1] if stages else None
    if last is None or last.stage != "loudness" or not last.acted:
        return None
    return float(last.details["output_lufs"]), float(last.details["true_peak_dbtp"])


@dataclass(frozen=True)
class _Run:
    """One pass of a preset's stages over the input."""

    audio: np.ndarray
    sample_rate: int
    reports: tuple[StageReport, ...]
    timings_s: tuple[tuple[str, float], ...]


def _run_stages(x: np.ndarray, sample_rate: int, stages: tuple[Stage, ...],
                context: Context | Sequence[Context]) -> _Run:
    """Run ``stages`` in order on validated audio; consecutive spectral stages share one STFT.
    ``context`` is every stage's, or one per stage (a long file's segments,
    :mod:`genrestore.stream`)."""
    contexts = [context] * len(stages) if isinstance(context, Context) else list(context)
    clock = time.perf_counter()
    timings: list[tuple[str, float]] = []

    def lap(label: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings.append((label, now - clock))
        clock = now

    reports: list[StageReport] = []
    rate = sample_rate
    i = 0
    while i < len(stages):
        if isinstance(stages[i], SpectralStage):
            spec = stft(x, rate)
            lap("stft")
            changed = False
            while i < len(stages) and isinstance(stages[i], SpectralStage):
                spec, report = stages[i].apply_spectrum(spec, contexts[i])
                lap(stages[i].name)
                changed |= report.acted
                reports.append(report)
                i += 1
            if changed:
                x = istft(spec)
                lap("istft")
            continue
        x, rate, report = stages[i].apply(x, rate, contexts[i])
        lap(stages[i].name)
        reports.append(report)
        i += 1
    return _Run(x, rate, tuple(reports), tuple(timings))


@one_blas_thread
def run_pipeline(
    audio: np.ndarray,
    sample_rate: int,
    preset: Preset,
    *,
    output_rate_hz: int = 44100,
    analysis: Analysis | None = None,
) -> RestoreResult:
    """Run ``preset``'s stages on ``(channels, samples)`` or 1-D (mono) audio; the result is
    ``(channels, samples)``.  Consecutive spectral stages share one STFT.  With
    ``preset.guard`` the result is checked against the input (:mod:`genrestore.guard`) and
    the stages are run again without each stage the guard blames (twice at most).  A
    ``match`` stage's reference file is read here unless the preset comes with its profile
    (:func:`~genrestore.stages.match.resolve_references`, once per batch)."""
    if output_rate_hz not in OUTPUT_RATES_HZ:
        raise ParameterError(f"output rate must be one of {OUTPUT_RATES_HZ}, not {output_rate_hz}")
    preset = resolve_references(preset)
    x = validate_audio(audio, sample_rate)
    start = time.perf_counter()
    info = analysis or analyze(x, sample_rate)
    timings = [("analysis", time.perf_counter() - start)]
    context = Context(analysis=info, output_rate_hz=output_rate_hz)
    run = _run_stages(x, sample_rate, preset.stages, context)
    timings += run.timings_s
    reports = run.reports
    if preset.guard:
        run, guard_report, guard_timings = _guard(x, sample_rate, preset, context, run)
        reports = (*run.reports, guard_report)
        timings += guard_timings
    for report in reports:
        log.debug("%s: %s", report.stage, report.summary)
    return RestoreResult(run.audio, run.sample_rate, info, reports, tuple(timings))


#: How many stages the guard may back off for one clip.
GUARD_ROUNDS = 2


def _back_off(stages: tuple[Stage, ...], name: str) -> tuple[Stage, ...]:
    """The stages without ``name``; the loudness stage is never removed (the target and the
    ceiling are the point of a release), its limiting is halved instead (an 8 dB cap, or
    12 dB when uncapped, becomes 4/6 dB)."""
    if name != "loudness":
        return tuple(s for s in stages if s.name != name)
    out: list[Stage] = []
    for stage in stages:
        if stage.name == "loudness":
            cap = getattr(stage, "max_limiting_db", 0.0) or 12.0
            stage = dataclasses.replace(stage, max_limiting_db=max(cap / 2.0, 0.5))
        out.append(stage)
    return tuple(out)


def guard_rounds(stages: tuple[Stage, ...], first: R, rerun: Callable[[tuple[Stage, ...]], R],
                 check: Callable[[R], list[Finding]]) -> tuple[R, StageReport]:
    """The guard's rounds: ``check`` a run, back off the first stage it blames
    (:func:`_back_off`) and ``rerun`` the stages left, :data:`GUARD_ROUNDS` times at most.
    Returns the run kept and a ``guard`` report saying what happened.  The run is the
    audio in memory (:func:`run_pipeline`) or a long file's spill (:mod:`genrestore.stream`)."""
    run = first
    backed_off: list[str] = []
    problems: list[str] = []
    for _ in range(GUARD_ROUNDS + 1):
        findings = check(run)
        blamed = next((f for f in findings if f.stage and f.stage not in backed_off), None)
        if blamed is None or len(backed_off) >= GUARD_ROUNDS:
            problems += [f.problem for f in findings]  # what is left, backed off or not
            break
        backed_off.append(blamed.stage)
        problems.append(f"{blamed.problem}: backed off {blamed.stage}")
        stages = _back_off(stages, blamed.stage)
        run = rerun(stages)
    if problems:
        report = StageReport("guard", bool(backed_off), "guard: " + "; ".join(problems),
                             {"backed_off": backed_off, "problems": problems})
    else:
        report = StageReport("guard", False, "guard: nothing got worse",
                             {"backed_off": [], "problems": []})
    return run, report


def _guard(x: np.ndarray, sample_rate: int, preset: Preset, context: Context, run: _Run
           ) -> tuple[_Run, StageReport, list[tuple[str, float]]]:
    """Check ``run`` against the validated input ``x`` with :func:`genrestore.guard.check`;
    back off the first blamed stage and run again (:func:`guard_rounds`).  Returns the run
    kept, a ``guard`` report saying what happened, and the time spent."""
    from genrestore import guard

    start = time.perf_counter()
    timings: list[tuple[str, float]] = []
    base = guard.baseline(context.analysis)

    def check(run: _Run) -> list[Finding]:
        levels = _loudness_figures(run.reports)
        findings = guard.check(base, run.audio, run.sample_rate, run.reports,
                               output_lufs=levels[0] if levels else None)
        timings.append(("guard", time.perf_counter() - start))
        return findings

    def rerun(stages: tuple[Stage, ...]) -> _Run:
        nonlocal start
        again = _run_stages(x, sample_rate, stages, context)
        timings.extend((f"guard rerun: {k}", v) for k, v in again.timings_s)
        start = time.perf_counter()
        return again

    run, report = guard_rounds(preset.stages, run, rerun, check)
    return run, report, timings


def restore(
    audio: Any,
    sample_rate: int,
    preset: str | os.PathLike[str] | Preset = DEFAULT_PRESET,
    *,
    output_rate_hz: int = 44100,
    target: str | None = None,
    **overrides: Mapping[str, Any],
) -> tuple[Any, int]:
    """Restore float audio; returns ``(audio, output_rate_hz)``.

    ``audio`` is ``(channels, samples)``, 1-D (mono) or ``(batch, channels, samples)`` (each
    clip of the batch restored on its own), as a numpy array or a torch tensor (what
    audiocraft's and transformers' MusicGen return, on any device, float16 or float32); the
    result has the kind and layout it was given (1-D in, 1-D out, unless a stage made a mono
    clip stereo; a tensor comes back with its dtype, on its device: see
    :mod:`genrestore.arrays`).  Its length is that of the output rate.  ``preset`` is a
    shipped preset's name, a TOML file or a :class:`Preset`; keyword overrides change stage
    parameters, e.g. ``restore(x, 32000, denoise={"strength": 0.5})``; ``target`` a delivery
    target's loudness and ceiling (:mod:`genrestore.targets`, e.g. ``target="spotify"``),
    under those overrides.  A numpy result is float32; nothing is dithered (dither belongs to
    writing integer PCM).
    """
    from genrestore.arrays import pack, unpack

    chosen = _chosen_preset(preset, overrides, target)
    layout, clips = unpack(audio)
    results = [run_pipeline(clip, sample_rate, chosen, output_rate_hz=output_rate_hz)
               for clip in clips]
    return pack([r.audio for r in results], layout), results[0].sample_rate


def _chosen_preset(preset: str | os.PathLike[str] | Preset, overrides: Overrides | None,
                   target: str | None = None) -> Preset:
    if isinstance(preset, Preset):
        if overrides or target is not None:
            raise ParameterError("pass overrides and target to load_preset() when giving a "
                                 "Preset object")
        return preset
    return load_preset(preset, overrides, target=target)


def _carried_tags(source: Path, preset_name: str) -> dict[str, str]:
    """The input's text tags, for its output: a title, artist or comment survives restoring;
    a comment that is a JSON object with a ``preset`` (the provenance ``genrestore generate``
    writes) names the preset that made this output, and the software is genrestore."""
    import json

    from genrestore import __version__
    from genrestore.io import read_tags

    # A tag that did not decode as UTF-8 (a Latin-1 WAV INFO string) reads with U+FFFD in it:
    # dropped rather than written out mangled.
    tags = {k: v for k, v in read_tags(source).items() if "\ufffd" not in v}
    if not tags:
        return {}
    try:
        comment = json.loads(tags.get("comment", ""))
    except ValueError:
        comment = None
    if isinstance(comment, dict) and "preset" in comment:
        tags["comment"] = json.dumps({**comment, "preset": preset_name}, ensure_ascii=False)
    tags["software"] = f"genrestore {__version__}"
    return tags


@dataclass(frozen=True)
class FileResult:
    """What :func:`restore_file` did to one file."""

    source: Path
    destination: Path
    analysis: Analysis
    reports: tuple[StageReport, ...]
    output_lufs: float
    output_true_peak_dbtp: float
    seconds: float


@one_blas_thread
def restore_file(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    preset: str | os.PathLike[str] | Preset = DEFAULT_PRESET,
    output_rate_hz: int = 44100,
    bits: str = "24",
    file_format: str | None = None,
    overwrite: bool = False,
    overrides: Overrides | None = None,
    protect: Sequence[str | os.PathLike[str]] = (),
    keep_identical: bool = False,
    target: str | None = None,
) -> FileResult:
    """Read ``source``, restore it, dither and write ``destination`` atomically.  A file
    longer than :data:`genrestore.stream.THRESHOLD_S` is restored in segments, in bounded
    memory, with the same result, the guard included (see :mod:`genrestore.stream`).

    The input is never overwritten, nor any path in ``protect`` (e.g. every source of a
    batch); an existing output only with ``overwrite=True``, or with ``keep_identical=True``
    when it already holds exactly the bytes this run writes (see
    :func:`~genrestore.io.write_audio`).  ``target`` as for :func:`restore`.
    Errors are :class:`~genrestore.errors.AudioFileError` or
    :class:`~genrestore.errors.ParameterError` whose message names the file.
    """
    start = time.perf_counter()
    chosen = _chosen_preset(preset, overrides, target)
    src = Path(source)
    info = probe(src)
    if info.frames > stream.THRESHOLD_S * info.sample_rate:  # a long file: in segments
        info, blocks = read_blocks(src)
        try:
            analysis = analyze_blocks(blocks, info.sample_rate, info.channels, source=str(src))
        except ParameterError as exc:
            raise AudioFileError(src, str(exc).removeprefix(f"{src}: ")) from exc
        return stream.restore_segmented(
            blocks, info.sample_rate, analysis, destination, preset=chosen,
            output_rate_hz=output_rate_hz, bits=bits, file_format=file_format, source=src,
            overwrite=overwrite, protect=(src, *protect), keep_identical=keep_identical,
            tags=_carried_tags(src, chosen.name), started=start)
    audio, rate = read_audio(src, info=info)
    return restore_to_file(audio, rate, destination, preset=chosen, output_rate_hz=output_rate_hz,
                           bits=bits, file_format=file_format, source=src, overwrite=overwrite,
                           protect=(src, *protect), keep_identical=keep_identical,
                           tags=_carried_tags(src, chosen.name), started=start)


def restore_to_file(
    audio: np.ndarray,
    sample_rate: int,
    destination: str | os.PathLike[str],
    *,
    preset: Preset,
    output_rate_hz: int = 44100,
    bits: str = "24",
    file_format: str | None = None,
    source: str | os.PathLike[str] = "<array>",
    overwrite: bool = False,
    protect: Sequence[str | os.PathLike[str]] = (),
    keep_identical: bool = False,
    tags: Mapping[str, str] | None = None,
    started: float | None = None,
) -> FileResult:
    """Restore audio held in memory with ``preset``, dither it for integer PCM and write it
    atomically to ``destination`` with ``tags`` (the second half of :func:`restore_file`, and
    how ``genrestore generate`` writes what it generated); the result names ``source``.  Never
    writes a path in ``protect`` nor a reference track of the preset's match stages."""
    start = time.perf_counter() if started is None else started
    dst = Path(destination)
    result = run_pipeline(audio, sample_rate, preset, output_rate_hz=output_rate_hz)
    out = result.audio
    if bits != "32f":
        out = dither(out, bits=int(bits), seed=preset.dither.seed, shape=preset.dither.shape)
    # Dither moves neither figure by 0.01 (TPDF at 16 bits is about -98 dBFS of noise and
    # one step of 3e-5 on the peaks), so the loudness stage's own figures stand for the file.
    # Measured before the write: once the output is in place, nothing is left to do but
    # return (a batch stopped in between would otherwise hold an output it cannot record).
    lufs, peak = result.output_levels or (integrated_lufs(out, result.sample_rate),
                                          true_peak_dbtp(out))
    from genrestore.stages.match import reference_paths

    write_audio(dst, out, result.sample_rate, bits=bits, file_format=file_format,
                overwrite=overwrite, protect=(*protect, *reference_paths(preset)),
                keep_identical=keep_identical, tags=tags)
    return FileResult(
        source=Path(source),
        destination=dst,
        analysis=result.analysis,
        reports=result.reports,
        output_lufs=lufs,
        output_true_peak_dbtp=peak,
        seconds=time.perf_counter() - start,
    )
