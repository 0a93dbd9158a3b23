"""Command-line interface: a thin layer over :mod:`genrestore.pipeline` and friends.

Exit codes: 0 all good, 1 one or more files failed, 2 usage error (bad flag, preset or
``--set``), 130 interrupted (Ctrl-C).  Every failure is one line on stderr that names the file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrestore import __version__
from genrestore.errors import FILE_ERRORS, GenrestoreError, ParameterError
from genrestore.manifest import Manifest, Record, file_digest, settings_digest
from genrestore.parallel import default_jobs, worker_pool
from genrestore.preset import (
    DEFAULT_PRESET,
    OUTPUT_BITS,
    OUTPUT_FORMATS,
    OUTPUT_RATES_HZ,
    load_preset,
    parse_set_option,
    preset_names,
    stage_parameters,
)
from genrestore.targets import TARGETS

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from genrestore.album import AlbumPlan, AlbumTrack
    from genrestore.pipeline import FileResult
    from genrestore.preset import Preset

log = logging.getLogger("genrestore")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class Job:
    source: Path
    destination: Path
    preset: str | Preset  # a loaded preset carries its reference profiles to the workers
    overrides: dict[str, dict[str, Any]]
    rate: int
    bits: str
    file_format: str
    overwrite: bool
    keep_identical: bool = False  # a re-run after a lost worker: its own output is no error
    input_sha256: str | None = None  # the input's hash from before its restore (the manifest's)
    hash_input: bool = False  # hash the input in the worker, just before restoring it


Outcome = tuple[Job, "FileResult | None", str | None]

#: Every source of the running batch: the write-time check refuses them all as destinations.
#: A module global (set once per worker by the pool's initializer) so that it is not pickled
#: with every job.
_PROTECT: tuple[Path, ...] = ()


def _set_protect(paths: tuple[Path, ...]) -> None:
    global _PROTECT
    _PROTECT = paths


_BUSY = False


def _on_interrupt(signum: int, frame: object) -> None:
    """SIGINT in a worker: stop the file in progress (its writer removes its temporary file);
    an idle worker ignores it and is shut down by the main process."""
    if _BUSY:
        raise KeyboardInterrupt


class _Terminated(KeyboardInterrupt):
    """SIGTERM in a worker (the pool stops its workers that way when one of them died)."""


def _on_terminate(signum: int, frame: object) -> None:
    if _BUSY:
        raise _Terminated  # the writer removes its temporary file on the way out
    os._exit(128 + signum)


def restore_file(*args: Any, **kwargs: Any) -> FileResult:
    """:func:`genrestore.pipeline.restore_file`, imported when the first file is restored (the
    DSP stack is not loaded for ``--help``)."""
    from genrestore.pipeline import restore_file as restore

    return restore(*args, **kwargs)


def _run_job(job: Job) -> Outcome:
    global _BUSY
    _BUSY = True
    if job.hash_input:  # the input as it is read now: one edited meanwhile is redone next time
        job = dataclasses.replace(job, input_sha256=_digest(job.source))
    try:
        result = restore_file(job.source, job.destination, preset=job.preset,
                              output_rate_hz=job.rate, bits=job.bits, file_format=job.file_format,
                              overwrite=job.overwrite, overrides=job.overrides, protect=_PROTECT,
                              keep_identical=job.keep_identical)
    except FILE_ERRORS as exc:
        return job, None, _one_line(job.source, exc)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)
    finally:
        _BUSY = False
    return job, result, None


def _one_line(path: Path, exc: BaseException) -> str:
    """A failure as one line naming the file (library errors already start with it)."""
    log.debug("failed on %s", path, exc_info=True)
    message = str(exc) if isinstance(exc, GenrestoreError) else (
        f"{path}: {type(exc).__name__}: {exc}")
    return message.splitlines()[0] if message else str(path)


def _summary(result: FileResult) -> str:
    a = result.analysis
    acted = ", ".join(r.summary for r in result.reports if r.acted and r.stage != "resample")
    if a.cutoff_hz <= 0:
        cutoff = "n/a (silent)"
    elif a.is_full_band:
        cutoff = f"full band ({a.sample_rate / 2000:g} kHz)"
    else:
        cutoff = f"{a.cutoff_hz / 1000:.1f} kHz"
    return (f"{result.source} -> {result.destination}: {a.integrated_lufs:.1f} -> "
            f"{result.output_lufs:.1f} LUFS, true peak {a.true_peak_dbtp:+.1f} -> "
            f"{result.output_true_peak_dbtp:+.1f} dBTP, cutoff {cutoff}"
            f" [{acted or 'no restoration stage acted'}] ({result.seconds:.2f} s)")


RESTORED_SUFFIX = "_restored"


@dataclass(frozen=True)
class BatchPlan:
    """What ``restore`` will do: ``pairs`` (source, destination, format) to run; ``refusals``
    (source, one error line: a destination that is an input, collides or exists); ``sources``
    (every file of the batch that must never be written: sources, refused ones included, and
    skipped files beside them); ``skipped`` (earlier outputs found while walking a folder,
    not restored again); ``report_folder`` (the report's default
    folder: beside the outputs); ``manifest`` (the batch's :class:`~genrestore.manifest.Manifest`
    when it keeps one), ``done`` (source, destination) pairs the manifest shows done with the
    same input and settings, ``reasons`` why each pair runs (``new``, or why it is redone) and
    ``replace`` whether each pair may replace an existing output (``overwrite``, or the manifest
    shows that output genrestore's own, unchanged)."""

    pairs: tuple[tuple[Path, Path, str], ...]
    refusals: tuple[tuple[Path, str], ...]
    sources: tuple[Path, ...]
    skipped: tuple[Path, ...]
    report_folder: Path
    manifest: Manifest | None = None
    done: tuple[tuple[Path, Path], ...] = ()
    reasons: tuple[str, ...] = ()
    replace: tuple[bool, ...] = ()  # per pair: its existing output may be replaced


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (through symlinks), else None."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _place(path: Path) -> str:
    """Where a path that may not exist yet would land (parents' symlinks resolved)."""
    return os.path.normcase(os.path.realpath(path))


def _is_under(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True


def _walk(inputs: Sequence[str], output: str | None
          ) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Files of the batch as (file, path relative to its root), then what a folder walk left
    out: earlier outputs beside their inputs, and files under the output folder.

    Left out of a walk: files under the output folder, and, when outputs go beside their
    inputs, ``STEM_restored.wav``/``.flac`` beside a ``STEM.*`` of the same walk (an earlier
    output, or an input that only looks like one: it is protected as an input).  A file
    named on the command line is always taken.
    """
    from genrestore.io import find_audio_files

    found: list[tuple[Path, Path]] = []
    skipped: list[Path] = []
    in_output: list[Path] = []
    output_dir = Path(output) if output is not None and Path(output).is_dir() else None
    for raw in inputs:
        walked = Path(raw).is_dir()
        files = find_audio_files([raw])
        if walked and output_dir is not None and not os.path.samefile(raw, output_dir):
            inside = {f for f, _ in files if _is_under(f, output_dir)}
            in_output += [f for f, _ in files if f in inside]
            files = [(f, rel) for f, rel in files if f not in inside]
        if walked and output is None:
            stems = {(f.parent, f.stem) for f, _ in files}
            earlier = {f for f, _ in files
                       if f.suffix.lower().lstrip(".") in OUTPUT_FORMATS
                       and f.stem.endswith(RESTORED_SUFFIX)
                       and (f.parent, f.stem.removesuffix(RESTORED_SUFFIX)) in stems}
            skipped += [f for f, _ in files if f in earlier]
            files = [(f, rel) for f, rel in files if f not in earlier]
        found += files
    return found, skipped, in_output


def _output_target(inputs: Sequence[str], output: str | None, count: int) -> tuple[str, Path | None]:
    """How ``-o`` is read: ("beside", None), ("file", path) or ("folder", path).

    A folder when it exists as one, ends with a slash, or has no suffix; a file name for one
    input file only, and then its suffix must be an output format.  Anything else is a usage
    error: a folder is created only when the user named one.
    """
    if output is None:
        return "beside", None
    out = Path(output)
    if out.is_dir() or output.endswith(("/", os.sep)):
        return "folder", out
    suffix = out.suffix.lower().lstrip(".")
    one_file = count == 1 and len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if out.exists() and not one_file:
        raise ParameterError(f"-o {output}: exists and is not a folder")
    if not suffix and not out.exists():
        return "folder", out
    if one_file:
        if suffix not in OUTPUT_FORMATS:
            raise ParameterError(f"-o {output}: {out.suffix or 'no suffix'} is not an output format "
                                 f"({', '.join(OUTPUT_FORMATS)}); to write into a folder, "
                                 f"end the name with /")
        return "file", out
    raise ParameterError(f"-o {output}: names one file, but the batch has {count} "
                         f"file{'s' if count != 1 else ''}; "
                         f"give a folder (end the name with /)")


def plan_batch(inputs: Sequence[str], output: str | None = None, *, file_format: str | None = None,
               overwrite: bool = False, settings: str | None = None,
               force: bool = False, protect: Sequence[Path] = ()) -> BatchPlan:
    """Decide every job of a ``restore`` batch before any work starts.

    Refuses (one line each, the rest of the batch still runs): a destination that is one of
    the batch's sources, compared by file identity so symlinks, hard links and every
    spelling of a path are caught; two jobs writing one destination; an existing
    destination without ``overwrite``.  Raises :class:`ParameterError` for usage errors
    (no files, ``-o`` that cannot hold the batch, ``--format`` against the ``-o`` suffix).

    With ``settings`` (:func:`~genrestore.manifest.settings_digest`), a batch that writes into
    a folder (``-o FOLDER``, or beside the inputs of a folder or of several files) keeps a
    manifest there: what it shows done with the same input and settings is not run again
    (``force`` runs it again), and an existing destination that it shows genrestore wrote,
    unchanged since, may be replaced without ``overwrite``.  ``protect`` names more files no
    job may write (a reference track): they are refused as destinations like the sources.
    """
    found, skipped, in_output = _walk(inputs, output)
    # The same file named twice (or by two spellings) is one job, not a collision with itself.
    found = list({(_identity(src) or _place(src), rel): (src, rel) for src, rel in found
                  }.values())
    if not found:
        left = len(skipped) + len(in_output)
        raise ParameterError("no audio files found in " + ", ".join(inputs)
                             + (f" ({left} earlier outputs skipped)" if left else ""))
    kind, out = _output_target(inputs, output, len(found))
    if kind == "file":
        assert out is not None
        suffix = out.suffix.lower().lstrip(".")
        if file_format is not None and file_format != suffix:
            raise ParameterError(f"--format {file_format} disagrees with -o {output}")
        planned = [(found[0][0], out, suffix)]
        report_folder = out.parent
    else:
        fmt = file_format or "wav"
        if kind == "folder":
            assert out is not None
            planned = [(src, out / rel.with_suffix(f".{fmt}"), fmt) for src, rel in found]
            report_folder = out
        else:
            planned = [(src, src.with_name(f"{src.stem}{RESTORED_SUFFIX}.{fmt}"), fmt)
                       for src, _ in found]
            try:
                report_folder = Path(os.path.commonpath([dst.parent for _, dst, _ in planned]))
            except ValueError:  # absolute and relative paths mixed
                report_folder = planned[0][1].parent
    one_file = len(planned) == 1 and len(inputs) == 1 and not Path(inputs[0]).is_dir()
    manifest = None if settings is None or kind == "file" or one_file else Manifest(report_folder)
    decisions = [manifest.decide(src, dst, settings, force=force)
                 if manifest is not None and settings is not None else None
                 for src, dst, _ in planned]
    # An earlier output beside its input is kept (it may be an input), unless the manifest
    # shows it is genrestore's own output of that input, unchanged since: then a redo (changed
    # settings or input, --force) replaces it like any output of a batch.
    ours = {_identity(dst) for (_, dst, _), decision in zip(planned, decisions, strict=True)
            if decision is not None and decision.action == "redo" and decision.replace_output
            } - {None}
    skipped_kept = [f for f in skipped if _identity(f) not in ours]
    sources: dict[tuple[int, int], Path] = {}
    for src in [src for src, _, _ in planned] + skipped_kept + list(protect):
        key = _identity(src)
        if key is not None:
            sources.setdefault(key, src)
    kept = {_identity(f) for f in skipped_kept}
    pairs: list[tuple[Path, Path, str]] = []
    refusals: list[tuple[Path, str]] = []
    taken: dict[object, Path] = {}
    done: list[tuple[Path, Path]] = []
    reasons: list[str] = []
    replace: list[bool] = []
    for (src, dst, fmt), decision in zip(planned, decisions, strict=True):
        key = _identity(dst)
        place: object = key if key is not None else _place(dst)
        if decision is not None and decision.action == "skip":
            # Done: its output is the one written then; it still claims that destination, so
            # another file of the batch mapped there collides instead of replacing it.
            taken.setdefault(place, src)
            done.append((src, dst))
            continue
        if key is not None and key in kept:
            refusals.append((src, f"{src}: output {dst} exists in the folder being restored and "
                                  f"is never replaced there (it may be an input): delete it, or "
                                  f"restore into -o FOLDER"))
            continue
        if key is not None and key in sources:
            refusals.append((src, f"{src}: output {dst} is an input of this batch "
                                  f"({sources[key]}); refusing to overwrite it"))
            continue
        if place in taken:
            refusals.append((src, f"{src}: output {dst} would collide with the output of "
                                  f"{taken[place]}"))
            continue
        taken[place] = src
        if key is not None and not overwrite and not (decision and decision.replace_output):
            refusals.append((src, f"{src}: output {dst} exists (use --overwrite to replace it)"))
            continue
        pairs.append((src, dst, fmt))
        reasons.append("new" if decision is None or decision.action == "new" else decision.reason)
        replace.append(overwrite or bool(decision and decision.replace_output))
    every = [src for src, _, _ in planned] + skipped_kept + list(protect)
    return BatchPlan(tuple(pairs), tuple(refusals), tuple(dict.fromkeys(every)),
                     tuple(skipped + in_output), report_folder, manifest, tuple(done),
                     tuple(reasons), tuple(replace))


def cmd_restore(args: argparse.Namespace) -> int:
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set or []:
        stage, param, value = parse_set_option(item)
        overrides.setdefault(stage, {})[param] = value
    if args.stereo:
        overrides.setdefault("stereo", {})["enabled"] = True
    # Usage errors surface once, before any file.  A target's figures are loudness overrides
    # under --set, so the preset (and the manifest's settings digest) carry them.
    preset = _restore_preset(args, overrides)
    from genrestore.stages.match import reference_paths

    references = reference_paths(preset)  # protected like the inputs: never a destination
    settings = settings_digest(preset, args.rate, args.bits, args.format or "wav", __version__)
    plan = plan_batch(args.inputs, args.output, file_format=args.format, overwrite=args.overwrite,
                      settings=settings, force=args.force, protect=references)
    album: AlbumPlan | None = None
    if args.album:
        # Pass 1 measures every file the batch will have an output of; the album's one gain
        # becomes a loudness override, so the settings digest (and the manifest) carry it.
        album = _album_pass(plan, preset, args)
        for stage, params in album.overrides().items():
            overrides.setdefault(stage, {}).update(params)
        preset = _restore_preset(args, overrides)
        settings = settings_digest(preset, args.rate, args.bits, args.format or "wav",
                                   __version__)
        plan = plan_batch(args.inputs, args.output, file_format=args.format,
                          overwrite=args.overwrite, settings=settings, force=args.force,
                          protect=references)
    if args.dry_run:
        return _dry_run(plan, preset, args.rate, args.json, args.jobs)
    report_path = None
    if args.report is not None:
        report_path = Path(args.report) if args.report else plan.report_folder / "report.html"
        _check_report_path(report_path, args.overwrite,
                           [*plan.sources, *(dst for _, dst, _ in plan.pairs)])
    if plan.skipped and not args.quiet:
        print(f"genrestore: skipped {len(plan.skipped)} earlier output(s) found in the folders "
              f"(e.g. {plan.skipped[0]}); they are not restored again", file=sys.stderr)
    # The manifest records each input's hash from before its restore (an input changed while
    # it is restored is then redone by the next run, never taken as done), hashed by the
    # worker that restores it.  The loaded preset (target, reference profiles and album gain
    # in it) goes to every job.
    jobs = [Job(src, dst, preset, {}, args.rate, args.bits, fmt, replace,
                hash_input=plan.manifest is not None)
            for (src, dst, fmt), replace in zip(plan.pairs, plan.replace, strict=True)]
    stamps = [_stamp(job.destination) for job in jobs]
    failures: list[str] = [message for _, message in plan.refusals]
    for message in failures:
        _error(message)
    if args.json:
        for src, message in plan.refusals:
            _print_json(_failed_json(src, None, message))
        for src, dst in plan.done:
            _print_json(_done_json(src, dst, plan.manifest))
    if plan.done and not args.quiet:
        print(f"genrestore: {len(plan.done)} file(s) already done with the same input and "
              f"settings (manifest {plan.manifest.path if plan.manifest else ''}); not restored "
              f"again (--force redoes them)", file=sys.stderr)
    outcomes: dict[int, Outcome] = {}
    started = time.perf_counter()
    show_bar = len(jobs) > 1 and not args.quiet and sys.stderr.isatty()
    stopped: _Stopped | None = None
    stopper = _Stopper()
    previous = {signum: signal.signal(signum, stopper) for signum in (signal.SIGINT,
                                                                      signal.SIGTERM)}
    try:
        with _progress(len(jobs), show_bar, "file") as bar:
            def take(index: int, outcome: Outcome) -> None:
                with stopper.shielded():  # a finished file is reported and recorded whole
                    if index in outcomes:
                        return
                    outcomes[index] = outcome
                    _report(outcome, failures, args.quiet, bar, args.explain, args.json)
                    bar.set_postfix_str(_rate(len(outcomes), time.perf_counter() - started))
                    if plan.manifest is not None:
                        _record(plan.manifest, outcome, settings)

            if args.dask:
                _run_dask(jobs, args.dask, plan.sources, take)
            elif args.jobs > 1 and len(jobs) > 1:
                _run_parallel(jobs, args.jobs, plan.sources, take)
            else:
                _set_protect(plan.sources)
                for index, job in enumerate(jobs):
                    take(index, _run_job(job))
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM, through the stopper
        stopped = exc if isinstance(exc, _Stopped) else _Stopped(signal.SIGINT)
        stopper.stopping = True  # more signals while the batch winds down are not a new stop
        # A file whose output landed as the stop came, before its outcome was taken, is
        # complete (outputs are written atomically): record it rather than leave it unknown.
        for index, job in enumerate(jobs):
            if index not in outcomes and _stamp(job.destination) != stamps[index]:
                _error(f"{job.source}: output {job.destination} was written as the batch "
                       f"stopped" + ("; recorded in the manifest" if plan.manifest else ""))
                if plan.manifest is not None:
                    _record(plan.manifest, (job, None, None), settings)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stopped is None:  # every writer has finished: what a killed one left is not a file
        from genrestore.io import remove_dead_writers_parts

        for part in remove_dead_writers_parts([job.destination for job in jobs]):
            log.info("removed %s, left by a worker that was killed while writing", part)
    done = sum(1 for _, result, _ in outcomes.values() if result is not None)
    if (len(jobs) + len(plan.refusals) > 1 or failures or stopped) and not args.quiet:
        left = len(jobs) - len(outcomes)
        print(f"{done} restored, {len(failures)} failed"
              f"{f', {left} not done (interrupted)' if stopped else ''}"
              f"{_throughput(done, time.perf_counter() - started, args.jobs, args.dask)}",
              file=sys.stderr)
    if stopped is not None:
        print("genrestore: interrupted; files already written are complete"
              f"{' and in the manifest' if plan.manifest else ''}, no other output was written",
              file=sys.stderr)
        return 128 + stopped.signum
    album_line = None
    if album is not None:
        written = [result.destination for _, result, _ in outcomes.values() if result is not None]
        album_line = _album_figure(album, [*written, *(dst for _, dst in plan.done)])
        if not args.quiet:
            print(f"genrestore: {album_line}", file=sys.stderr)
    if report_path is not None:
        collected = [outcomes[i] for i in sorted(outcomes)]
        _write_report(report_path, plan, collected, args.jobs, args.overwrite, args.quiet,
                      album_line)
    return EXIT_FAILED if failures else EXIT_OK


def _album_pass(plan: BatchPlan, preset: Preset, args: argparse.Namespace) -> AlbumPlan:
    """``--album``, pass 1: measure every file the batch restores or has done (on the worker
    pool), and plan the album's one gain.  A file that cannot be measured is left out of the
    album (pass 2 reports its error)."""
    from genrestore.album import loudness_stage, plan_album

    loudness_stage(preset)  # a usage error before any work
    members = [src for src, _, _ in plan.pairs] + [src for src, _ in plan.done]
    if not args.quiet:
        print(f"genrestore: album: measuring {len(members)} file(s) before restoring them "
              f"(pass 1 of 2)", file=sys.stderr)
    measured = _measure_album(members, preset, args.rate, args.jobs, plan.sources)
    tracks = [t for t in measured if not isinstance(t, str)]
    album = plan_album(tracks, preset)
    if not args.quiet:
        print(f"genrestore: {album.summary()} (predicted)", file=sys.stderr)
    return album


def _measure_one(source: Path, preset: Preset, rate: int) -> AlbumTrack | str:
    from genrestore.album import measure_track_file

    try:
        return measure_track_file(source, preset, output_rate_hz=rate)
    except FILE_ERRORS as exc:
        return _one_line(source, exc)


def _measure_album(sources: list[Path], preset: Preset, rate: int, workers: int,
                   protect: tuple[Path, ...]) -> list[AlbumTrack | str]:
    """:func:`_measure_one` of every source, on ``workers`` processes; a file whose worker
    dies is measured again in a pool of its own, and left out if it dies again."""
    from concurrent.futures.process import BrokenProcessPool

    done: dict[int, AlbumTrack | str] = {}
    if workers > 1 and len(sources) > 1:
        pool = _pool(min(workers, len(sources)), protect)
        try:
            futures = [pool.submit(_measure_one, src, preset, rate) for src in sources]
            for index, future in enumerate(futures):
                try:
                    done[index] = future.result()
                except BrokenProcessPool:
                    continue
        finally:  # Ctrl-C: the files not yet measured are dropped, not waited for
            pool.shutdown(wait=True, cancel_futures=True)
    for index, src in enumerate(sources):
        if index in done:
            continue
        if workers == 1 or len(sources) == 1:
            done[index] = _measure_one(src, preset, rate)
            continue
        with _pool(1, protect) as alone:
            try:
                done[index] = alone.submit(_measure_one, src, preset, rate).result()
            except BrokenProcessPool:
                done[index] = f"{src}: worker died while measuring it for the album"
    return [done[i] for i in range(len(sources))]


def _album_figure(album: AlbumPlan, outputs: list[Path]) -> str:
    """The album line with its loudness measured on the written outputs."""
    from genrestore.album import output_album_lufs

    try:
        measured: float | None = output_album_lufs(outputs)
    except FILE_ERRORS as exc:
        _error(f"album: could not measure the outputs: {exc}")
        measured = None
    return album.summary(measured)


def _restore_preset(args: argparse.Namespace, overrides: dict[str, dict[str, Any]]) -> Preset:
    """The preset a ``restore`` run uses: ``--preset`` with ``--set``, ``--target`` and
    ``--reference``.  ``--set match.*`` applies to the match stage ``--reference`` adds; an
    explicit loudness target (``--target`` or ``--set loudness.target_lufs``) wins over the
    reference's loudness (the match then leaves the loudness stage's target alone)."""
    chosen = {k: dict(v) for k, v in overrides.items()}
    match: dict[str, Any] = {}
    if args.reference is not None and "match" in chosen:
        match = stage_parameters("match", chosen.pop("match"))
        for key, flag in (("reference", "--reference"), ("strength", "--match-strength")):
            if key in match and (key == "reference" or args.match_strength is not None):
                raise ParameterError(f"--set match.{key} and {flag} both given: use one")
    explicit = args.target is not None or "target_lufs" in chosen.get("loudness", {})
    if explicit and args.reference is not None and "loudness" not in match:
        match["loudness"] = False
    preset = load_preset(args.preset, chosen, target=args.target)
    if explicit and args.reference is None:
        preset = dataclasses.replace(preset, stages=tuple(
            dataclasses.replace(s, loudness=False)
            if s.name == "match" and "loudness" not in chosen.get("match", {}) else s
            for s in preset.stages))
    return _with_reference(preset, args.reference, args.match_strength, match)


def _with_reference(preset: Preset, reference: str | None, strength: float | None,
                    params: dict[str, Any] | None = None) -> Preset:
    """``preset`` with ``--reference`` / ``--match-strength`` applied and every reference
    read once (its profile travels with the preset to every worker); an unreadable
    reference is a usage error naming the file, before any work."""
    if reference is not None or strength is not None:
        from genrestore.stages.match import with_reference

        has_match = any(s.name == "match" and getattr(s, "reference", "") for s in preset.stages)
        if reference is None and not has_match:
            raise ParameterError("--match-strength needs --reference (or a preset with a "
                                 "match stage and its reference)")
        if reference is None:  # the preset's own reference, at this strength
            preset = dataclasses.replace(preset, stages=tuple(
                dataclasses.replace(s, strength=strength) if s.name == "match" else s
                for s in preset.stages))
        else:
            preset = with_reference(preset, reference, **(params or {}),
                                    **({} if strength is None else {"strength": strength}))
    if not any(s.name == "match" for s in preset.stages):
        return preset
    from genrestore.stages.match import resolve_references

    return resolve_references(preset)


class _Stopped(KeyboardInterrupt):
    """The batch was told to stop (SIGINT or SIGTERM): the files in flight end cleanly."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)


class _Stopper:
    """The running batch's SIGINT and SIGTERM handler: raises :class:`_Stopped` (exit status
    130 or 143), except while a finished file is being reported and recorded
    (:meth:`shielded`), where the stop waits until that is done."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.stopping = False  # set once the stop is under way: later signals change nothing

    def __call__(self, signum: int, frame: object) -> None:
        if self.stopping:
            return
        if self.depth:
            self.pending = signum
            return
        self.stopping = True
        raise _Stopped(signum)

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                signum, self.pending = self.pending, None
                self.stopping = True
                raise _Stopped(signum)


def _digest(path: Path) -> str | None:
    """A file's SHA-256, or None when it cannot be read (its job then fails and says why)."""
    try:
        return file_digest(path)
    except OSError:
        return None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, modification time, size) of an existing file: it changes when a file lands."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _record(manifest: Manifest, outcome: Outcome, settings: str) -> None:
    """Append one file's outcome to the manifest: the input's hash from before its restore
    (the job's), the output's hashed here.  An outcome with neither result nor error is an
    output that landed as the batch stopped: done, its figures unknown."""
    job, result, error = outcome

    def finite(value: float) -> float | None:
        return round(value, 2) if math.isfinite(value) else None

    try:  # absolute paths: the same batch run from another folder finds its records
        digest = job.input_sha256 or file_digest(job.source)
        if error is not None:
            record = Record(os.path.abspath(job.source), digest, settings, __version__, "failed",
                            os.path.abspath(job.destination), error=error)
        elif result is None:
            record = Record(os.path.abspath(job.source), digest, settings, __version__, "done",
                            os.path.abspath(job.destination), file_digest(job.destination))
        else:
            record = Record(os.path.abspath(job.source), digest, settings, __version__, "done",
                            os.path.abspath(result.destination), file_digest(result.destination),
                            finite(result.output_lufs), finite(result.output_true_peak_dbtp))
        manifest.append(record)
    except OSError as exc:  # the batch goes on; the file is redone on the next run
        _error(f"{manifest.path}: could not record {job.source}: {exc}")


def _plan_file(source: Path, preset: Preset, rate: int) -> Any:
    """The policy's decisions for one file (its analysis read a block at a time), or the
    one-line error that keeps it from being read."""
    from genrestore.analysis import analyze_blocks
    from genrestore.io import read_blocks
    from genrestore.policy import plan as plan_stages

    try:
        info, blocks = read_blocks(source)
        analysis = analyze_blocks(blocks, info.sample_rate, info.channels, source=str(source))
    except FILE_ERRORS as exc:
        return _one_line(source, exc)
    return plan_stages(preset, analysis, output_rate_hz=rate)


def _dry_run(plan: BatchPlan, preset: Preset, rate: int, as_json: bool = False,
             workers: int = 1) -> int:
    """``--dry-run``: what the batch would do, nothing written: each file to restore with the
    stages that would act on it and why (:func:`genrestore.policy.plan` on its analysis, read
    a block at a time, on ``workers`` processes), the files done, the refusals; with
    ``--json``, one object each."""
    sources = [src for src, _, _ in plan.pairs]
    if workers > 1 and len(sources) > 1:
        with _pool(min(workers, len(sources)), plan.sources) as pool:
            planned = list(pool.map(_plan_file, sources, [preset] * len(sources),
                                    [rate] * len(sources)))
    else:
        planned = [_plan_file(src, preset, rate) for src in sources]
    failed = 0
    for (src, dst, _), reason, decisions in zip(plan.pairs, plan.reasons, planned, strict=True):
        if isinstance(decisions, str):
            failed += 1
            if as_json:
                _print_json({"source": str(src), "destination": str(dst), "status": "failed",
                             "reason": reason, "stages": None, "error": decisions})
            else:
                print(f"fail    {decisions}")
            continue
        if as_json:
            _print_json({"source": str(src), "destination": str(dst), "status": "would restore",
                         "reason": reason, "error": None,
                         "stages": [{"stage": d.name, "acts": d.acts, "why": d.why}
                                    for d in decisions]})
            continue
        print(f"restore {src} -> {dst}" + (f" ({reason})" if reason != "new" else ""))
        for d in decisions:
            print(f"    {d.line()}")
    for src, dst in plan.done:
        if as_json:
            _print_json({"source": str(src), "destination": str(dst), "status": "done",
                         "reason": "manifest: same input and settings", "stages": None,
                         "error": None})
        else:
            print(f"done    {src} -> {dst} (manifest: same input and settings)")
    for src, message in plan.refusals:
        if as_json:
            _print_json({"source": str(src), "destination": None, "status": "refused",
                         "reason": None, "stages": None, "error": message})
        else:
            print(f"refuse  {message}")
    print(f"{len(plan.pairs)} to restore, {len(plan.done)} already done, "
          f"{len(plan.refusals)} refused" + (f", {failed} unreadable" if failed else "")
          + (f"; manifest {plan.manifest.path}" if plan.manifest else ""), file=sys.stderr)
    return EXIT_FAILED if plan.refusals or failed else EXIT_OK


def _rate(done: int, seconds: float) -> str:
    """``487 clips/min``: files finished per minute of the batch so far (the progress bar's
    own rate is per second, and its time left comes from it)."""
    return f"{done * 60.0 / seconds:.0f} clips/min" if seconds > 0 else ""


def _throughput(done: int, seconds: float, jobs: int, dask: str | None = None) -> str:
    """`` in 12.3 s (487 clips/min, 2 jobs)``: the batch's wall time, start-up excluded."""
    if done == 0 or seconds <= 0:
        return ""
    where = f"Dask {dask}" if dask else f"{jobs} job{'s' if jobs > 1 else ''}"
    return f" in {seconds:.1f} s ({_rate(done, seconds)}, {where})"


def _run_parallel(jobs: list[Job], workers: int, protect: tuple[Path, ...],
                  take: Callable[[int, Outcome], None]) -> None:
    """Run ``jobs`` on ``workers`` processes, at most ``workers`` in flight at once.

    A worker that dies (killed by the OOM killer, a crash) breaks the pool: the jobs that were
    in flight are then re-run one at a time in a pool of their own, so the one that dies again
    fails alone ("worker died"), and the rest of the batch goes on in a fresh pool.  A re-run
    finding its own destination written before the pool broke is no error when that file holds
    exactly what the re-run writes (restoring is deterministic); anything else there is
    replaced only if the plan allowed it (``--overwrite``, or the manifest's own output).
    """
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = deque(enumerate(jobs))
    in_flight: dict[Future[Outcome], tuple[int, Job]] = {}
    pool = _pool(workers, protect)
    try:
        while pending or in_flight:
            while pending and len(in_flight) < workers:
                index, job = pending.popleft()
                in_flight[pool.submit(_run_job, job)] = (index, job)
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                index, job = in_flight[future]
                try:
                    take(index, future.result())
                except BrokenProcessPool:
                    broken = True
                    continue
                del in_flight[future]  # after take: a stop in between takes it again (idempotent)
            if broken:
                pool.shutdown(wait=True)
                for future, (index, job) in sorted(in_flight.items(), key=lambda item: item[1][0]):
                    if isinstance(future.exception(), BrokenProcessPool):
                        take(index, _run_alone(dataclasses.replace(job, keep_identical=True),
                                               protect))
                    else:
                        take(index, future.result())
                in_flight.clear()
                pool = _pool(workers, protect)
    except KeyboardInterrupt:
        # Stopped: the jobs not started are dropped; those in flight end (a worker that got the
        # signal too stops its file cleanly), and the ones that finished are still reported
        # (``take`` ignores a job it has taken already).
        pool.shutdown(wait=True, cancel_futures=True)
        for future, (index, _) in sorted(in_flight.items(), key=lambda item: item[1][0]):
            if future.done() and not future.cancelled() and future.exception() is None:
                take(index, future.result())
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(jobs: list[Job], address: str, protect: tuple[Path, ...],
              take: Callable[[int, Outcome], None]) -> None:
    """Run ``jobs`` as tasks of a Dask cluster (:func:`genrestore.parallel.dask_client`),
    taking each outcome here, in this process, as it arrives (the manifest and the summary
    are the client's).  A worker lost in the middle of a file has its task run again by Dask
    on another worker; an output the lost worker had already written holds exactly what the
    new run writes (restoring is deterministic), which is no error; anything else found at the
    destination is replaced only if the plan allowed it.  A task that keeps killing its
    workers fails its file alone."""
    from genrestore.parallel import dask_client

    with dask_client(address) as client:
        (shared,) = client.scatter([protect], broadcast=True)  # one object, even when empty
        futures = {client.submit(_dask_job, dataclasses.replace(job, keep_identical=True),
                                 shared, pure=False): index
                   for index, job in enumerate(jobs)}
        from distributed import as_completed

        try:
            for future in as_completed(futures):
                index = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker, a lost cluster: that file fails
                    outcome = (jobs[index], None, f"{jobs[index].source}: the Dask task failed "
                                                  f"({type(exc).__name__}: {exc})")
                take(index, outcome)
        except KeyboardInterrupt:
            client.cancel(list(futures))
            raise


def _dask_job(job: Job, protect: tuple[Path, ...]) -> Outcome:
    """One file on a Dask worker: every source of the batch protected, one BLAS thread."""
    from threadpoolctl import threadpool_limits

    _set_protect(protect)
    with threadpool_limits(limits=1):
        return _run_job(job)


def _pool(workers: int, protect: tuple[Path, ...]) -> ProcessPoolExecutor:
    return worker_pool(workers, _start_worker, (protect,))


def _start_worker(protect: tuple[Path, ...]) -> None:
    _set_protect(protect)
    signal.signal(signal.SIGINT, _on_interrupt)
    signal.signal(signal.SIGTERM, _on_terminate)


def _run_alone(job: Job, protect: tuple[Path, ...]) -> Outcome:
    """``job`` in a worker of its own: if the worker dies, the job that killed it is known."""
    from concurrent.futures.process import BrokenProcessPool

    with _pool(1, protect) as pool:
        try:
            return pool.submit(_run_job, job).result()
        except BrokenProcessPool:
            return job, None, (f"{job.source}: worker died while restoring it (killed by the "
                               f"system, e.g. out of memory, or crashed)")


def _check_report_path(path: Path, overwrite: bool, audio: Sequence[Path] = ()) -> None:
    """Refuse, before any work, a report that would replace an earlier one or one of the
    ``audio`` files (inputs and outputs, whatever the flags), or that cannot be drawn
    (matplotlib missing)."""
    import importlib.util

    from genrestore.report import report_conflict

    if importlib.util.find_spec("matplotlib") is None:
        raise ParameterError("the HTML report needs matplotlib: pip install 'genrestore[report]'")
    key = _identity(path)
    place = _place(path)
    for other in audio:
        if (key is not None and key == _identity(other)) or place == _place(other):
            raise ParameterError(f"{path}: the report would replace the audio file {other}")
    conflict = report_conflict(path)
    if conflict is not None and (not overwrite or path.is_dir()):
        raise ParameterError(conflict)


def _write_report(path: Path, plan: BatchPlan, outcomes: list[Outcome], jobs: int,
                  overwrite: bool, quiet: bool, album: str | None = None) -> None:
    from genrestore.report import ReportEntry, build_report

    entries = [ReportEntry(src, None, message) for src, message in plan.refusals]
    entries += [ReportEntry(job.source, result.destination if result else None, error,
                            result.reports if result else ())
                for job, result, error in outcomes]
    written = build_report(entries, path, jobs=jobs, overwrite=overwrite, album=album)
    if not quiet:
        print(f"report: {written}", file=sys.stderr)


class _NoBar:
    """What the commands use of a tqdm bar, for when none is shown: one clip, ``-q`` or no
    terminal do not pay for tqdm's import."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, text: str) -> None:
        return None

    @staticmethod
    def write(text: str, file: Any = None) -> None:
        print(text, file=file or sys.stdout)


def _progress(total: int, show: bool, unit: str) -> Any:
    """A tqdm progress bar on stderr when ``show``, else a :class:`_NoBar`."""
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr)


def _report(outcome: tuple[Job, FileResult | None, str | None], failures: list[str],
            quiet: bool, bar: Any, explain: bool = False, as_json: bool = False) -> int:
    """One finished file: its summary line (stdout; stderr with ``as_json``, where stdout
    carries the file's JSON object instead), the ``--explain`` lines, or its error."""
    job, result, error = outcome
    bar.update(1)
    if error is not None:
        failures.append(error)
        _error(error, bar)
        if as_json:
            bar.write(_json_line(_failed_json(job.source, job.destination, error)),
                      file=sys.stdout)
            sys.stdout.flush()  # as it finishes, also into a pipe
        return 0
    assert result is not None
    human = sys.stderr if as_json else sys.stdout
    if as_json:
        bar.write(_json_line(_result_json(result)), file=sys.stdout)
        sys.stdout.flush()
    if not quiet:
        bar.write(_summary(result), file=human)
        if explain:
            for r in result.reports:
                bar.write(f"    {r.stage:9s} {'acted' if r.acted else 'idle '}  {r.summary}",
                          file=human)
    return 1


def _finite(value: float | None) -> float | None:
    """A figure for JSON: rounded, NaN and infinities as null."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 3)


def _result_json(result: FileResult) -> dict[str, Any]:
    """``restore --json``: one restored file, the summary line's fields, units in the names."""
    a = result.analysis
    return {
        "source": str(result.source), "destination": str(result.destination),
        "status": "restored",
        "input_lufs": _finite(a.integrated_lufs), "output_lufs": _finite(result.output_lufs),
        "input_true_peak_dbtp": _finite(a.true_peak_dbtp),
        "output_true_peak_dbtp": _finite(result.output_true_peak_dbtp),
        "cutoff_hz": _finite(a.cutoff_hz) if a.cutoff_hz > 0 else None,
        "full_band": bool(a.cutoff_hz > 0 and a.is_full_band),
        "stages_acted": {r.stage: r.summary for r in result.reports
                         if r.acted and r.stage != "resample"},
        "seconds": _finite(result.seconds), "error": None,
    }


_NO_FIGURES = {"input_lufs": None, "output_lufs": None, "input_true_peak_dbtp": None,
               "output_true_peak_dbtp": None, "cutoff_hz": None, "full_band": None,
               "stages_acted": {}, "seconds": None}


def _failed_json(source: Path, destination: Path | None, error: str) -> dict[str, Any]:
    return {"source": str(source), "destination": None if destination is None else
            str(destination), "status": "failed", **_NO_FIGURES, "error": error}


def _done_json(source: Path, destination: Path, manifest: Manifest | None) -> dict[str, Any]:
    """A file the manifest shows done (not restored again): its recorded output figures."""
    record = manifest.records.get(os.path.realpath(source)) if manifest is not None else None
    return {"source": str(source), "destination": str(destination), "status": "done",
            **_NO_FIGURES, "output_lufs": record.lufs if record else None,
            "output_true_peak_dbtp": record.true_peak_dbtp if record else None, "error": None}


def _json_line(record: dict[str, Any]) -> str:
    import json

    return json.dumps(record, allow_nan=False)


def _print_json(record: dict[str, Any]) -> None:
    print(_json_line(record), flush=True)


def _error(message: str, bar: Any = None) -> None:
    """One line on stderr (through the progress bar, when one is shown, so that it stays
    whole)."""
    (bar or _NoBar()).write(f"genrestore: error: {message}", file=sys.stderr)


def _fold_down_text(mid_side_db: float, loss_db: float) -> str:
    """``mid/side +4.1 dB, mono sum 1.2 dB down`` (the analysis's mono fold-down figures)."""
    from genrestore.analysis import FOLD_DOWN_LIMIT_DB

    if loss_db is None or not math.isfinite(loss_db):
        return "mono fold-down n/a"
    loss = ("mono sum silent (the channels cancel)" if loss_db >= FOLD_DOWN_LIMIT_DB
            else f"mono sum {loss_db:.1f} dB down")
    return f"mid/side {mid_side_db:+.1f} dB, {loss}"


def _analysis_text(r: dict[str, Any]) -> str:
    nyquist = r["sample_rate_hz"] / 2
    cutoff = ("full band" if r["cutoff_hz"] >= 0.95 * nyquist else f"{r['cutoff_hz'] / 1000:.1f} kHz")
    top = "noise-like (codec)" if r["top_band_noise_like"] else "tonal"
    stereo = "mono" if r["channels"] == 1 else (
        "mono in disguise (two channels carrying the same signal)" if r["is_mono"] else
        f"stereo, correlation {r['interchannel_correlation']:.2f}, "
        f"{_fold_down_text(r['mid_side_db'], r['mono_fold_down_loss_db'])}")
    rows = [
        ("format", f"{r['format']} {r['subtype']}, {r['sample_rate_hz']} Hz, {r['channels']} ch, "
                   f"{r['duration_s']:.1f} s"),
        ("bandwidth", f"{cutoff}, top band {top} (flatness {r['top_band_flatness']:.2f})"),
        ("noise", f"floor {r['noise_floor_dbfs']:.1f} dBFS, SNR {r['snr_db']:.1f} dB"),
        ("peaks", f"sample {r['sample_peak_dbfs']:+.2f} dBFS, true {r['true_peak_dbtp']:+.2f} dBTP, "
                  f"{r['overs']} overs, {r['clipped_runs']} clipped runs "
                  f"({r['clipped_samples']} samples)"),
        ("loudness", f"{r['integrated_lufs']:.1f} LUFS, range {r['loudness_range_lu']:.1f} LU, "
                     f"crest {r['crest_factor_db']:.1f} dB, DC {r['dc_offset']:+.5f}"),
        ("stereo", stereo),
    ]
    return "\n".join([r["file"]] + [f"  {k:10s} {v}" for k, v in rows])


def cmd_analyze(args: argparse.Namespace) -> int:
    import json

    from genrestore.analysis import analyze_file
    from genrestore.io import find_audio_files

    found = find_audio_files(args.inputs)
    if not found:
        raise ParameterError("no audio files found in " + ", ".join(args.inputs))
    records, failures = [], 0
    for path, _ in found:
        try:
            record = analyze_file(path)
        except FILE_ERRORS as exc:
            failures += 1
            _error(_one_line(path, exc))
            continue
        records.append(record)
        if not args.json:
            print(_analysis_text(record))

    if args.json:
        def finite(value: Any) -> Any:
            return None if isinstance(value, float) and not math.isfinite(value) else value
        print(json.dumps([{k: finite(v) for k, v in r.items()} for r in records], indent=2))
    return EXIT_FAILED if failures else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from genrestore.report import ReportEntry, write_report

    if len(args.files) % 2:
        raise ParameterError("report takes pairs: ORIGINAL RESTORED [ORIGINAL RESTORED ...]")
    entries = []
    for original, restored in zip(args.files[::2], args.files[1::2], strict=True):
        missing = [f for f in (original, restored) if not Path(f).is_file()]
        error = f"{missing[0]}: no such file" if missing else None
        entries.append(ReportEntry(Path(original), None if missing else Path(restored), error))
    _check_report_path(Path(args.output), args.overwrite, [Path(f) for f in args.files])
    written = write_report(entries, args.output, jobs=args.jobs, overwrite=args.overwrite)
    for error in written.errors:
        _error(error)
    print(f"report: {written.path} ({written.restored} restored, {written.failed} failed)")
    return EXIT_FAILED if written.failed else EXIT_OK


def cmd_presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        preset = load_preset(name)
        stages = " -> ".join(s.name for s in preset.stages)
        print(f"{name:8s} {preset.description}\n{'':8s} stages: {stages}")
    return EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    for t in TARGETS.values():
        print(f"{t.name:10s} {t.integrated_lufs:g} LUFS, {t.true_peak_dbtp:g} dBTP\n{'':10s} {t.source}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from genrestore.degrade import degrade
    from genrestore.io import write_audio
    from genrestore.synth import render_song

    out = Path(args.out)
    clean = render_song(44100, args.seconds, seed=0)
    clip, rate = degrade(clean, 44100, "demo", seed=0)
    write_audio(out / "example_clean.wav", clean, 44100, bits="24", overwrite=True)
    source = write_audio(out / "example_musicgen_like.wav", clip, rate, bits="32f", overwrite=True)
    result = restore_file(source, out / "example_restored.wav", preset=args.preset,
                          overwrite=True)
    print(_summary(result))
    try:
        from genrestore.report import ReportEntry, build_report

        report = build_report([ReportEntry(source, result.destination, None, result.reports)],
                              out / "report.html", title="genrestore demo", overwrite=True)
    except ParameterError as exc:  # matplotlib (the report extra) is not installed
        log.warning("no report: %s", exc)
        report = None
    print(f"clean original:   {out / 'example_clean.wav'}")
    print(f"MusicGen-like:    {source}")
    print(f"restored:         {result.destination}")
    if report is not None:
        print(f"report:           {report}")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    from genrestore.generate import GeneratedFile, generate_files, read_prompts

    prompts = list(args.prompts)
    if args.prompts_file:
        prompts += read_prompts(args.prompts_file)
    if not prompts:
        raise ParameterError("no prompts: give them as arguments or with --prompts FILE")
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set or []:
        stage, param, value = parse_set_option(item)
        overrides.setdefault(stage, {})[param] = value
    preset = None if args.no_restore else args.preset
    if preset is not None:
        load_preset(preset, overrides)  # usage errors before the model loads
    _quiet_transformers(args.verbose)
    failures: list[str] = []
    started = time.perf_counter()

    def show(item: GeneratedFile) -> None:
        if item.error is not None:
            failures.append(item.error)
            _error(item.error)
            if item.raw is None:
                return
        if not args.quiet:
            print(f"{item.prompt!r} seed {item.seed}: {item.duration_s:.1f} s generated in "
                  f"{item.generate_seconds:.1f} s -> {item.raw}")
            if item.result is not None:
                print(f"  {_summary(item.result)}")

    results = generate_files(prompts, args.output, model=args.model, duration_s=args.duration,
                             seed=args.seed, preset=preset, overrides=overrides or None,
                             output_rate_hz=args.rate, bits=args.bits, file_format=args.format,
                             device=args.device, progress=show)
    if len(results) > 1 and not args.quiet:
        print(f"{len(results) - len(failures)} generated, {len(failures)} failed in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def _quiet_transformers(verbose: bool) -> None:
    """transformers' own notes (its progress bars, warnings about the checkpoints' token ids)
    go to the log only with ``-v``: the command's output is one line per file."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # the model loader says what to install
        return
    if not verbose:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _choose(files: list[tuple[Path, Path]], count: int | None) -> list[tuple[Path, Path]]:
    """``count`` files spread evenly over the sorted list (all when ``count`` is None)."""
    import numpy as np

    if count is None or count >= len(files):
        return files
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[i] for i in sorted(set(picks.tolist()))]


DEFAULT_DEGRADATIONS = "musicgen_like,bandlimited,noisy,clipped,mp3_stereo"


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def cmd_bench(args: argparse.Namespace) -> int:
    from genrestore import bench

    if args.limiter:
        print(bench.format_limiter(bench.limiter_benchmark(repeats=args.repeats)))
        return EXIT_OK
    if args.memory:
        minutes = [float(m) for m in _names(args.minutes)] if args.minutes else None
        show = not args.quiet and sys.stderr.isatty()
        count = len(minutes) if minutes else len(bench.MEMORY_MINUTES)
        with _progress(count, show, "file") as bar:
            rows = bench.memory_benchmark(
                minutes=minutes or bench.MEMORY_MINUTES, channels=args.channels,
                rate=args.rate or 32000, preset=args.preset or DEFAULT_PRESET,
                folder=Path(args.out) if args.out else None, progress=lambda _: bar.update(1))
        table = bench.format_memory(rows, args.preset or DEFAULT_PRESET)
        if args.out:
            (Path(args.out) / "memory.md").write_text(table + "\n", "utf-8")
        print(table)
        return EXIT_OK
    if args.speed:
        # The mono clip with the whole-process line against ffmpeg, then the stereo clip.
        for channels in (1, 2):
            result = bench.speed_benchmark(seconds=args.seconds or 30.0,
                                           preset=args.preset or DEFAULT_PRESET,
                                           repeats=args.repeats, channels=channels,
                                           whole_process=channels == 1)
            print(bench.format_speed(result) + ("\n" if channels == 1 else ""))
        return EXIT_OK
    from genrestore.io import find_audio_files

    presets = [p.strip() for p in (args.preset or "none,auto").split(",") if p.strip()]
    folder = args.clean or args.real or args.declip or args.match
    found = _choose(sorted(find_audio_files([folder]), key=lambda f: str(f[1])), args.clips)
    if not found:
        raise ParameterError(f"no audio files found in {folder}")
    files = [(path, str(rel)) for path, rel in found]
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    show = not args.quiet and sys.stderr.isatty()
    with _progress(len(files), show, "clip") as bar:
        def step(_: str) -> None:
            bar.update(1)

        if args.clean:
            from genrestore.metrics import visqol_available

            visqol = visqol_available() if args.visqol is None else args.visqol
            degradations = _names(args.degrade or DEFAULT_DEGRADATIONS)
            rows, errors = bench.quality_benchmark(
                files, degradations=degradations, presets=presets, seconds=args.seconds or 10.0,
                visqol=visqol, jobs=args.jobs, progress=step)
            table = bench.format_quality(rows)
            if out is not None:
                bench.write_quality_csv(rows, out / "quality.csv")
        elif args.declip:
            declip_rows, errors = bench.declip_benchmark(files, seconds=args.seconds or 10.0)
            table = bench.format_declip(declip_rows)
        elif args.match:
            match_rows, errors = bench.match_benchmark(
                files, seconds=args.seconds or 10.0, preset=args.preset or DEFAULT_PRESET,
                degradations=_names(args.degrade or "musicgen_like"), progress=step)
            table = bench.format_match(match_rows)
        else:
            real_rows, errors = bench.real_benchmark(files, presets=presets, progress=step)
            table = bench.format_real(real_rows)
            if out is not None:
                bench.write_real_csv(real_rows, out / "real.csv")
    for message in errors:
        _error(message)
    if out is not None:
        name = ("quality.md" if args.clean else "declip.md" if args.declip else
                "match.md" if args.match else "real.md")
        (out / name).write_text(table + "\n", "utf-8")
    print(table)
    return EXIT_FAILED if errors else EXIT_OK


_RESTORE_HELP = """\
Restore audio files.  Without -o, each output is written beside its input as
STEM_restored.wav (or .flac).  An input of the batch is never overwritten,
whatever the flags; an existing output is refused before any work unless
--overwrite."""

_RESTORE_EPILOG = """\
When a folder is walked, files under the -o folder are not inputs, and, when
the outputs go beside the inputs, STEM_restored.wav/.flac beside a STEM.* is
taken as an earlier output: it is skipped (not restored again; the count is
printed) and never replaced, even with --overwrite (it may be an input), unless
the folder's manifest shows genrestore wrote it from STEM.* and it is unchanged
since: then --force or changed settings redo it.  Otherwise, to restore such a
folder again, delete the earlier outputs or use -o FOLDER.  A
file named on the command line is always an input.  A file name starting with
'-': write ./-x.wav, or put -- before the file names.

A batch (-o FOLDER, or a folder or several files restored beside themselves)
keeps genrestore-manifest.jsonl in the folder of its outputs, one line per
file as it finishes: a re-run skips what is done with the same input and
settings, retries failures, and redoes a file whose input or settings (preset,
parameters, rate, bits, format, version) changed, replacing its earlier output
if that is unchanged since genrestore wrote it.  --force redoes everything;
--dry-run lists what would happen.  Ctrl-C or SIGTERM stop cleanly: finished
files are complete and recorded, none is half-written (exit 130 or 143)."""


_GENERATE_HELP = """\
Generate music from text prompts with MusicGen (transformers; pip install
'genrestore[musicgen]'), restore each clip in memory, and write the raw clip
(SLUG-seedN.wav: 32-bit float at the model's rate) and the restored one
(SLUG-seedN_restored.wav) into the -o folder.  The model is read from a folder
or the Hugging Face cache only; genrestore downloads nothing."""

_GENERATE_EPILOG = """\
Names come from the prompt (ASCII, lowercase, 48 characters at most) and the
seed; an existing file is never replaced: -2, -3... is added instead.  Each
file's tags hold the prompt (title) and the prompt, model, seed, preset and
duration (comment, as JSON); the folder's genrestore-manifest.jsonl gets a line
per prompt with the same, so `genrestore restore DIR` with the same settings
finds the restored files done."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrestore",
        description="Make text-to-music generator output release-ready.",
    )
    parser.add_argument("--version", action="version", version=f"genrestore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage did")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "restore", help="restore files or folders of audio",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_RESTORE_HELP, epilog=_RESTORE_EPILOG)
    p.add_argument("inputs", nargs="+", help="audio files or folders (walked recursively)")
    p.add_argument("-o", "--output",
                   help="output file (one input file; its suffix .wav/.flac sets the format) or "
                        "folder (an existing one, a name ending with /, or a name without suffix)")
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"preset name ({', '.join(preset_names())}) or a .toml file")
    p.add_argument("--set", action="append", metavar="STAGE.PARAM=VALUE",
                   help="override a preset parameter, e.g. denoise.strength=0.5 (repeatable)")
    figures = ", ".join(f"{t.name} {t.integrated_lufs:g}/{t.true_peak_dbtp:g}"
                        for t in TARGETS.values())
    p.add_argument("--target", choices=list(TARGETS), metavar="PLATFORM",
                   help=f"delivery target: sets the loudness and true-peak ceiling ({figures} "
                        "LUFS/dBTP; sources: genrestore targets); --set loudness.* still wins")
    p.add_argument("--album", action="store_true",
                   help="one gain and one limiter ceiling for the whole batch: the album's "
                        "loudness reaches the target and the tracks keep their loudness "
                        "relative to each other (each file is processed twice: measured, "
                        "then restored)")
    p.add_argument("--rate", type=int, default=44100, choices=OUTPUT_RATES_HZ)
    p.add_argument("--bits", default="24", choices=OUTPUT_BITS)
    p.add_argument("--format", choices=OUTPUT_FORMATS,
                   help="output format (default: wav, or the suffix of -o FILE)")
    p.add_argument("--jobs", type=int, default=None,
                   help="files processed in parallel (default: the number of cores)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs and report (never an input)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the files on a Dask cluster: a scheduler's address "
                        "(tcp://host:8786) or local[:N] (N worker processes here); needs "
                        "genrestore[cluster] and inputs and outputs on storage every worker sees")
    p.add_argument("--force", action="store_true",
                   help="restore again what the output folder's manifest shows done")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be restored, with each file's plan (which stages "
                        "would act and why: every file to restore is read and analysed), what "
                        "is done already and what is refused; write nothing")
    p.add_argument("--stereo", action="store_true",
                   help="make mono input stereo (the preset's stereo stage)")
    p.add_argument("--reference", metavar="FILE",
                   help="match the long-term spectrum (1/3-octave, 60 Hz to the cutoff) and "
                        "the loudness of this track (adds the match stage before loudness; "
                        "read once per batch)")
    p.add_argument("--match-strength", type=float, metavar="X",
                   help="how much of the spectral correction to apply, 0..1 (default 1)")
    p.add_argument("--report", nargs="?", const="", default=None, metavar="PATH",
                   help="write an HTML before/after report (default: report.html in the -o "
                        "folder, or in the folder holding the outputs)")
    p.add_argument("--explain", action="store_true",
                   help="print every stage's decision and why, under each file")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per file on stdout as it finishes (the summary "
                        "line's fields, units in the names, null for no figure); the human "
                        "lines go to stderr")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only errors (and, with --json, the JSON objects)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser(
        "generate", help="make music from text with MusicGen, restore it, write both files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_GENERATE_HELP, epilog=_GENERATE_EPILOG)
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="text prompts (quote each one)")
    p.add_argument("--prompts", dest="prompts_file", metavar="FILE",
                   help="more prompts: a .txt file (one per line) or a .csv file (its 'prompt' "
                        "column, else its first)")
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH",
                   help="a model folder (save_pretrained) or a Hugging Face name already in "
                        "the cache, e.g. facebook/musicgen-small; nothing is downloaded")
    p.add_argument("--duration", type=float, default=10.0, metavar="S",
                   help="seconds per clip (default 10)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed of every prompt (default: a new one, in the file names "
                        "and tags)")
    p.add_argument("-o", "--output", default=".", metavar="DIR",
                   help="folder for the files (default: the current folder)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", default=DEFAULT_PRESET,
                       help=f"restoring preset ({', '.join(preset_names())}) or a .toml file")
    which.add_argument("--no-restore", action="store_true", help="write the raw clips only")
    p.add_argument("--set", action="append", metavar="STAGE.PARAM=VALUE",
                   help="override a preset parameter (repeatable)")
    p.add_argument("--rate", type=int, default=44100, choices=OUTPUT_RATES_HZ)
    p.add_argument("--bits", default="24", choices=OUTPUT_BITS)
    p.add_argument("--format", default="wav", choices=OUTPUT_FORMATS,
                   help="restored files' format (the raw files are WAV, 32-bit float)")
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:1 (default: a GPU if any)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("analyze", help="measure files: bandwidth, noise, peaks, loudness, stereo")
    p.add_argument("inputs", nargs="+", help="audio files or folders (walked recursively)")
    p.add_argument("--json", action="store_true", help="JSON (field names carry their units)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="HTML before/after report for existing pairs of files")
    p.add_argument("files", nargs="+", metavar="ORIGINAL RESTORED",
                   help="pairs of original and restored files")
    p.add_argument("-o", "--output", default="report.html",
                   help="HTML file to write (default: report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("--jobs", type=int, default=None,
                   help="clips rendered in parallel (default: the number of cores)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("presets", help="list the shipped presets")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("targets", help="list the delivery targets (--target) and their sources")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("demo", help="render the bundled example, degrade it, restore it")
    p.add_argument("--out", default="demo-output", help="folder for the example files")
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks quoted in the README")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--speed", action="store_true",
                      help="real-time factor of a preset on a synthetic 32 kHz clip, mono "
                           "then stereo, one process; the mono clip also as whole processes "
                           "against ffmpeg's stock chain")
    mode.add_argument("--limiter", action="store_true",
                      help="genrestore's true-peak limiter against pedalboard's: time, peak, "
                      "loudness, distortion")
    mode.add_argument("--clean", metavar="DIR",
                      help="clean music: degrade, restore, compare with the original")
    mode.add_argument("--real", metavar="DIR",
                      help="generator outputs: no-reference figures before and after")
    mode.add_argument("--declip", metavar="DIR",
                      help="clean music clipped at 2 and 3 %%: SNR before and after declipping")
    mode.add_argument("--match", metavar="DIR",
                      help="each file's excerpt, degraded and restored with the next file as "
                           "--reference: 1/3-octave RMS difference before and after, self-match")
    mode.add_argument("--memory", action="store_true",
                      help="peak memory and time of `genrestore restore` on synthetic long "
                           "files, one child process each")
    p.add_argument("--minutes", help="--memory: file lengths, comma-separated (default 1,10,60)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 2),
                   help="--memory: channels of the files (default 1)")
    p.add_argument("--rate", type=int, default=None,
                   help="--memory: sample rate of the files (default 32000; restored to it "
                        "when 44100 or 48000, else to 44100)")
    p.add_argument("--degrade", default=None,
                   help=f"degradation chains, comma-separated (--clean: {DEFAULT_DEGRADATIONS}; "
                        "--match: musicgen_like, or none)")
    p.add_argument("--preset", help="presets, comma-separated (default: none,auto; "
                   "--speed and --match: one, default auto)")
    p.add_argument("--seconds", type=float, help="excerpt length (default 10; --speed: 30)")
    p.add_argument("--clips", type=int, help="use N files spread over the sorted list")
    p.add_argument("--out", help="folder for the CSV and Markdown results (--memory: also the "
                   "files, kept to be used again)")
    p.add_argument("--visqol", action=argparse.BooleanOptionalAction, default=None,
                   help="ViSQOL MOS-LQO (default: when visqol-python is installed)")
    p.add_argument("--jobs", type=int, default=None,
                   help="clips measured in parallel (--clean; default: the number of cores)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (--speed, --limiter)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)
    return parser


def _dash_file(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """An argument before ``--`` that argparse would take for an option but that names an
    existing file (``-x.wav``)."""
    options = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= set(sub._option_string_actions)
    for arg in argv:
        if arg == "--":
            return None
        if arg.startswith("-") and arg != "-" and arg not in options and os.path.lexists(arg):
            return arg
    return None


def _tolerate_any_file_name() -> None:
    """A file name that is not valid in the terminal's encoding (a Latin-1 byte under UTF-8,
    held by Python as a surrogate escape) is printed escaped (\\udce9) instead of stopping
    the batch with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerate_any_file_name()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    dash = _dash_file(parser, argv)
    if dash is not None:
        print(f"genrestore: error: {dash} starts with '-' and would be read as an option; "
              f"write ./{dash} or put -- before the file names", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False) and not args.verbose
    logging.basicConfig(level=logging.DEBUG if args.verbose else
                        logging.ERROR if quiet else logging.WARNING,
                        format="genrestore: %(message)s", stream=sys.stderr)
    if hasattr(args, "jobs"):
        if args.jobs is None:
            args.jobs = default_jobs()
        elif args.jobs < 1:
            parser.error("--jobs must be at least 1")
    try:
        return int(args.func(args))
    except ParameterError as exc:
        print(f"genrestore: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GenrestoreError as exc:
        print(f"genrestore: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("genrestore: interrupted; files already written are complete, no other output "
              "was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
