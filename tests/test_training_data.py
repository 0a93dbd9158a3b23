"""training.data: evaluation-corpus refusal, extraction from a .deb, the manifest.

The packages are tiny .deb files built here with ``dpkg-deb --build`` from synthetic noise;
nothing is downloaded (a stand-in ``apt-get`` that always fails is first on PATH).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import data
from training.data import (
    EVALUATION_PACKAGES,
    DataError,
    EvaluationCorpusError,
    Package,
    build,
    evaluation_hashes,
    read_manifest,
    refuse_evaluation,
)

RATE = 44100
BAND_EDGE_HZ = 8000.0
MUSIC = "usr/share/games/fakegame/music"
PK3 = "usr/share/games/fakegame/data/music.pk3"
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")


def _flac(seed: int, *, band_edge_hz: float | None = None, seconds: float = 2.0) -> bytes:
    """Stereo white noise at -20 dBFS as 16-bit FLAC bytes, brick-wall low-passed when asked."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((int(RATE * seconds), 2)) * 0.1
    if band_edge_hz is not None:
        spectrum = np.fft.rfft(x, axis=0)
        spectrum[np.fft.rfftfreq(x.shape[0], 1.0 / RATE) > band_edge_hz] = 0.0
        x = np.fft.irfft(spectrum, n=x.shape[0], axis=0)
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


def _deb(debs: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    tree = debs.parent.parent / "trees" / f"{name}_{version}"  # beside the cache, not in it
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test package\n")
    files = {f"usr/share/doc/{name}/copyright": f"{name}: test licence\n".encode(), **files}
    for rel, payload in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(payload)
    debs.mkdir(parents=True, exist_ok=True)
    out = debs / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(tree), str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture
def failing_apt_get(tmp_path, monkeypatch):
    """An ``apt-get`` first on PATH that fails like an unknown package, so nothing is fetched."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "apt-get"
    script.write_text("#!/bin/sh\necho \"E: Unable to locate package $2\" >&2\nexit 100\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return script


FULL = _flac(1)
NARROW = _flac(2, band_edge_hz=BAND_EDGE_HZ)
ZIPPED = _flac(3, seconds=1.5)
FAKE = Package("fakegame-data", "validation", "CC0 (test)", (MUSIC,), ((PK3, "sound/cdtracks"),))
FAKE_FILES = {
    f"{MUSIC}/full.flac": FULL,
    f"{MUSIC}/sub/narrow.flac": NARROW,
    f"{MUSIC}/narrow.music": b"title: not a track\n",
    "usr/share/games/fakegame/sounds/boom.flac": _flac(4, seconds=0.5),
    PK3: _zip({"sound/cdtracks/zipped.flac": ZIPPED, "sound/misc/beep.flac": _flac(5, seconds=0.5)}),
}


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# --- refusal -----------------------------------------------------------------------------------


def test_refuses_an_evaluation_package():
    with pytest.raises(EvaluationCorpusError, match=r"^usr/share/music/a\.ogg: package wesnoth-1\.16-music"):
        refuse_evaluation(Path("usr/share/music/a.ogg"), package="wesnoth-1.16-music", sha256="0" * 64,
                          evaluation_hashes=frozenset())
    assert issubclass(EvaluationCorpusError, ValueError)
    assert "wesnoth-1.16-music" in EVALUATION_PACKAGES


@pytest.mark.parametrize("path", [
    "usr/share/games/wesnoth/1.16/data/core/music/battle.ogg",
    "corpus/midi/FluidR3_GM.sf2.wav",
    "renders/music21-bach/bwv66.wav",
])
def test_refuses_a_path_naming_the_evaluation_corpus(path):
    with pytest.raises(EvaluationCorpusError) as caught:
        refuse_evaluation(Path(path), package="somegame-data", sha256="0" * 64, evaluation_hashes=frozenset())
    message = str(caught.value)
    assert message.startswith(path)
    assert "\n" not in message


def test_refuses_a_copy_of_an_evaluation_file_under_another_name(tmp_path):
    outside = tmp_path / "installed" / "music"
    outside.mkdir(parents=True)
    (outside / "heroes_rite.ogg").write_bytes(FULL)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "wesnoth").symlink_to(outside, target_is_directory=True)  # as prepare-corpus.sh links
    (corpus / "midi").mkdir()
    (corpus / "midi" / "bach.wav").write_bytes(NARROW)
    (corpus / "notes.txt").write_bytes(ZIPPED)  # not audio: not hashed
    hashes = evaluation_hashes(corpus)
    assert hashes == {_sha(FULL), _sha(NARROW)}
    renamed = tmp_path / "game" / "theme.ogg"
    renamed.parent.mkdir()
    renamed.write_bytes(FULL)
    with pytest.raises(EvaluationCorpusError, match="identical to a file of the evaluation corpus"):
        refuse_evaluation(renamed, package="somegame-data", sha256=data.sha256_file(renamed),
                          evaluation_hashes=hashes)
    # A file of other bytes, an ordinary package, an ordinary path: accepted.
    refuse_evaluation(Path("usr/share/games/somegame/music/theme.ogg"), package="somegame-data",
                      sha256=_sha(ZIPPED), evaluation_hashes=hashes)


def test_the_package_table_holds_no_evaluation_package_and_splits_by_package():
    names = [p.name for p in data.PACKAGES]
    assert not any(data.is_evaluation_package(n) for n in names)
    assert len(set(names)) == len(names) == 11
    assert {p.name for p in data.PACKAGES if p.split == "validation"} == {
        "openclonk-data", "freecol", "starfighter-data"}


@pytest.mark.parametrize("name", ["wesnoth-1.16-music", "wesnoth-1.18-music", "fluid-soundfont-gm"])
def test_adding_an_evaluation_package_to_the_table_fails(tmp_path, failing_apt_get, name):
    table = (*data.PACKAGES[:2], Package(name, "train", "GPL-2+", ("usr/share/games/wesnoth/music",)))
    with pytest.raises(EvaluationCorpusError, match=rf"^{name}: an evaluation-corpus package"):
        build(tmp_path / "cache", table)
    assert not (tmp_path / "cache" / "manifest.csv").exists()


# --- fetching ----------------------------------------------------------------------------------


def test_a_failed_download_names_the_package(tmp_path, failing_apt_get):
    with pytest.raises(DataError, match=r"^nosuch-data: apt-get download failed: E: Unable to locate"):
        data.download("nosuch-data", tmp_path / "debs")


def test_a_missing_apt_get_names_the_package(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DataError, match=r"^nosuch-data: cannot download: apt-get is not installed"):
        data.download("nosuch-data", tmp_path / "debs")


# --- extraction and the manifest ---------------------------------------------------------------


@needs_dpkg
def test_extracts_music_only_and_writes_the_manifest(tmp_path, failing_apt_get):
    cache = tmp_path / "cache"
    _deb(cache / "debs", FAKE.name, "1.2-3", FAKE_FILES)
    tracks, summaries = build(cache, (FAKE,))
    assert [s.extracted for s in summaries] == [True]

    music = cache / "music" / FAKE.name
    assert sorted(p.name for p in music.iterdir()) == ["full.flac", "narrow.flac", "zipped.flac"]
    assert (cache / "licences" / f"{FAKE.name}.copyright").read_text() == f"{FAKE.name}: test licence\n"
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no staging left behind

    rows = {t.path.name: t for t in read_manifest(cache)}
    assert rows == {t.path.name: t for t in tracks}
    assert set(rows) == {"full.flac", "narrow.flac", "zipped.flac"}
    for name, payload, seconds in [("full.flac", FULL, 2.0), ("narrow.flac", NARROW, 2.0),
                                   ("zipped.flac", ZIPPED, 1.5)]:
        t = rows[name]
        assert t.path == music / name
        assert t.sha256 == _sha(payload) == data.sha256_file(t.path)
        assert (t.package, t.version, t.split, t.licence) == (FAKE.name, "1.2-3", "validation", "CC0 (test)")
        assert (t.sample_rate, t.channels) == (RATE, 2)
        assert t.duration_s == pytest.approx(seconds, abs=1e-3)
    # White noise fills the band to Nyquist; the brick-wall low-passed noise stops at its edge
    # (within a few spectral-resolution steps of the estimator's 100 Hz smoothing).
    assert rows["full.flac"].cutoff_hz >= 0.95 * RATE / 2
    assert rows["full.flac"].fullband is True
    assert rows["narrow.flac"].cutoff_hz == pytest.approx(BAND_EDGE_HZ, abs=300.0)
    assert rows["narrow.flac"].fullband is False
    lines = (cache / "manifest.csv").read_text().splitlines()
    assert lines[0] == ",".join(data.COLUMNS)
    assert len(lines) == 4
    assert sorted(line.split(",")[3] for line in lines[1:]) == [
        f"music/{FAKE.name}/{name}" for name in ("full.flac", "narrow.flac", "zipped.flac")]

    # Re-running keeps everything (nothing extracted again, no duplicated rows) ...
    stamp = (music / "full.flac").stat().st_mtime_ns
    again, summaries = build(cache, (FAKE,))
    assert [s.extracted for s in summaries] == [False]
    assert again == tracks
    assert (cache / "manifest.csv").read_text().splitlines() == lines
    assert (music / "full.flac").stat().st_mtime_ns == stamp
    # ... --force extracts again, to the same rows.
    forced, summaries = build(cache, (FAKE,), force=True)
    assert [s.extracted for s in summaries] == [True]
    assert forced == tracks
    assert len(read_manifest(cache)) == 3
    # A track gone from the cache makes the package extracted again.
    (music / "narrow.flac").unlink()
    repaired, summaries = build(cache, (FAKE,))
    assert [s.extracted for s in summaries] == [True]
    assert repaired == tracks
    # Another version of the package in the cache is extracted again.
    (cache / "debs" / f"{FAKE.name}_1.2-3_all.deb").unlink()
    _deb(cache / "debs", FAKE.name, "1.2-4", FAKE_FILES)
    newer, summaries = build(cache, (FAKE,))
    assert [s.extracted for s in summaries] == [True]
    assert {t.version for t in newer} == {t.version for t in read_manifest(cache)} == {"1.2-4"}


@needs_dpkg
def test_a_copy_across_packages_enters_the_manifest_once(tmp_path, failing_apt_get):
    cache = tmp_path / "cache"
    _deb(cache / "debs", FAKE.name, "1.2-3", FAKE_FILES)
    other = Package("othergame-data", "train", "GPL-2+", ("usr/share/othergame/music",))
    _deb(cache / "debs", other.name, "0.1-1", {
        "usr/share/othergame/music/same_as_full.flac": FULL, "usr/share/othergame/music/own.flac": _flac(6)})
    tracks, summaries = build(cache, (FAKE, other))
    assert [(s.package, s.tracks, s.duplicates) for s in summaries] == [
        (FAKE.name, 3, 0), (other.name, 1, 1)]
    assert [t.path.name for t in tracks if t.package == other.name] == ["own.flac"]
    assert {t.split for t in tracks if t.package == other.name} == {"train"}


@needs_dpkg
def test_an_evaluation_file_inside_a_package_is_refused_before_the_manifest(tmp_path, failing_apt_get):
    cache = tmp_path / "cache"
    _deb(cache / "debs", FAKE.name, "1.2-3", FAKE_FILES)
    corpus = tmp_path / "corpus" / "wesnoth"
    corpus.mkdir(parents=True)
    (corpus / "the_king_is_dead.ogg").write_bytes(NARROW)
    with pytest.raises(EvaluationCorpusError, match=rf"^{MUSIC}/sub/narrow\.flac: identical to a file"):
        build(cache, (FAKE,), evaluation=evaluation_hashes(tmp_path / "corpus"))
    assert read_manifest(cache) == []
    # Already extracted packages are checked again on every run, against the current corpus.
    build(cache, (FAKE,))
    with pytest.raises(EvaluationCorpusError, match=rf"music/{FAKE.name}/narrow\.flac: identical"):
        build(cache, (FAKE,), evaluation=evaluation_hashes(tmp_path / "corpus"))


@needs_dpkg
def test_the_command_line_prints_one_line_per_package_and_fails_in_one_line(tmp_path, failing_apt_get,
                                                                           monkeypatch, capsys):
    cache = tmp_path / "cache"
    _deb(cache / "debs", FAKE.name, "1.2-3", FAKE_FILES)
    monkeypatch.setattr(data, "PACKAGES", (FAKE,))
    empty = tmp_path / "no-corpus"
    empty.mkdir()
    assert data.main(["--cache", str(cache), "--evaluation-corpus", str(empty)]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith(FAKE.name)]) == 1
    assert "3 tracks" in out
    monkeypatch.setattr(data, "PACKAGES", (Package("missing-data", "train", "x", ("a",)),))
    assert data.main(["--cache", str(cache), "--evaluation-corpus", str(empty)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: missing-data: apt-get download failed")
    assert "\n" not in err


def test_read_manifest_without_a_manifest_says_how_to_build_it(tmp_path):
    with pytest.raises(DataError, match=r"python -m training\.data --cache"):
        read_manifest(tmp_path)
