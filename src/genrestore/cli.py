"""Command-line interface: a thin layer over :mod:`genrestore.pipeline` and friends.

Exit codes: 0 all good, 1 one or more files failed, 2 usage error (bad flag, preset or
``--set``).  Every failure is one line on stderr that names the file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from genrestore import __version__
from genrestore.errors import FILE_ERRORS, GenrestoreError, ParameterError
from genrestore.io import OUTPUT_BITS, OUTPUT_FORMATS, OUTPUT_RATES_HZ, find_audio_files
from genrestore.pipeline import (
    DEFAULT_PRESET,
    FileResult,
    load_preset,
    parse_set_option,
    preset_names,
    restore_file,
)

log = logging.getLogger("genrestore")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Job:
    source: Path
    destination: Path
    preset: str
    overrides: dict[str, dict[str, Any]]
    rate: int
    bits: str
    file_format: str
    overwrite: bool


def _run_job(job: Job) -> tuple[Job, FileResult | None, str | None]:
    try:
        result = restore_file(job.source, job.destination, preset=job.preset,
                              output_rate_hz=job.rate, bits=job.bits, file_format=job.file_format,
                              overwrite=job.overwrite, overrides=job.overrides)
    except FILE_ERRORS as exc:
        return job, None, _one_line(job.source, exc)
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
    elif a.cutoff_hz >= a.sample_rate / 2:
        cutoff = f"full band ({a.sample_rate / 2000:g} kHz)"
    else:
        cutoff = f"{a.cutoff_hz / 1000:.1f} kHz"
    return (f"{result.source} -> {result.destination}: {a.integrated_lufs:.1f} -> "
            f"{result.output_lufs:.1f} LUFS, true peak {a.true_peak_dbtp:+.1f} -> "
            f"{result.output_true_peak_dbtp:+.1f} dBTP, cutoff {cutoff}"
            f" [{acted or 'no restoration stage acted'}] ({result.seconds:.2f} s)")


def _plan(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    found = find_audio_files(args.inputs)
    if not found:
        raise ParameterError("no audio files found in " + ", ".join(args.inputs))
    single_file = len(found) == 1 and not Path(args.inputs[0]).is_dir() and len(args.inputs) == 1
    fmt = args.format
    pairs: list[tuple[Path, Path]] = []
    if args.output is not None:
        out = Path(args.output)
        as_file = (single_file and not out.is_dir() and not args.output.endswith(("/", "\\"))
                   and out.suffix.lower().lstrip(".") in OUTPUT_FORMATS)
        if as_file:
            return [(found[0][0], out)]
        for src, rel in found:
            pairs.append((src, out / rel.with_suffix(f".{fmt}")))
    else:
        pairs = [(src, src.with_name(f"{src.stem}_restored.{fmt}")) for src, _ in found]
    return pairs


def cmd_restore(args: argparse.Namespace) -> int:
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set or []:
        stage, param, value = parse_set_option(item)
        overrides.setdefault(stage, {})[param] = value
    if args.stereo:
        overrides.setdefault("stereo", {})["enabled"] = True
    load_preset(args.preset, overrides)  # usage errors surface once, before any file
    pairs = _plan(args)
    jobs = []
    seen: dict[Path, Path] = {}
    failures: list[str] = []
    for src, dst in pairs:
        key = dst.resolve()
        if key in seen:
            failures.append(f"{src}: output {dst} would collide with the output of {seen[key]}")
            continue
        seen[key] = src
        jobs.append(Job(src, dst, args.preset, overrides, args.rate, args.bits,
                        dst.suffix.lstrip(".").lower() or args.format, args.overwrite))
    for message in failures:
        _error(message)
    done = 0
    collected: list[tuple[Job, FileResult | None, str | None]] = []
    show_bar = len(jobs) > 1 and not args.quiet and sys.stderr.isatty()
    with tqdm(total=len(jobs), disable=not show_bar, unit="file", file=sys.stderr) as bar:
        if args.jobs > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                outcomes = pool.map(_run_job, jobs)
                for outcome in outcomes:
                    collected.append(outcome)
                    done += _report(outcome, failures, args.quiet, bar, args.explain)
        else:
            for job in jobs:
                collected.append(_run_job(job))
                done += _report(collected[-1], failures, args.quiet, bar, args.explain)
    if len(pairs) > 1 or failures:
        print(f"{done} restored, {len(failures)} failed", file=sys.stderr)
    if args.report is not None:
        _write_report(args, collected, args.jobs)
    return EXIT_FAILED if failures else EXIT_OK


def _report_path(args: argparse.Namespace) -> Path:
    if args.report:
        return Path(args.report)
    if args.output is None:
        return Path("report.html")
    out = Path(args.output)
    return out.parent / "report.html" if out.suffix.lower().lstrip(".") in OUTPUT_FORMATS else (
        out / "report.html")


def _write_report(args: argparse.Namespace,
                  outcomes: list[tuple[Job, FileResult | None, str | None]], jobs: int) -> None:
    from genrestore.report import ReportEntry, build_report

    entries = [ReportEntry(job.source, result.destination if result else None, error,
                           result.reports if result else ())
               for job, result, error in outcomes]
    path = build_report(entries, _report_path(args), jobs=jobs)
    print(f"report: {path}", file=sys.stderr)


def _report(outcome: tuple[Job, FileResult | None, str | None], failures: list[str],
            quiet: bool, bar: tqdm, explain: bool = False) -> int:
    _, result, error = outcome
    bar.update(1)
    if error is not None:
        failures.append(error)
        _error(error)
        return 0
    assert result is not None
    if not quiet:
        tqdm.write(_summary(result), file=sys.stdout)
        if explain:
            for r in result.reports:
                tqdm.write(f"    {r.stage:9s} {'acted' if r.acted else 'idle '}  {r.summary}",
                           file=sys.stdout)
    return 1


def _error(message: str) -> None:
    tqdm.write(f"genrestore: error: {message}", file=sys.stderr)


def _analysis_text(r: dict[str, Any]) -> str:
    nyquist = r["sample_rate_hz"] / 2
    cutoff = ("full band" if r["cutoff_hz"] >= 0.95 * nyquist else f"{r['cutoff_hz'] / 1000:.1f} kHz")
    top = "noise-like (codec)" if r["top_band_noise_like"] else "tonal"
    stereo = "mono" if r["channels"] == 1 else (
        "mono in disguise (two identical channels)" if r["is_mono"] else
        f"stereo, correlation {r['interchannel_correlation']:.2f}")
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
            return None if isinstance(value, float) and not np.isfinite(value) else value
        print(json.dumps([{k: finite(v) for k, v in r.items()} for r in records], indent=2))
    return EXIT_FAILED if failures else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from genrestore.report import ReportEntry, build_report

    if len(args.files) % 2:
        raise ParameterError("report takes pairs: ORIGINAL RESTORED [ORIGINAL RESTORED ...]")
    entries = []
    for original, restored in zip(args.files[::2], args.files[1::2], strict=True):
        missing = [f for f in (original, restored) if not Path(f).is_file()]
        error = f"{missing[0]}: no such file" if missing else None
        entries.append(ReportEntry(Path(original), None if missing else Path(restored), error))
    path = build_report(entries, args.output, jobs=args.jobs)
    print(f"report: {path}")
    return EXIT_FAILED if any(e.error for e in entries) else EXIT_OK


def cmd_presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        preset = load_preset(name)
        stages = " -> ".join(s.name for s in preset.stages)
        print(f"{name:8s} {preset.description}\n{'':8s} stages: {stages}")
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
                              out / "report.html", title="genrestore demo")
    except ParameterError as exc:  # matplotlib (the report extra) is not installed
        log.warning("no report: %s", exc)
        report = None
    print(f"clean original:   {out / 'example_clean.wav'}")
    print(f"MusicGen-like:    {source}")
    print(f"restored:         {result.destination}")
    if report is not None:
        print(f"report:           {report}")
    return EXIT_OK


def _choose(files: list[tuple[Path, Path]], count: int | None) -> list[tuple[Path, Path]]:
    """``count`` files spread evenly over the sorted list (all when ``count`` is None)."""
    if count is None or count >= len(files):
        return files
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[i] for i in sorted(set(picks.tolist()))]


def cmd_bench(args: argparse.Namespace) -> int:
    from genrestore import bench

    if args.speed:
        result = bench.speed_benchmark(seconds=args.seconds or 30.0,
                                       preset=args.preset or DEFAULT_PRESET, repeats=args.repeats)
        print(bench.format_speed(result))
        return EXIT_OK
    presets = [p.strip() for p in (args.preset or "none,auto").split(",") if p.strip()]
    folder = args.clean or args.real or args.declip
    found = _choose(sorted(find_audio_files([folder]), key=lambda f: str(f[1])), args.clips)
    if not found:
        raise ParameterError(f"no audio files found in {folder}")
    files = [(path, str(rel)) for path, rel in found]
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    show = not args.quiet and sys.stderr.isatty()
    with tqdm(total=len(files), disable=not show, unit="clip", file=sys.stderr) as bar:
        def step(_: str) -> None:
            bar.update(1)

        if args.clean:
            from genrestore.metrics import visqol_available

            visqol = visqol_available() if args.visqol is None else args.visqol
            degradations = [d.strip() for d in args.degrade.split(",") if d.strip()]
            rows, errors = bench.quality_benchmark(
                files, degradations=degradations, presets=presets, seconds=args.seconds or 10.0,
                visqol=visqol, jobs=args.jobs, progress=step)
            table = bench.format_quality(rows)
            if out is not None:
                bench.write_quality_csv(rows, out / "quality.csv")
        elif args.declip:
            declip_rows, errors = bench.declip_benchmark(files, seconds=args.seconds or 10.0)
            table = bench.format_declip(declip_rows)
        else:
            real_rows, errors = bench.real_benchmark(files, presets=presets, progress=step)
            table = bench.format_real(real_rows)
            if out is not None:
                bench.write_real_csv(real_rows, out / "real.csv")
    for message in errors:
        _error(message)
    if out is not None:
        name = "quality.md" if args.clean else "declip.md" if args.declip else "real.md"
        (out / name).write_text(table + "\n", "utf-8")
    print(table)
    return EXIT_FAILED if errors else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrestore",
        description="Make text-to-music generator output release-ready.",
    )
    parser.add_argument("--version", action="version", version=f"genrestore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage did")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("restore", help="restore files or folders of audio")
    p.add_argument("inputs", nargs="+", help="audio files or folders (walked recursively)")
    p.add_argument("-o", "--output", help="output file (one input) or folder")
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"preset name ({', '.join(preset_names())}) or a .toml file")
    p.add_argument("--set", action="append", metavar="STAGE.PARAM=VALUE",
                   help="override a preset parameter, e.g. denoise.strength=0.5 (repeatable)")
    p.add_argument("--rate", type=int, default=44100, choices=OUTPUT_RATES_HZ)
    p.add_argument("--bits", default="24", choices=OUTPUT_BITS)
    p.add_argument("--format", default="wav", choices=OUTPUT_FORMATS)
    p.add_argument("--jobs", type=int, default=1, help="files processed in parallel")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--stereo", action="store_true",
                   help="make mono input stereo (the preset's stereo stage)")
    p.add_argument("--report", nargs="?", const="", default=None, metavar="PATH",
                   help="write an HTML before/after report (default: OUTDIR/report.html)")
    p.add_argument("--explain", action="store_true",
                   help="print every stage's decision and why, under each file")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("analyze", help="measure files: bandwidth, noise, peaks, loudness, stereo")
    p.add_argument("inputs", nargs="+", help="audio files or folders (walked recursively)")
    p.add_argument("--json", action="store_true", help="JSON (field names carry their units)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="HTML before/after report for existing pairs of files")
    p.add_argument("files", nargs="+", metavar="ORIGINAL RESTORED",
                   help="pairs of original and restored files")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    p.add_argument("--jobs", type=int, default=1, help="clips rendered in parallel")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("presets", help="list the shipped presets")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("demo", help="render the bundled example, degrade it, restore it")
    p.add_argument("--out", default="demo-output", help="folder for the example files")
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks quoted in the README")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--speed", action="store_true",
                      help="real-time factor of a preset on a synthetic clip, one core")
    mode.add_argument("--clean", metavar="DIR",
                      help="clean music: degrade, restore, compare with the original")
    mode.add_argument("--real", metavar="DIR",
                      help="generator outputs: no-reference figures before and after")
    mode.add_argument("--declip", metavar="DIR",
                      help="clean music clipped at 2 and 3 %%: SNR before and after declipping")
    p.add_argument("--degrade", default="musicgen_like,bandlimited,noisy,clipped,mp3_stereo",
                   help="degradation chains for --clean, comma-separated")
    p.add_argument("--preset", help="presets, comma-separated (default: none,auto; "
                   "--speed: default)")
    p.add_argument("--seconds", type=float, help="excerpt length (default 10; --speed: 30)")
    p.add_argument("--clips", type=int, help="use N files spread over the sorted list")
    p.add_argument("--out", help="folder for the CSV and Markdown results")
    p.add_argument("--visqol", action=argparse.BooleanOptionalAction, default=None,
                   help="ViSQOL MOS-LQO (default: when visqol-python is installed)")
    p.add_argument("--jobs", type=int, default=1, help="clips measured in parallel (--clean)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (--speed)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="genrestore: %(message)s", stream=sys.stderr)
    if getattr(args, "jobs", 1) < 1:
        parser.error("--jobs must be at least 1")
    try:
        return int(args.func(args))
    except ParameterError as exc:
        print(f"genrestore: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GenrestoreError as exc:
        print(f"genrestore: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
