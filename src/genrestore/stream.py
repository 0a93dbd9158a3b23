"""Restoring a long file in bounded memory: segments with margins, a spill, a loudness pass.

A file longer than :data:`THRESHOLD_S` is never held whole.  Its analysis is read a block at
a time (:func:`genrestore.analysis.analyze_blocks`), and the policy decides from it once for
the whole file.  The stages before ``loudness`` then run on segments of :data:`SEGMENT_S`
seconds, each with :data:`MARGIN_S` seconds of the file on either side (so filters, the
declipper, the noise tracker and the compressor see what they would see in the whole file),
and the middle of each, at the output rate, is appended to a float32 spill file beside the
destination.  Segment starts fall on the resampler's period and on the output STFT's hop,
so every segment's frames are the whole file's frames.

The loudness stage needs the whole file: a pass over the spill gathers its gating blocks and
its 1 ms blocks' K-weighted energy and true peaks, from which the limiter model
(:class:`~genrestore.stages.loudness.LimiterModel`) picks the gain, and the stage's bracketed
passes (:func:`~genrestore.stages.loudness.bracket_gain`) run over the spill a chunk at a
time; a last pass applies gain, limiter and dither a chunk at a time and writes the output
atomically, metering it on the way.

With the preset's guard on, a pass over the spill renders what the last pass would write,
without writing it, and :class:`genrestore.guard.OutputMeter` measures it block by block
(the same measurements and the same comparison, :func:`genrestore.guard.compare`, as for a
file held whole; the clipped runs are counted on a second rendering of only the chunks that
reach a channel's extremes).  A stage it blames is backed off as for a file held whole
(:func:`genrestore.pipeline.guard_rounds`): the segments and the loudness passes run again,
which costs as much time again as the first run, for each stage backed off (twice at most).

What a stage decides from its whole input, first passes measure, each running the stages
before it over the segments (only when the stage acts: each costs the time of those stages
again): bandwidth extension's envelope reads the whole file's mean power per STFT bin
(:func:`_long_term_power`), the compressor's threshold the whole file's loud level
(:func:`_input_levels`) and the stereo stage's side gain the whole file's sums
(:func:`_side_sums`).  The output is then the whole-file output to float rounding
(tests/test_streaming.py).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import soundfile as sf

from genrestore.analysis import (
    Analysis,
    LoudnessSum,
    block_true_peaks,
    gated_lufs,
    true_peak,
)
from genrestore.io import (
    _create_temp,
    _same_bytes,
    _write_atomic,
    check_destination,
    quantize,
    tag_texts,
)
from genrestore.spectral import OVERLAP, default_n_fft
from genrestore.stages import Context, Stage, StageReport
from genrestore.stages.dither import dither

if TYPE_CHECKING:
    from genrestore.pipeline import FileResult
    from genrestore.preset import Preset

log = logging.getLogger(__name__)

#: Files longer than this (seconds) are restored in segments.
THRESHOLD_S = 300.0
#: Each segment's middle (the part kept), about this long (seconds) ...
SEGMENT_S = 30.0
#: ... with at least this much of the file either side as context (seconds).
MARGIN_S = 5.0
#: The output's loudness may miss the target by this much before a plain gain corrects it.
_TOLERANCE_LU = 0.2
#: The last pass reads the spill in chunks of about this many seconds, with this much context.
_CHUNK_S, _CHUNK_MARGIN_S = 30.0, 1.0


def _alignment(rate: int, output_rate: int, preset: Preset) -> int:
    """The input samples every segment start is a multiple of: the resampler's period, so the
    output grid is the whole file's; the output and input STFT hops, so frames are too; the
    declipper's half block, so its blocks are."""
    g = math.gcd(rate, output_rate)
    period, out_period = rate // g, output_rate // g
    hop = default_n_fft(output_rate) // OVERLAP
    unit = period * (hop // math.gcd(out_period, hop))
    half_blocks = [getattr(s, "block", 2048) // 2 for s in preset.stages if s.name == "declip"]
    for size in [default_n_fft(rate) // OVERLAP, *half_blocks]:
        unit = unit * size // math.gcd(unit, size)
    return unit


def _segments(blocks: Callable[[], Iterator[np.ndarray]], length: int, core: int, margin: int
              ) -> Iterator[tuple[np.ndarray, int, int]]:
    """``(segment, where its middle starts in it, how long the middle is)`` over the file, the
    segment the middle plus up to ``margin`` samples either side, read from ``blocks`` once
    (the file's last middle ends at ``length``)."""
    source = iter(blocks())
    held = np.zeros((0, 0), dtype=np.float32)
    held_from = 0
    for start in range(0, length, core):
        lo, hi = max(0, start - margin), min(length, start + core + margin)
        while held_from + held.shape[-1] < hi:
            block = next(source)
            held = block if held.size == 0 else np.concatenate([held, block], axis=-1)
        yield held[:, lo - held_from:hi - held_from], start - lo, min(core, length - start)
        keep_from = max(0, start + core - margin)
        if keep_from > held_from:
            held = held[:, keep_from - held_from:]
            held_from = keep_from


#: A source of the file's blocks, read once per pass (:data:`genrestore.analysis.Blocks`).
_Source = Callable[[], Iterator[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """How a long file is cut: its length, and the segments' middles and margins (samples
    at the input rate ``rate``)."""

    rate: int
    length: int
    core: int
    margin: int


def _segment_runs(blocks: _Source, at: _Geometry, stages: tuple[Stage, ...],
                  contexts: tuple[Context, ...], output_rate_hz: int
                  ) -> Iterator[tuple[tuple[StageReport, ...], np.ndarray, int]]:
    """Run ``stages`` (each with its context of ``contexts``) over the file's segments:
    ``(reports, kept, rate)`` for each, ``kept`` the segment's middle at the rate the stages
    end at (``(channels, samples)``, contiguous); the middles, joined, are the whole file's
    output.  Each segment's contexts carry its first frame's index in the whole file's output
    STFT."""
    from genrestore.pipeline import _run_stages

    segments = -(-at.length // at.core)
    hop = default_n_fft(output_rate_hz) // OVERLAP
    written = 0
    for index, (segment, offset, middle) in enumerate(_segments(blocks, at.length, at.core,
                                                                at.margin)):
        lo_out = round(min(index * at.core - offset, at.length) * output_rate_hz / at.rate)
        here = tuple(dataclasses.replace(c, frame_offset=lo_out // hop) for c in contexts)
        run = _run_stages(segment, at.rate, stages, here)
        scale = run.sample_rate / at.rate
        first = round(offset * scale)
        count = (round(at.length * scale) - written if index == segments - 1
                 else round(middle * scale))
        kept = np.ascontiguousarray(run.audio[:, first:first + count])
        written += kept.shape[-1]
        yield run.reports, kept, run.sample_rate


def _long_term_power(blocks: _Source, at: _Geometry, before: tuple[Stage, ...],
                     contexts: tuple[Context, ...], stage: Stage, base: Context
                     ) -> np.ndarray:
    """``bwe``'s input's mean power per STFT bin over the whole file (what it reads of its
    whole input when it runs at once), from a pass over the segments that runs the stages
    ``before`` it and the spectral stages sharing its STFT."""
    from genrestore.pipeline import _run_stages
    from genrestore.spectral import bin_power_sum, stft
    from genrestore.stages import SpectralStage

    first = len(before)
    while first > 0 and isinstance(before[first - 1], SpectralStage):
        first -= 1
    total: np.ndarray | None = None
    frames = 0
    count = -(-at.length // at.core)
    for k, (segment, offset, middle) in enumerate(_segments(blocks, at.length, at.core,
                                                            at.margin)):
        run = _run_stages(segment, at.rate, before[:first], contexts[:first])
        spec = stft(run.audio, run.sample_rate)
        for spectral, context in zip(before[first:], contexts[first:], strict=True):
            spec, _ = spectral.apply_spectrum(spec, context)
        scale = run.sample_rate / at.rate
        lo = round(offset * scale) // spec.hop  # the frames whose hop starts in the middle
        hi = spec.data.shape[1] if k == count - 1 else round((offset + middle) * scale) // spec.hop
        part = spec.data[:, lo:hi]
        power = bin_power_sum(part)
        total = power if total is None else total + power
        frames += (hi - lo) * part.shape[0]
    assert total is not None  # a file has at least one segment
    return (total / frames).astype(np.float32)


def _input_levels(blocks: _Source, at: _Geometry, before: tuple[Stage, ...],
                  contexts: tuple[Context, ...], stage: Stage, base: Context) -> np.ndarray:
    """``dynamics``' input's 100 ms RMS levels over the whole file
    (:func:`~genrestore.stages.dynamics.block_levels_dbfs` of what it reads when it runs at
    once), from a pass over the segments that runs the stages ``before`` it.  Its threshold
    then follows the whole file's loud level, not each segment's: a quiet passage is not
    compressed against its own loud level."""
    from genrestore.stages.dynamics import _BLOCK_S

    sums: list[np.ndarray] = []
    held = np.zeros(0)  # energy per sample (channels summed) not yet in a whole block
    channels, block = 1, 1
    for _, kept, rate in _segment_runs(blocks, at, before, contexts, base.output_rate_hz):
        channels, block = kept.shape[0], max(1, int(_BLOCK_S * rate))
        energy = np.concatenate([held, np.square(kept, dtype=np.float64).sum(axis=0)])
        whole = energy.size // block * block
        sums.append(energy[:whole].reshape(-1, block).sum(axis=1))
        held = energy[whole:]
    total = np.concatenate(sums) if sums else np.zeros(0)
    if total.size == 0:  # shorter than one block: its mean, as block_levels_dbfs
        total = np.array([held.mean() * block]) if held.size else np.zeros(1)
    return 10.0 * np.log10(np.maximum(total / (channels * block), 1e-20))


@dataclasses.dataclass(frozen=True)
class _SideProbe:
    """Stands in for the ``stereo`` stage in a first pass: its output is the mono signal that
    stage widens and its decorrelated side (:meth:`~genrestore.stages.stereo.Stereo.side`),
    as two channels."""

    stereo: Any
    name: ClassVar[str] = "stereo"

    def apply(self, audio: np.ndarray, sample_rate: int, context: Context
              ) -> tuple[np.ndarray, int, StageReport]:
        mono, side = self.stereo.side(audio, sample_rate)
        return np.concatenate([mono, side]), sample_rate, StageReport(self.name, False, "")


def _side_sums(blocks: _Source, at: _Geometry, before: tuple[Stage, ...],
               contexts: tuple[Context, ...], stage: Stage, base: Context) -> np.ndarray:
    """The sums ``stereo`` solves its side gain from
    (:func:`~genrestore.stages.stereo.side_sums`) over the whole file, from a pass over the
    segments that runs the stages ``before`` it.  Every segment is then widened with the
    whole file's gain."""
    from genrestore.stages.stereo import side_sums

    total = np.zeros(6)
    for _, kept, _ in _segment_runs(blocks, at, (*before, _SideProbe(stage)),
                                    (*contexts, base), base.output_rate_hz):
        total += side_sums(kept[0], kept[1])
    return total


#: What a stage reads of its whole input, when a file is restored in segments: the
#: :class:`~genrestore.stages.Context` field and the pass that gathers it.
_WHOLE_INPUT: dict[str, tuple[str, Callable[..., np.ndarray]]] = {
    "bwe": ("long_term_power", _long_term_power),
    "stereo": ("side_sums", _side_sums),
    "dynamics": ("input_levels_db", _input_levels),
}


def _stage_contexts(blocks: _Source, at: _Geometry, pre: tuple[Stage, ...], base: Context,
                    cache: dict[tuple[int, ...], np.ndarray]) -> tuple[Context, ...]:
    """Each stage's context for a file restored in segments: ``base``, plus, for a stage of
    :data:`_WHOLE_INPUT` that acts (the policy's decision), what it reads of its whole input,
    gathered by a pass that runs the stages before it (with their own contexts), in the
    stages' order.  ``cache`` keeps what was gathered, by the stages up to and including the
    one it is for: the guard's next attempt, which drops a stage, runs again only the passes
    for stages after the one dropped."""
    from genrestore.policy import decide

    contexts: list[Context] = []
    for i, stage in enumerate(pre):
        context = base
        if stage.name in _WHOLE_INPUT:
            before = pre[:i]
            rate_there = (base.output_rate_hz if any(s.name == "resample" for s in before)
                          else at.rate)
            if decide(stage, base.analysis, output_rate_hz=base.output_rate_hz,
                      rate_hz=rate_there).acts:
                field, gather = _WHOLE_INPUT[stage.name]
                key = tuple(id(s) for s in pre[:i + 1])
                if key not in cache:
                    cache[key] = gather(blocks, at, before, tuple(contexts), stage, base)
                context = dataclasses.replace(base, **{field: cache[key]})
        contexts.append(context)
    return tuple(contexts)


def _merged_reports(per_segment: list[tuple[StageReport, ...]]) -> list[StageReport]:
    """One report per stage: the first segment's where it acted (its figures), ``acted`` if
    it acted in any segment."""
    merged: list[StageReport] = []
    for i, first in enumerate(per_segment[0]):
        acting = [reports[i] for reports in per_segment if reports[i].acted]
        chosen = acting[0] if acting else first
        merged.append(dataclasses.replace(chosen, details={
            **chosen.details, "segments_acted": len(acting), "segments": len(per_segment)}))
    return merged


@dataclasses.dataclass
class _Attempt:
    """One run of a preset's stages over a long file: its spill (the stages before
    ``loudness``, at the output rate) and the loudness stage's choice for the last pass."""

    spill: Path
    length: int  # samples in the spill
    rate: int
    channels: int
    reports: list[StageReport]  # the stages before loudness, merged over the segments
    segments: int
    loud: Any  # the loudness stage, or None
    start_lufs: float = float("nan")
    gain_db: float = 0.0
    limited: bool = True
    after_db: float = 0.0
    passes: int = 0

    def loudness_report(self, out_lufs: float, out_peak: float) -> StageReport | None:
        """The loudness stage's report, for an output of ``out_lufs`` and a true peak of
        ``out_peak`` dBTP."""
        loud = self.loud
        if loud is None:
            return None
        acted = bool(np.isfinite(self.start_lufs)) or loud.fixed_gain
        summary = (f"loudness {self.start_lufs:.1f}->{out_lufs:.1f} LUFS, peak {out_peak:.1f} dBTP"
                   if acted else "loudness skipped (silent or shorter than 0.4 s; peaks "
                                 "limited only)")
        return StageReport("loudness", acted, summary, {
            "input_lufs": self.start_lufs, "output_lufs": out_lufs, "true_peak_dbtp": out_peak,
            "gain_db": round(self.gain_db + self.after_db, 3), "limited": self.limited,
            "passes": self.passes, "limiter_passes": self.passes if self.limited else 0})


def _attempt(blocks: Callable[[], Iterator[np.ndarray]], rate: int, analysis: Analysis,
             stages: tuple[Stage, ...], output_rate_hz: int, preset: Preset, spill_path: Path,
             bits: str, fmt: str, tags: Mapping[str, str] | None,
             cache: dict[tuple[int, ...], np.ndarray] | None = None) -> _Attempt:
    """Run ``stages`` (those before ``loudness``) over the file's segments into the spill
    at ``spill_path``, then choose the loudness stage's gain from passes over the spill.
    ``cache`` as for :func:`_stage_contexts` (kept by the caller across attempts)."""
    from genrestore.stages.loudness import (
        _MAX_DRIVE_DB,
        LimiterModel,
        _block_size,
        _pick,
        _Try,
        bracket_gain,
    )

    length = round(analysis.duration_s * rate)
    pre = tuple(s for s in stages if s.name != "loudness")
    loud = next((s for s in stages if s.name == "loudness"), None)
    context = Context(analysis=analysis, output_rate_hz=output_rate_hz)
    unit = _alignment(rate, output_rate_hz, preset)
    core = max(1, round(SEGMENT_S * rate / unit)) * unit
    margin = max(1, math.ceil(MARGIN_S * rate / unit)) * unit
    at = _Geometry(rate, length, core, margin)
    contexts = _stage_contexts(blocks, at, pre, context, {} if cache is None else cache)
    per_segment: list[tuple[StageReport, ...]] = []
    spill: sf.SoundFile | None = None
    try:
        out_rate, channels, written = rate, analysis.channels, 0
        for reports, kept, out_rate in _segment_runs(blocks, at, pre, contexts,
                                                     output_rate_hz):
            if spill is None:
                channels = kept.shape[0]
                spill = sf.SoundFile(os.fsencode(spill_path), "w", out_rate, channels,
                                     subtype="FLOAT", format="W64")
            spill.write(kept.T)
            written += kept.shape[-1]
            per_segment.append(reports)
    finally:
        if spill is not None:
            spill.close()
    done = _Attempt(spill_path, written, out_rate, channels, _merged_reports(per_segment),
                    len(per_segment), loud)

    # The loudness stage's view of its input: gating blocks, 1 ms blocks, true peaks.
    m = _block_size(out_rate)
    meter = LoudnessSum(channels, out_rate, every=m)
    peaks: list[np.ndarray] = []
    for chunk, inner, size in _spill_chunks(spill_path, written, out_rate, m):
        meter.add(chunk[:, inner:inner + size])
        found = block_true_peaks(chunk, m)
        first_block = 1 if inner else 0
        whole = size // m + (1 if inner + size >= chunk.shape[-1] else 0)
        # float32: the limiter model's held peaks (see LimiterModel.from_blocks).
        peaks.append(found[first_block:first_block + whole].astype(np.float32))
    meter.finish()
    gating = meter.energies(meter.blocks[0])
    block_peaks = np.concatenate(peaks) if peaks else np.zeros(1, np.float32)
    del peaks
    done.start_lufs = start_lufs = gated_lufs(gating)
    ceiling = loud.ceiling_dbtp if loud is not None else 0.0
    release = loud.release_ms if loud is not None else 80.0
    trims: dict[float, float] = {}  # the static trim under the ceiling of each try

    def measure(gain: float) -> _Try:
        lufs, blocks_, peak = _render(done, gain, True, ceiling, release, 0.0, bits, fmt,
                                      preset, tags)
        trim = 0.0
        if peak > 10.0 ** (ceiling / 20.0):  # as _trim_to_ceiling does to the whole
            scale = 10.0 ** (ceiling / 20.0) / peak * 0.9999
            trim, peak, blocks_ = 20.0 * np.log10(scale), peak * scale, blocks_ * scale**2
            lufs = gated_lufs(blocks_)
        trims[gain] = trim
        return _Try(gain, lufs, None, blocks_, peak)

    if loud is not None and loud.fixed_gain:
        done.gain_db, done.passes = loud.gain_db, 1
        measure(done.gain_db)  # album mode's one gain: only the static trim is found here
        done.after_db = trims[done.gain_db]
    elif loud is not None and np.isfinite(start_lufs):
        peak = float(block_peaks.max(initial=0.0))
        free = loud.ceiling_dbtp - 20.0 * np.log10(max(peak, 1e-30))
        wanted = loud.target_lufs - start_lufs
        if wanted <= free:  # a plain gain reaches the target under the ceiling
            done.gain_db, done.limited = wanted, False
        else:
            cap = free + (loud.max_limiting_db or _MAX_DRIVE_DB)
            model = LimiterModel.from_blocks(meter.block_sums(np.float32), block_peaks, out_rate,
                                             ceiling_dbtp=loud.ceiling_dbtp,
                                             release_ms=loud.release_ms)
            del meter, block_peaks
            tries, _ = bracket_gain(model, start_lufs, free, cap, loud.target_lufs,
                                    _TOLERANCE_LU, measure)
            pick, trim = _pick(tries, loud.target_lufs, _TOLERANCE_LU, loud.ceiling_dbtp)
            done.gain_db = tries[pick].gain_db
            done.after_db, done.passes = trims[done.gain_db] + trim, len(tries)
    elif loud is None:
        done.limited = False
    return done


def _checked(attempt: _Attempt, base: Any, bits: str, fmt: str, preset: Preset,
             tags: Mapping[str, str] | None) -> list[Any]:
    """The guard's findings on what the last pass would write from ``attempt``: a pass over
    the spill that renders it without writing, measured block by block
    (:class:`~genrestore.guard.OutputMeter`), and the clipped runs counted on a second
    rendering of only the chunks that reach a channel's extremes."""
    from genrestore import guard

    a = attempt
    ceiling = a.loud.ceiling_dbtp if a.loud is not None else 0.0
    release = a.loud.release_ms if a.loud is not None else 80.0
    pre_reports = tuple(a.reports)
    meter = guard.OutputMeter(base, a.rate, a.channels, a.length, pre_reports + tuple(
        r for r in [a.loudness_report(0.0, 0.0)] if r is not None))
    lufs, _, peak = _render(a, a.gain_db, a.limited, ceiling, release, a.after_db, bits, fmt,
                            preset, tags, observe=meter.add)
    out_peak = 20.0 * np.log10(peak) if peak > 0 else float("-inf")
    loud_report = a.loudness_report(lufs, out_peak)
    reports = pre_reports + ((loud_report,) if loud_report is not None else ())
    counter = meter.clip_runs()
    hot = meter.hot_blocks()
    size = _chunk_size(a.rate)
    at = 0  # the chunk the counter has reached

    def count(index: int, middle: np.ndarray) -> None:
        nonlocal at
        if index > at:
            counter.skip(min(a.length, index * size) - min(a.length, at * size))
        counter.add(meter.view(middle))
        at = index + 1

    if hot:
        _render(a, a.gain_db, a.limited, ceiling, release, a.after_db, bits, fmt, preset, tags,
                observe=count, only=set(hot))
    measured = meter.finish(counter.finish()[0], lufs)
    log.debug("guard on %d segments: %s", a.segments, measured)
    return guard.compare(base, measured, reports)


def restore_segmented(
    blocks: Callable[[], Iterator[np.ndarray]],
    rate: int,
    analysis: Analysis,
    destination: str | os.PathLike[str],
    *,
    preset: Preset,
    output_rate_hz: int,
    bits: str,
    file_format: str | None,
    source: str | os.PathLike[str],
    overwrite: bool = False,
    protect: Sequence[str | os.PathLike[str]] = (),
    keep_identical: bool = False,
    tags: Mapping[str, str] | None = None,
    started: float | None = None,
) -> FileResult:
    """Restore a long file given as a :data:`~genrestore.analysis.Blocks` source in bounded
    memory, and write ``destination`` atomically: see the module's text.  The source is read
    once more after its analysis, once for each first pass (:func:`_stage_contexts`: up to
    three), and again for each stage the guard backs off.  The arguments are
    :func:`genrestore.pipeline.restore_to_file`'s."""
    from genrestore.pipeline import FileResult, guard_rounds
    from genrestore.stages.match import reference_paths

    start_time = time.perf_counter() if started is None else started
    dst = Path(destination)
    refused, fmt = check_destination(dst, bits, file_format, overwrite,
                                     (*protect, *reference_paths(preset)), keep_identical)
    spills: list[Path] = []
    gathered: dict[tuple[int, ...], np.ndarray] = {}  # the first passes', across attempts

    def attempt(stages: tuple[Stage, ...]) -> _Attempt:
        for old in spills:  # the attempt the guard rejected
            old.unlink(missing_ok=True)
        spills.append(_create_temp(dst.with_name(dst.name + ".spill")))
        return _attempt(blocks, rate, analysis, stages, output_rate_hz, preset, spills[-1],
                        bits, fmt, tags, gathered)

    try:
        done = attempt(preset.stages)
        guard_report = None
        if preset.guard:
            from genrestore import guard

            base = guard.baseline(analysis)
            done, guard_report = guard_rounds(
                preset.stages, done, attempt,
                lambda a: _checked(a, base, bits, fmt, preset, tags))
        ceiling = done.loud.ceiling_dbtp if done.loud is not None else 0.0
        release = done.loud.release_ms if done.loud is not None else 80.0

        def write(tmp: Path) -> None:
            figures.update(zip(("lufs", "blocks", "peak"),
                               _render(done, done.gain_db, done.limited, ceiling, release,
                                       done.after_db, bits, fmt, preset, tags, sink=tmp),
                               strict=True))
            if refused and not _same_bytes(tmp, dst):
                from genrestore.errors import AudioFileError

                raise AudioFileError(dst, "output exists (use --overwrite to replace it)")

        figures: dict[str, Any] = {}
        _write_atomic(dst, write)
        out_lufs = float(figures["lufs"])
        out_peak = 20.0 * np.log10(figures["peak"]) if figures["peak"] > 0 else float("-inf")
        reports = list(done.reports)
        loud_report = done.loudness_report(out_lufs, out_peak)
        if loud_report is not None:
            reports.append(loud_report)
        reports.append(guard_report or StageReport(
            "guard", False, f"guard: off (a file restored in {done.segments} segments)",
            {"backed_off": [], "problems": []}))
    finally:
        for spill in spills:
            spill.unlink(missing_ok=True)
    return FileResult(source=Path(source), destination=dst, analysis=analysis,
                      reports=tuple(reports), output_lufs=out_lufs,
                      output_true_peak_dbtp=out_peak,
                      seconds=time.perf_counter() - start_time)


def _chunk_size(rate: int) -> int:
    """Samples in each chunk the spill is read in: whole limiter blocks, about
    :data:`_CHUNK_S`."""
    from genrestore.stages.loudness import _block_size

    m = _block_size(rate)
    return max(1, round(_CHUNK_S * rate / m)) * m


def _spill_chunks(path: Path, length: int, rate: int, m: int, margin: int = 0, *,
                  only: set[int] | None = None) -> Iterator[tuple[Any, int, int]]:
    """The spill in chunks of whole ``m``-sample blocks (:func:`_chunk_size`): ``(chunk,
    where its middle starts, middle length)``, each chunk the middle plus one block (or
    ``margin``) either side; with ``only``, ``(None, 0, 0)`` for a chunk not in it, unread."""
    side = max(m, margin)
    size = _chunk_size(rate)
    with sf.SoundFile(os.fsencode(path)) as f:
        for start in range(0, length, size):
            if only is not None and start // size not in only:
                yield None, 0, 0
                continue
            lo, hi = max(0, start - side), min(length, start + size + side)
            f.seek(lo)
            chunk = f.read(hi - lo, dtype="float32", always_2d=True).T
            yield np.ascontiguousarray(chunk), start - lo, min(size, length - start)


def _render(attempt: _Attempt, gain_db: float, limit: bool, ceiling_dbtp: float,
            release_ms: float, after_db: float, bits: str, fmt: str, preset: Preset,
            tags: Mapping[str, str] | None, sink: Path | None = None, *,
            observe: Callable[[int, np.ndarray], None] | Callable[[np.ndarray], None] | None = None,
            only: set[int] | None = None) -> tuple[float, np.ndarray, float]:
    """One pass over the attempt's spill: gain, the limiter (``limit``), a plain gain
    ``after_db``; with a ``sink``, dither and write it there.  Returns the result's LUFS,
    gating-block energies and linear true peak.  ``observe`` is given each chunk's result
    before dither (with ``only``, its index too, and only the chunks in ``only`` are
    rendered: each chunk's result depends on its own part of the spill, read with
    :data:`_CHUNK_MARGIN_S` either side, and nothing else; the figures returned are then
    those of the chunks rendered)."""
    from contextlib import nullcontext

    from genrestore.stages.loudness import _block_size, _brickwall

    spill, length, rate, channels = attempt.spill, attempt.length, attempt.rate, attempt.channels
    m = _block_size(rate)
    margin = max(m, round(_CHUNK_MARGIN_S * rate / m) * m)
    meter = LoudnessSum(channels, rate)
    peak = 0.0
    subtype = "FLOAT" if bits == "32f" else f"PCM_{bits}"
    gain = np.float32(10.0 ** (gain_db / 20.0))
    after = np.float32(10.0 ** (after_db / 20.0))
    out = (sf.SoundFile(os.fsencode(sink), "w", rate, channels, subtype=subtype,
                        format=fmt.upper()) if sink is not None else nullcontext())
    with out as f:
        for name, text in (tag_texts(tags, fmt, spill) if f is not None else {}).items():
            setattr(f, name, text)
        for index, (chunk, inner, size) in enumerate(_spill_chunks(spill, length, rate, m,
                                                                          margin, only=only)):
            if chunk is None:
                continue
            x = chunk * gain
            if limit:
                x = _brickwall(x, rate, ceiling_dbtp, release_ms, 5.0)
            if after_db:
                x *= after
            middle = x[:, inner:inner + size]
            peak = max(peak, true_peak(x[:, max(0, inner - 6):inner + size + 6]))
            meter.add(middle)
            if observe is not None:
                if only is None:
                    observe(middle)  # type: ignore[call-arg]
                else:
                    observe(index, middle)  # type: ignore[call-arg]
            if f is None:
                continue
            if bits == "32f":
                f.write(np.ascontiguousarray(middle.T, dtype=np.float32))
            else:
                noisy = dither(middle, bits=int(bits), seed=preset.dither.seed + index,
                               shape=preset.dither.shape)
                ints, _ = quantize(noisy, int(bits))
                f.write(np.ascontiguousarray(ints.T))
    meter.finish()
    blocks = meter.energies(meter.blocks[0])
    return gated_lufs(blocks), blocks, peak
