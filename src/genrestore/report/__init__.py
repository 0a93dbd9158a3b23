"""An HTML before/after report of a batch: one page, its pictures beside it, the audio linked
by relative paths, so the folder can be moved or zipped.  No JavaScript framework, no network.

Per clip: spectrograms before and after (ERB-rate frequency scale, one colour range, at
matched loudness, the detected cutoff marked), their difference, waveforms, figures before
and after, what each stage did, and an A/B player that switches between original and
restored at the same position, at matched loudness.  A summary table heads the page.

Needs matplotlib (``pip install 'genrestore[report]'``) for the pictures.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np

from genrestore.analysis import (
    FOLD_DOWN_LIMIT_DB,
    FoldDown,
    estimate_cutoff_hz,
    integrated_lufs,
    loudness_range_lu,
    mono_fold_down,
    noise_floor_dbfs,
    stereo_sums,
    true_peak_dbtp,
)
from genrestore.errors import FILE_ERRORS, AudioFileError, ParameterError, display_path
from genrestore.io import read_audio, write_atomic_text
from genrestore.parallel import worker_pool
from genrestore.report import images
from genrestore.stages import StageReport

log = logging.getLogger(__name__)

FILES_SUFFIX = "_files"
#: The pictures a report writes in its ``<stem>_files/`` folder (and the only files it removes).
_PICTURE = re.compile(r"clip\d{3,}_(before|after|diff)\.jpg")


@dataclass(frozen=True)
class ReportEntry:
    """One clip of the report: a restored pair, or a file that failed (``error``)."""

    original: Path
    restored: Path | None = None
    error: str | None = None
    reports: tuple[StageReport, ...] = ()  # what each stage did, when known


@dataclass(frozen=True)
class Figures:
    """The measurements the report shows for one version of a clip."""

    sample_rate: int
    channels: int
    integrated_lufs: float
    true_peak_dbtp: float
    cutoff_hz: float
    noise_floor_dbfs: float
    loudness_range_lu: float
    #: How a stereo version survives a mono sum (None for one channel).
    fold_down: FoldDown | None = None


def measure(audio: np.ndarray, sample_rate: int) -> Figures:
    x = np.atleast_2d(audio)
    fold = mono_fold_down(stereo_sums(x)) if x.shape[0] == 2 else None
    return Figures(sample_rate, x.shape[0], integrated_lufs(x, sample_rate), true_peak_dbtp(x),
                   estimate_cutoff_hz(x, sample_rate), noise_floor_dbfs(x, sample_rate),
                   loudness_range_lu(x, sample_rate), fold)


@dataclass(frozen=True)
class _Rendered:
    entry: ReportEntry
    index: int
    before: Figures | None = None
    after: Figures | None = None
    pictures: images.PairImages | None = None
    waves: tuple[str, str] = ("", "")
    before_volume: float = 1.0
    after_volume: float = 1.0
    error: str | None = None


def _render_in_pool(tasks: list[tuple[ReportEntry, int, Path]], jobs: int) -> list[_Rendered]:
    """Render in ``jobs`` worker processes.  A worker that dies (killed, out of memory) takes
    the pool with it: every clip it had not finished is drawn again in a pool of its own, and
    one that kills its worker again is listed as failed; the rest of the report is written."""
    done: dict[int, _Rendered] = {}
    with worker_pool(jobs) as pool:
        futures = [pool.submit(_render, task) for task in tasks]
        for task, future in zip(tasks, futures, strict=True):
            try:
                done[task[1]] = future.result()
            except BrokenProcessPool:
                continue
    for task in tasks:
        if task[1] in done:
            continue
        with worker_pool(1) as alone:
            try:
                done[task[1]] = alone.submit(_render, task).result()
            except BrokenProcessPool:
                log.warning("%s: the worker drawing it died", display_path(task[0].original))
                done[task[1]] = _Rendered(task[0], task[1],
                                          error="the report's worker died while drawing it")
    return [done[task[1]] for task in tasks]


def _render(args: tuple[ReportEntry, int, Path]) -> _Rendered:
    entry, index, folder = args
    if entry.error is not None or entry.restored is None:
        return _Rendered(entry, index, error=entry.error or "not restored")
    try:
        before, rate_before = read_audio(entry.original)
        after, rate_after = read_audio(entry.restored)
    except FILE_ERRORS as exc:
        return _Rendered(entry, index, error=str(exc).splitlines()[0])
    fb, fa = measure(before, rate_before), measure(after, rate_after)
    # Loudness matching: raise the quieter version's picture, lower the louder one's volume.
    gain = fa.integrated_lufs - fb.integrated_lufs
    if not np.isfinite(gain):
        gain = 0.0
    pictures = images.write_pair_images(before, rate_before, after, rate_after, folder,
                                        f"clip{index:03d}", before_gain_db=gain)
    waves = (images.waveform_svg(before), images.waveform_svg(after))  # as stored: overs show
    before_volume = min(1.0, 10 ** (gain / 20.0))
    after_volume = min(1.0, 10 ** (-gain / 20.0))
    return _Rendered(entry, index, fb, fa, pictures, waves, before_volume, after_volume)


def _href(target: Path, base: Path) -> str:
    relative = os.path.relpath(Path(target).resolve(), base.resolve())
    return quote(Path(relative).as_posix(), errors="surrogateescape")


def _khz(hz: float, rate: int) -> str:
    if hz <= 0:
        return "n/a"
    return "full band" if hz >= 0.95 * rate / 2 else f"{hz / 1000:.1f} kHz"


def _num(value: float, fmt: str) -> str:
    return format(value, fmt) if np.isfinite(value) else "n/a"


def _fold_down(f: Figures) -> str:
    """The mono fold-down cell: correlation, mid/side, and the loss of the mono sum."""
    fold = f.fold_down
    if fold is None:
        return "n/a (mono)"
    if not np.isfinite(fold.loss_db):
        return "n/a (silent)"
    loss = ("silent (the channels cancel)" if fold.loss_db >= FOLD_DOWN_LIMIT_DB
            else f"{fold.loss_db:.1f} dB down")
    return (f"correlation {fold.correlation:.2f}, mid/side {fold.mid_side_db:+.1f} dB, "
            f"mono sum {loss}")


def _figures_table(b: Figures, a: Figures) -> str:
    rows = [
        ("format", f"{b.sample_rate / 1000:g} kHz, {b.channels} ch",
         f"{a.sample_rate / 1000:g} kHz, {a.channels} ch"),
        ("loudness", _num(b.integrated_lufs, ".1f") + " LUFS",
         _num(a.integrated_lufs, ".1f") + " LUFS"),
        ("true peak", _num(b.true_peak_dbtp, "+.1f") + " dBTP",
         _num(a.true_peak_dbtp, "+.1f") + " dBTP"),
        ("bandwidth", _khz(b.cutoff_hz, b.sample_rate), _khz(a.cutoff_hz, a.sample_rate)),
        ("noise floor", _num(b.noise_floor_dbfs, ".1f") + " dBFS",
         _num(a.noise_floor_dbfs, ".1f") + " dBFS"),
        ("loudness range", f"{b.loudness_range_lu:.1f} LU", f"{a.loudness_range_lu:.1f} LU"),
        ("mono fold-down", _fold_down(b), _fold_down(a)),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{x}</td><td>{y}</td></tr>" for k, x, y in rows)
    return f'<table class="figures"><tr><th></th><th>before</th><th>after</th></tr>{body}</table>'


def _axis(top_hz: float) -> str:
    ticks = "".join(
        f'<span style="bottom:{100 * images.erb_position(f, top_hz):.2f}%">'
        f'{f / 1000:g}k</span>' if f >= 1000 else
        f'<span style="bottom:{100 * images.erb_position(f, top_hz):.2f}%">{f}</span>'
        for f in images.FREQ_TICKS_HZ if f <= top_hz)
    return f'<div class="axis">{ticks}</div>'


def _cutoff_line(cutoff_hz: float, top_hz: float, label: str) -> str:
    if cutoff_hz <= 0 or cutoff_hz >= top_hz * 0.98:
        return ""
    pos = 100 * images.erb_position(cutoff_hz, top_hz)
    return (f'<div class="cutoff" style="bottom:{pos:.2f}%">'
            f'<span>{html.escape(label)} {cutoff_hz / 1000:.1f} kHz</span></div>')


def _picture(src: str, alt: str, top_hz: float, overlay: str = "") -> str:
    return (f'<div class="plot">{_axis(top_hz)}<div class="img">'
            f'<img src="{src}" alt="{html.escape(alt)}" width="{images.WIDTH}" '
            f'height="{images.HEIGHT}">{overlay}</div></div>')


def _wave(svg: str) -> str:
    return f'<div class="plot"><div class="axis"></div><div class="img">{svg}</div></div>'


def _stages(reports: tuple[StageReport, ...]) -> str:
    if not reports:
        return '<p class="muted">Stage decisions were not recorded for this pair.</p>'
    items = "".join(
        f'<li class="{"acted" if r.acted else "idle"}"><b>{html.escape(r.stage)}</b> '
        f'{html.escape(r.summary)}</li>' for r in reports)
    return f'<ul class="stages">{items}</ul>'


def _section(r: _Rendered, base: Path, files: str) -> str:
    e = r.entry
    name = html.escape(e.original.name)
    if r.error is not None or r.pictures is None or r.before is None or r.after is None:
        return (f'<section id="clip-{r.index}" class="failed"><h2>{name}</h2>'
                f'<p class="error">failed: {html.escape(r.error or "")}</p></section>')
    assert e.restored is not None
    top = max(r.before.sample_rate, r.after.sample_rate) / 2.0
    p = r.pictures
    cut = _cutoff_line(r.before.cutoff_hz, top, "cutoff")
    original, restored = _href(e.original, base), _href(e.restored, base)
    player = f"""
<div class="ab" data-active="a">
  <audio class="a" preload="metadata" src="{original}" data-volume="{r.before_volume:.4f}"></audio>
  <audio class="b" preload="metadata" src="{restored}" data-volume="{r.after_volume:.4f}"></audio>
  <button type="button" class="play" aria-label="play or pause">&#9654; play</button>
  <button type="button" class="pick a on">A original</button>
  <button type="button" class="pick b">B restored</button>
  <input type="range" class="seek" min="0" max="1000" value="0" aria-label="position">
  <span class="time">0:00</span>
  <span class="muted">matched loudness; A/B keeps the position</span>
</div>"""
    return f"""
<section id="clip-{r.index}">
<h2>{name}</h2>
<p class="links"><a href="{original}">original</a> &middot; <a href="{restored}">restored</a>
 &rarr; {html.escape(e.restored.name)}</p>
{player}
<div class="grid">
  <div><h3>before</h3>{_picture(f"{files}/{p.before}", "spectrogram before", top, cut)}
    {_wave(r.waves[0])}</div>
  <div><h3>after</h3>{_picture(f"{files}/{p.after}", "spectrogram after", top, cut)}
    {_wave(r.waves[1])}</div>
  <div><h3>difference (after &minus; before, &plusmn;{images.DIFF_RANGE_DB:g} dB)</h3>
    {_picture(f"{files}/{p.difference}", "spectrogram difference", top, cut)}</div>
  <div><h3>figures</h3>{_figures_table(r.before, r.after)}<h3>stages</h3>{_stages(e.reports)}</div>
</div>
<p class="muted">Spectrograms: ERB-rate frequency scale, {p.vmin_db:.0f} to {p.vmax_db:.0f} dB
for both, the original raised to the restored loudness.</p>
</section>"""


def _summary_row(r: _Rendered) -> str:
    name = html.escape(r.entry.original.name)
    link = f'<a href="#clip-{r.index}">{name}</a>'
    if r.error is not None or r.before is None or r.after is None:
        return (f'<tr class="failed"><td>{link}</td><td>failed</td>'
                f'<td colspan="4">{html.escape(r.error or "")}</td></tr>')
    acted = ", ".join(s.stage for s in r.entry.reports if s.acted and s.stage != "resample")
    b, a = r.before, r.after
    return (f"<tr><td>{link}</td><td>restored</td>"
            f"<td>{_num(b.integrated_lufs, '.1f')} &rarr; {_num(a.integrated_lufs, '.1f')}</td>"
            f"<td>{_num(b.true_peak_dbtp, '+.1f')} &rarr; {_num(a.true_peak_dbtp, '+.1f')}</td>"
            f"<td>{_khz(b.cutoff_hz, b.sample_rate)} &rarr; {_khz(a.cutoff_hz, a.sample_rate)}</td>"
            f"<td>{html.escape(acted) or '&ndash;'}</td></tr>")


def _asset(name: str) -> str:
    return (resources.files("genrestore.report") / name).read_text("utf-8")


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote: the HTML path, how many clips it shows restored, and
    one line for each clip that failed (not restored, or unreadable)."""

    path: Path
    restored: int
    errors: tuple[str, ...]

    @property
    def failed(self) -> int:
        return len(self.errors)


def report_conflict(destination: str | os.PathLike[str]) -> str | None:
    """Why writing a report at ``destination`` would replace something (the page itself, or
    pictures of an earlier report in ``<stem>_files/``), or None when nothing is in the way."""
    out = Path(destination)
    if out.is_dir():
        return f"{out}: is a folder; name the report's HTML file (e.g. {out / 'report.html'})"
    if out.exists():
        return f"{out}: report exists (use --overwrite to replace it)"
    folder = out.parent / (out.stem + FILES_SUFFIX)
    if folder.is_dir() and any(_PICTURE.fullmatch(p.name) for p in folder.iterdir()):
        return f"{folder}: holds pictures of an earlier report (use --overwrite to replace them)"
    return None


def write_report(entries: Sequence[ReportEntry], destination: str | os.PathLike[str], *,
                 title: str = "genrestore report", jobs: int = 1,
                 overwrite: bool = False, album: str | None = None) -> ReportResult:
    """Write ``destination`` (HTML) and its pictures in ``<stem>_files/`` beside it.

    An existing report (page or pictures) is replaced only with ``overwrite=True``, and then
    the earlier report's pictures are removed first, so old and new are never mixed.  Audio is
    linked by paths relative to the HTML file.  A pair that cannot be read counts as failed.
    ``album`` is the album line of an album batch (``restore --album``), shown under the title.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ParameterError("the HTML report needs matplotlib: pip install 'genrestore[report]'"
                             ) from exc
    out = Path(destination)
    conflict = report_conflict(out)
    if conflict is not None and (not overwrite or out.is_dir()):
        raise AudioFileError(out, conflict.removeprefix(f"{out}: "))
    base = out.parent
    files = out.stem + FILES_SUFFIX
    folder = base / files
    if folder.is_dir():
        for stale in folder.iterdir():
            if _PICTURE.fullmatch(stale.name):
                stale.unlink()
    tasks = [(entry, i, folder) for i, entry in enumerate(entries)]
    if jobs > 1 and len(tasks) > 1:
        rendered = _render_in_pool(tasks, jobs)
    else:
        rendered = [_render(t) for t in tasks]
    restored = sum(r.error is None for r in rendered)
    rows = "".join(_summary_row(r) for r in rendered)
    sections = "".join(_section(r, base, quote(files, errors="surrogateescape")) for r in rendered)
    page = _PAGE.format(
        title=html.escape(title), style=_asset("report.css"), script=_asset("report.js"),
        count=f"{restored} restored, {len(rendered) - restored} failed"
        + (f'</p>\n<p class="album">{html.escape(album)}' if album else ""), rows=rows,
        sections=sections)
    write_atomic_text(out, page)
    log.info("report written to %s", out)
    return ReportResult(out, restored, tuple(r.error or "not restored" for r in rendered
                                            if r.error is not None))


def build_report(entries: Sequence[ReportEntry], destination: str | os.PathLike[str], *,
                 title: str = "genrestore report", jobs: int = 1, overwrite: bool = False,
                 album: str | None = None) -> Path:
    """:func:`write_report`, returning only the HTML path."""
    return write_report(entries, destination, title=title, jobs=jobs, overwrite=overwrite,
                        album=album).path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title><style>{style}</style></head>
<body>
<h1>{title}</h1>
<p>{count}</p>
<table class="summary"><tr><th>file</th><th>status</th><th>LUFS</th><th>true peak dBTP</th>
<th>bandwidth</th><th>stages that acted</th></tr>{rows}</table>
{sections}
<script>{script}</script>
</body></html>
"""
