"""Training data: real full-band music extracted from Debian game-music packages.

``python -m training.data --cache DIR`` (default cache: ``$GENRESTORE_TRAIN_CACHE``, else
``~/.cache/genrestore-train``) fills the cache:

* ``debs/``: the packages' ``.deb`` files (``apt-get download`` for any not there yet);
* ``music/<package>/<name>``: only the music tracks of each package (no sound effects);
* ``licences/<package>.copyright``: each package's ``debian/copyright``;
* ``manifest.csv``: one row per track (package, version, split, path relative to the cache,
  sha256, sample_rate, channels, duration_s, cutoff_hz, fullband, licence).

The split is by whole package, so one composer's tracks never sit on both sides: the
packages marked ``validation`` in :data:`PACKAGES` are held out, the others are for training.
``cutoff_hz`` is :func:`genrestore.analysis.estimate_cutoff_hz` on at most 30 s from the
middle of the track; ``fullband`` is ``cutoff_hz >= 17000``, so the trainer can keep only
full-band targets.

The evaluation corpus of ``genrestore bench`` (Debian's ``wesnoth-1.16-music`` and music21
scores rendered with the FluidR3 SoundFont, see ``scripts/prepare-corpus.sh``) must never be
trained on: an evaluation package in the table, a track whose path names that corpus, or a
track whose bytes equal a file of the evaluation-corpus folder (``--evaluation-corpus``,
default ``corpus/`` at the repository root) is refused with :class:`EvaluationCorpusError`.

Re-running is fast: a package whose manifest rows, tracks and licence file are all in place,
from the version of the ``.deb`` in the cache, is not extracted again (``--force`` rebuilds
everything).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
import soundfile as sf

from genrestore.analysis import estimate_cutoff_hz

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: A track counts as full-band when its measured cutoff is at least this (Hz).
FULLBAND_HZ = 17000.0
#: The cutoff is measured on at most this many seconds from the middle of a track.
CUTOFF_WINDOW_S = 30.0
#: Files in a package's music folders that are tracks (others, e.g. ``.music`` metadata, are not).
MUSIC_EXTENSIONS = (".ogg", ".oga", ".opus", ".flac", ".wav")
#: Files hashed in the evaluation-corpus folder.
EVALUATION_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
MANIFEST = "manifest.csv"
SPLITS = ("train", "validation")

#: Debian packages of ``genrestore bench``'s evaluation corpus (any ``wesnoth*`` package and
#: any ``fluid-soundfont*`` package count as well, see :func:`is_evaluation_package`).
EVALUATION_PACKAGES = ("wesnoth-1.16-music", "fluid-soundfont-gm")
_EVALUATION_PREFIXES = ("wesnoth", "fluid-soundfont")
#: A path component holding one of these (case-insensitive) names the evaluation corpus.
_EVALUATION_MARKERS = ("wesnoth", "fluidr3", "music21")


class DataError(Exception):
    """The training data cannot be built; the message is one line naming what failed."""


class EvaluationCorpusError(ValueError):
    """A file of ``genrestore bench``'s evaluation corpus was about to become training data."""


@dataclass(frozen=True)
class Package:
    """Where a Debian package keeps its music.

    ``music_dirs`` are folders inside the package (no leading ``./``) whose audio files, at
    any depth, are music tracks.  ``archives`` are ``(zip file inside the package, folder
    inside that zip)`` pairs for music kept in an archive (Quake-style ``.pk3``).
    """

    name: str
    split: str
    licence: str
    music_dirs: tuple[str, ...] = ()
    archives: tuple[tuple[str, str], ...] = ()


#: The packages (Debian bookworm) and their music folders, found with ``dpkg-deb -c``.
#: Licences were read from each package's debian/copyright by the team.
PACKAGES: tuple[Package, ...] = (
    Package("naev-data", "train", "per file: CC-BY-3.0, CC-BY-SA-3.0, GPL-3 (see debian/copyright)",
            ("usr/share/naev/dat/snd/music",)),
    Package("hedgewars-data", "train", "GPL-2", ("usr/share/games/hedgewars/Data/Music",)),
    Package("marsshooter-data", "train", "CC-BY-SA-3.0", ("usr/share/games/marsshooter/audio/music",)),
    Package("supertuxkart-data", "train",
            "mostly CC-BY-SA-3.0/4.0, some CC0/GPL (see debian/copyright)",
            ("usr/share/games/supertuxkart/data/music",)),
    Package("supertux-data", "train", "GPL-2+, some CC-BY-SA", ("usr/share/games/supertux2/music",)),
    Package("nexuiz-music", "train", "GPL-2+",
            archives=(("usr/share/games/nexuiz/data/music.pk3", "sound/cdtracks"),)),
    Package("freedroidrpg-data", "train", "GPL-2+", ("usr/share/freedroidrpg/data/sound/music",)),
    Package("0ad-data", "train", "CC-BY-SA-3.0 (Wildfire Games)",
            archives=(("usr/share/games/0ad/mods/public/public.zip", "audio/music"),)),
    Package("openclonk-data", "validation", "CC-BY-3.0 / CC0", ("usr/share/games/openclonk/Music.ocg",)),
    Package("freecol", "validation", "CC-BY-4.0",
            ("usr/share/games/freecol/default/resources/music/default",)),
    Package("starfighter-data", "validation", "GPL-2+ / CC", ("usr/share/starfighter/music",)),
)


@dataclass(frozen=True)
class Track:
    """One row of ``manifest.csv``; ``path`` is absolute (the CSV holds it relative to the cache)."""

    package: str
    version: str
    split: str
    path: Path
    sha256: str
    sample_rate: int
    channels: int
    duration_s: float
    cutoff_hz: float
    fullband: bool
    licence: str


COLUMNS = tuple(f.name for f in dataclasses.fields(Track))


@dataclass(frozen=True)
class PackageSummary:
    """What :func:`build` did with one package."""

    package: str
    split: str
    tracks: int
    hours: float
    fullband_hours: float
    extracted: bool
    duplicates: int = 0


# --- the evaluation corpus --------------------------------------------------------------------


def is_evaluation_package(package: str) -> bool:
    """Whether a Debian package belongs to the evaluation corpus of ``genrestore bench``."""
    name = package.strip().lower()
    return name in EVALUATION_PACKAGES or name.startswith(_EVALUATION_PREFIXES)


def refuse_evaluation(path: Path, *, package: str, sha256: str, evaluation_hashes: frozenset[str]) -> None:
    """Raise :class:`EvaluationCorpusError` when ``path`` is evaluation-corpus material.

    It is when ``package`` is an evaluation package, when a component of ``path`` names the
    corpus (holds ``wesnoth``, ``FluidR3`` or ``music21``, any case), or when ``sha256`` (the
    file's content hash) is one of ``evaluation_hashes``.
    """
    if is_evaluation_package(package):
        raise EvaluationCorpusError(
            f"{path}: package {package} is part of the evaluation corpus (genrestore bench); "
            "it must not be used for training")
    for part in PurePosixPath(Path(path).as_posix()).parts:
        low = part.lower()
        marker = next((m for m in _EVALUATION_MARKERS if m in low), None)
        if marker is not None:
            raise EvaluationCorpusError(
                f"{path}: the path names the evaluation corpus ({part!r} holds {marker!r}); "
                "it must not be used for training")
    if sha256.lower() in evaluation_hashes:
        raise EvaluationCorpusError(
            f"{path}: identical to a file of the evaluation corpus (sha256 {sha256[:16]}...); "
            "it must not be used for training")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evaluation_hashes(corpus_dir: Path) -> frozenset[str]:
    """sha256 of every audio file under ``corpus_dir`` (symlinked files and folders followed)."""
    root = Path(corpus_dir)
    if not root.is_dir():
        raise DataError(f"{root}: evaluation corpus folder not found")
    hashes = set()
    for folder, _dirs, files in os.walk(root, followlinks=True):
        for name in files:
            if Path(name).suffix.lower() not in EVALUATION_AUDIO_EXTENSIONS:
                continue
            f = Path(folder) / name
            try:
                hashes.add(sha256_file(f))
            except OSError as exc:
                raise DataError(f"{f}: cannot hash an evaluation-corpus file ({exc.strerror})") from exc
    return frozenset(hashes)


# --- packages ----------------------------------------------------------------------------------


def _check_table(packages: Sequence[Package]) -> None:
    seen: set[str] = set()
    for p in packages:
        if is_evaluation_package(p.name):
            raise EvaluationCorpusError(
                f"{p.name}: an evaluation-corpus package (genrestore bench) is in the package table; "
                "it must not be used for training")
        if p.name in seen:
            raise DataError(f"{p.name}: listed twice in the package table")
        if p.split not in SPLITS:
            raise DataError(f"{p.name}: unknown split {p.split!r} (one of {', '.join(SPLITS)})")
        if not p.music_dirs and not p.archives:
            raise DataError(f"{p.name}: no music folder given in the package table")
        seen.add(p.name)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise DataError(f"{what}: {cmd[0]} is not installed") from exc
    if proc.returncode != 0:
        raise DataError(f"{what}: {' '.join(cmd[:2])} failed: {_last_line(proc.stderr)}")
    return proc


def find_deb(debs: Path, package: str) -> Path | None:
    """The package's ``.deb`` in ``debs``, or None; more than one is an error."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if len(found) > 1:
        raise DataError(f"{package}: several .deb files in {debs} ({', '.join(f.name for f in found)}); "
                        "keep one")
    return found[0] if found else None


def download(package: str, debs: Path) -> Path:
    """The package's ``.deb`` in ``debs``, fetched with ``apt-get download`` when not there."""
    deb = find_deb(debs, package)
    if deb is not None:
        return deb
    debs.mkdir(parents=True, exist_ok=True)
    log.info("%s: apt-get download", package)
    try:
        proc = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True,
                              text=True, check=False)
    except FileNotFoundError as exc:
        raise DataError(f"{package}: cannot download: apt-get is not installed "
                        f"(put {package}_*.deb in {debs} by hand)") from exc
    if proc.returncode != 0:
        raise DataError(f"{package}: apt-get download failed: {_last_line(proc.stderr)}")
    deb = find_deb(debs, package)
    if deb is None:
        raise DataError(f"{package}: apt-get download left no {package}_*.deb in {debs}")
    return deb


def deb_field(deb: Path, field: str) -> str:
    """A control field of a ``.deb`` (``dpkg-deb -f``)."""
    value = _run(["dpkg-deb", "-f", str(deb), field], str(deb)).stdout.strip()
    if not value:
        raise DataError(f"{deb}: no {field} field in the package's control file")
    return value


def _under(name: str, folder: str) -> bool:
    return name.startswith(folder.strip("/") + "/")


def _is_music(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in MUSIC_EXTENSIONS


def _save(src: IO[bytes], dst: Path, source: str) -> None:
    if dst.exists():
        raise DataError(f"{source}: a second track named {dst.name} in the package's music folders")
    with open(dst, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def extract_package(deb: Path, package: Package, dest: Path) -> tuple[list[tuple[str, Path]], Path]:
    """Extract a package's music tracks into ``dest/music`` and its copyright file into
    ``dest/copyright``, streaming ``dpkg-deb --fsys-tarfile``.

    Returns ``(path inside the package, extracted file)`` per track, sorted by name, and the
    copyright file.  Music in an archive is named ``<archive>/<member>``.
    """
    music = dest / "music"
    archives = dest / "archives"
    music.mkdir(parents=True)
    archives.mkdir()
    copyright_name = f"usr/share/doc/{package.name}/copyright"
    copyright_file = dest / "copyright"
    tracks: list[tuple[str, Path]] = []
    found_archives: dict[str, Path] = {}
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                    stderr=errors)
        except FileNotFoundError as exc:
            raise DataError(f"{deb}: dpkg-deb is not installed") from exc
        stream = proc.stdout
        assert stream is not None
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    name = member.name.removeprefix("./")
                    archive = next((a for a, _ in package.archives if name == a), None)
                    track = _is_music(name) and any(_under(name, d) for d in package.music_dirs)
                    if not (archive or track or name == copyright_name):
                        continue
                    if not member.isfile():
                        log.warning("%s: %s is a link, not a file: skipped", package.name, name)
                        continue
                    src = tar.extractfile(member)
                    assert src is not None
                    if name == copyright_name:
                        _save(src, copyright_file, name)
                    elif archive:
                        found_archives[name] = archives / f"{len(found_archives)}.zip"
                        _save(src, found_archives[name], name)
                    else:
                        dst = music / PurePosixPath(name).name
                        _save(src, dst, name)
                        tracks.append((name, dst))
        except tarfile.TarError as exc:
            stream.close()
            proc.wait()
            errors.seek(0)
            said = errors.read().decode(errors="replace")
            detail = _last_line(said) if said.strip() else str(exc)
            raise DataError(f"{deb}: cannot read the package's files ({detail})") from exc
        except BaseException:
            proc.kill()
            raise
        finally:
            stream.close()
            proc.wait()
        if proc.returncode != 0:
            errors.seek(0)
            raise DataError(f"{deb}: dpkg-deb --fsys-tarfile failed: "
                            f"{_last_line(errors.read().decode(errors='replace'))}")
    for archive, folder in package.archives:
        if archive not in found_archives:
            raise DataError(f"{deb}: no {archive} in the package")
        try:
            with zipfile.ZipFile(found_archives[archive]) as z:
                for info in z.infolist():
                    if info.is_dir() or not _is_music(info.filename) or not _under(info.filename, folder):
                        continue
                    source = f"{archive}/{info.filename}"
                    dst = music / PurePosixPath(info.filename).name
                    with z.open(info) as src:
                        _save(src, dst, source)
                    tracks.append((source, dst))
        except zipfile.BadZipFile as exc:
            raise DataError(f"{deb}: {archive} is not a readable zip archive ({exc})") from exc
    shutil.rmtree(archives)
    if not copyright_file.is_file():
        raise DataError(f"{deb}: no {copyright_name} in the package")
    if not tracks:
        places = package.music_dirs + tuple(a for a, _ in package.archives)
        raise DataError(f"{deb}: no music found under {', '.join(places)}")
    return sorted(tracks), copyright_file


# --- measurements and the manifest -------------------------------------------------------------


def measure(path: Path) -> tuple[int, int, float, float]:
    """``(sample_rate, channels, duration_s, cutoff_hz)`` of a track; the cutoff is measured
    on at most :data:`CUTOFF_WINDOW_S` seconds from its middle."""
    try:
        info = sf.info(str(path))
        rate, frames = int(info.samplerate), int(info.frames)
        window = min(frames, round(CUTOFF_WINDOW_S * rate))
        data, _ = sf.read(str(path), start=(frames - window) // 2, frames=window, dtype="float32",
                          always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise DataError(f"{path}: not readable audio ({exc})") from exc
    if data.shape[0] == 0:
        raise DataError(f"{path}: no audio frames")
    if not np.all(np.isfinite(data)):
        raise DataError(f"{path}: NaN or infinite samples")
    cutoff = estimate_cutoff_hz(data.T, rate)
    return rate, int(info.channels), frames / rate, float(cutoff)


def _format(track: Track, cache: Path) -> list[str]:
    return [track.package, track.version, track.split, track.path.relative_to(cache).as_posix(),
            track.sha256, str(track.sample_rate), str(track.channels), repr(track.duration_s),
            repr(track.cutoff_hz), "true" if track.fullband else "false", track.licence]


def write_manifest(cache: Path, tracks: Iterable[Track]) -> Path:
    """Write ``cache/manifest.csv`` atomically (a ``.part`` file renamed over it)."""
    dst = cache / MANIFEST
    part = cache / (MANIFEST + ".part")
    with open(part, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for t in tracks:
            writer.writerow(_format(t, cache))
    os.replace(part, dst)
    return dst


def _bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"not true/false: {text!r}")
    return text == "true"


def read_manifest(cache: Path) -> list[Track]:
    """The tracks of ``cache/manifest.csv``, paths made absolute (``cache / path``)."""
    cache = Path(cache).expanduser().absolute()
    src = cache / MANIFEST
    if not src.is_file():
        raise DataError(f"{src}: no manifest; build it with: python -m training.data --cache {cache}")
    tracks = []
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise DataError(f"{src}: unexpected header (expected {','.join(COLUMNS)})")
        for line, row in enumerate(reader, start=2):
            try:
                if len(row) != len(COLUMNS):
                    raise ValueError(f"{len(row)} fields, not {len(COLUMNS)}")
                v = dict(zip(COLUMNS, row, strict=True))
                if v["split"] not in SPLITS:
                    raise ValueError(f"unknown split {v['split']!r}")
                tracks.append(Track(
                    package=v["package"], version=v["version"], split=v["split"],
                    path=cache / v["path"], sha256=v["sha256"], sample_rate=int(v["sample_rate"]),
                    channels=int(v["channels"]), duration_s=float(v["duration_s"]),
                    cutoff_hz=float(v["cutoff_hz"]), fullband=_bool(v["fullband"]), licence=v["licence"]))
            except ValueError as exc:
                raise DataError(f"{src}, line {line}: {exc}") from exc
    return tracks


# --- building ------------------------------------------------------------------------------------


def _in_place(cache: Path, package: Package, rows: list[Track]) -> bool:
    """Whether the package's rows, tracks and licence file are there, from the ``.deb`` in the
    cache (when there is one: another version there is extracted again)."""
    if not rows or not (cache / "licences" / f"{package.name}.copyright").is_file():
        return False
    if not all(t.path.is_file() for t in rows):
        return False
    deb = find_deb(cache / "debs", package.name)
    return deb is None or {t.version for t in rows} == {deb_field(deb, "Version")}


def _extract_and_measure(cache: Path, package: Package, evaluation: frozenset[str],
                         seen: dict[str, str]) -> tuple[list[Track], int]:
    deb = download(package.name, cache / "debs")
    declared = deb_field(deb, "Package")
    if declared != package.name:
        raise DataError(f"{deb}: holds package {declared}, not {package.name}")
    version = deb_field(deb, "Version")
    log.info("%s %s: extracting", package.name, version)
    staging = Path(tempfile.mkdtemp(prefix=f".{package.name}.", dir=cache))
    try:
        extracted, copyright_file = extract_package(deb, package, staging)
        final = cache / "music" / package.name
        tracks, duplicates = [], 0
        for source, file in extracted:
            digest = sha256_file(file)
            refuse_evaluation(Path(source), package=package.name, sha256=digest, evaluation_hashes=evaluation)
            if digest in seen:
                log.info("%s: %s has the same bytes as %s: left out", package.name, source, seen[digest])
                file.unlink()
                duplicates += 1
                continue
            seen[digest] = f"{package.name}:{source}"
            rate, channels, duration, cutoff = measure(file)
            # Rounded as the manifest holds them, so read_manifest gives back equal tracks.
            duration, cutoff = round(duration, 6), round(cutoff, 1)
            tracks.append(Track(package.name, version, package.split, final / file.name, digest, rate,
                                channels, duration, cutoff, cutoff >= FULLBAND_HZ, package.licence))
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "music", final)
        (cache / "licences").mkdir(exist_ok=True)
        os.replace(copyright_file, cache / "licences" / f"{package.name}.copyright")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tracks, duplicates


def build(cache: Path, packages: Sequence[Package] = PACKAGES, *, force: bool = False,
          evaluation: frozenset[str] = frozenset()) -> tuple[list[Track], list[PackageSummary]]:
    """Fetch, extract and measure every package's music into ``cache``; write the manifest.

    A package whose manifest rows, tracks and licence file are all in place is kept as it is
    (unless ``force``).  Every track, kept or new, is checked with :func:`refuse_evaluation`
    against ``evaluation`` (content hashes of the evaluation corpus) before it enters the
    manifest, which is rewritten after each package.  A track whose bytes equal one already
    in the manifest (from an earlier package in the table) is left out.
    """
    _check_table(packages)
    cache = Path(cache).expanduser().absolute()
    cache.mkdir(parents=True, exist_ok=True)
    existing: list[Track] = []
    if not force and (cache / MANIFEST).exists():
        existing = read_manifest(cache)
    current: dict[str, list[Track]] = {p.name: [] for p in packages}
    for t in existing:
        if t.package in current:
            current[t.package].append(t)
    summaries = []
    for package in packages:
        rows = current[package.name]
        keep = not force and _in_place(cache, package, rows)
        seen = {t.sha256: f"{t.package}:{t.path.name}" for name, ts in current.items()
                if name != package.name for t in ts}
        duplicates = 0
        if keep:
            rows = [dataclasses.replace(t, split=package.split, licence=package.licence) for t in rows]
            for t in rows:
                refuse_evaluation(t.path.relative_to(cache), package=package.name, sha256=t.sha256,
                                  evaluation_hashes=evaluation)
        else:
            current[package.name] = []
            write_manifest(cache, [t for ts in current.values() for t in ts])
            rows, duplicates = _extract_and_measure(cache, package, evaluation, seen)
        current[package.name] = rows
        write_manifest(cache, [t for ts in current.values() for t in ts])
        summaries.append(PackageSummary(
            package.name, package.split, len(rows), sum(t.duration_s for t in rows) / 3600.0,
            sum(t.duration_s for t in rows if t.fullband) / 3600.0, not keep, duplicates))
    return [t for ts in current.values() for t in ts], summaries


# --- command line --------------------------------------------------------------------------------


def default_cache() -> Path:
    """``$GENRESTORE_TRAIN_CACHE``, else ``~/.cache/genrestore-train``."""
    env = os.environ.get("GENRESTORE_TRAIN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genrestore-train"


def _summary_line(label: str, split: str, tracks: int, hours: float, fullband_hours: float,
                  note: str = "") -> str:
    return (f"{label:<20} {split:<10} {tracks:4d} tracks {hours:6.2f} h  full-band {fullband_hours:6.2f} h"
            + (f"  ({note})" if note else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: $GENRESTORE_TRAIN_CACHE or ~/.cache/genrestore-train)")
    parser.add_argument("--evaluation-corpus", type=Path, default=None,
                        help="folder of genrestore bench's evaluation corpus whose files are refused "
                             "(default: corpus/ at the repository root when it exists)")
    parser.add_argument("--force", action="store_true", help="extract and measure every package again")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = (args.cache or default_cache()).expanduser()
    corpus = args.evaluation_corpus
    if corpus is None and (REPO_ROOT / "corpus").is_dir():
        corpus = REPO_ROOT / "corpus"
    try:
        hashes: frozenset[str] = frozenset()
        if corpus is not None:
            hashes = evaluation_hashes(corpus)
            print(f"evaluation corpus: {len(hashes)} files hashed in {corpus}: refused if found")
        else:
            print("evaluation corpus: no corpus/ folder; refusing by package and path names only")
        tracks, summaries = build(cache, PACKAGES, force=args.force, evaluation=hashes)
    except (DataError, EvaluationCorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for s in summaries:
        notes = ["extracted" if s.extracted else "cached"]
        if s.duplicates:
            notes.append(f"{s.duplicates} duplicate file(s) left out")
        print(_summary_line(s.package, s.split, s.tracks, s.hours, s.fullband_hours, ", ".join(notes)))
    for split in SPLITS:
        part = [t for t in tracks if t.split == split]
        print(_summary_line(f"total {split}", split, len(part), sum(t.duration_s for t in part) / 3600,
                            sum(t.duration_s for t in part if t.fullband) / 3600))
    print(_summary_line("total", "", len(tracks), sum(t.duration_s for t in tracks) / 3600,
                        sum(t.duration_s for t in tracks if t.fullband) / 3600))
    print(f"manifest: {cache / MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
