"""Hostile inputs through the real CLI: files a new user could hand to `genrestore restore`.

Every case is generated here (no fixture files).  Each one asserts the exit code, that a bad
file gets exactly one error line naming it (no traceback, no decoder chatter: stderr is
captured at the file-descriptor level, where C libraries write), and that no file that
existed before the run changed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import genrestore
from conftest import sine
from genrestore.cli import main
from genrestore.errors import display_path

RATE = 32000
SECONDS = 0.3
#: What the decoders underneath print when they are handed something they cannot parse.
CHATTER = ("Traceback", "Illegal Audio-MPEG-Header", "resync", "libmpg123", "Note:",
           "Warning:", "warning:", "RuntimeWarning", "Exception")


def _wav(audio: np.ndarray, rate: int = RATE, subtype: str = "FLOAT") -> bytes:
    path = _scratch() / "w.wav"
    sf.write(os.fsencode(path), np.asarray(audio, dtype=np.float32).T, rate, subtype=subtype)
    return path.read_bytes()


def _encoded(audio: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    path = _scratch() / f"e.{fmt.lower()}"
    sf.write(os.fsencode(path), np.asarray(audio, dtype=np.float32).T, rate, format=fmt,
             subtype=subtype)
    return path.read_bytes()


_SCRATCH: list[Path] = []


def _scratch() -> Path:
    return _SCRATCH[-1]


def _music(rate: int = RATE, channels: int = 1, seconds: float = SECONDS) -> np.ndarray:
    x = sine(440, rate, seconds, 0.3) + sine(1320, rate, seconds, 0.1)
    return np.repeat(x, channels, axis=0) if channels > 1 else x


def _truncated() -> bytes:
    data = _wav(_music(), subtype="PCM_16")
    return data[: len(data) // 2]


def _random(n: int = 4000) -> bytes:
    return np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()


TEXT = b"This is not audio, it is a text file someone renamed.\n" * 40
HTML = b"<!DOCTYPE html><html><head><title>404</title></head><body>Not found</body></html>\n" * 20
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(2000)


@dataclass(frozen=True)
class Case:
    name: str
    files: Callable[[], dict[str, bytes]]
    problem: str | None = None  # None: it must restore (exit 0); else a part of the error line
    args: tuple[str, ...] = ()  # extra CLI arguments; "{0}" is the first file
    preset: str = "none"


BAD = [
    Case("empty", lambda: {"empty.wav": b""}, "empty file"),
    Case("header only", lambda: {"header.wav": _wav(np.zeros((1, 0)))}, "no audio frames"),
    Case("truncated", lambda: {"cut.wav": _truncated()}, "truncated: the header declares 9600 "
         "frames"),
    Case("text as wav", lambda: {"notes.wav": TEXT}, "not a readable audio file"),
    Case("text as mp3", lambda: {"notes.mp3": TEXT}, "not a readable audio file"),
    Case("html as mp3", lambda: {"download.mp3": HTML}, "not a readable audio file"),
    Case("png as mp3", lambda: {"cover.mp3": PNG}, "not a readable audio file"),
    Case("png as wav", lambda: {"cover.wav": PNG}, "not a readable audio file"),
    Case("random as wav", lambda: {"noise.wav": _random()}, "not a readable audio file"),
    Case("random as flac", lambda: {"noise.flac": _random()}, "not a readable audio file"),
    Case("random as mp3", lambda: {"noise.mp3": _random()}, "not a readable audio file"),
    Case("random as ogg", lambda: {"noise.ogg": _random()}, "not a readable audio file"),
    Case("flac magic, then garbage", lambda: {"broken.flac": b"fLaC" + _random()},
         "not a readable audio file"),
    Case("riff magic, then garbage", lambda: {"broken.wav": b"RIFF\x10\0\0\0WAVE" + _random()},
         "not a readable audio file"),
    Case("id3 tag, then garbage", lambda: {"broken.mp3": b"ID3\4\0\0\0\0\0\x10" + _random()},
         "not a readable audio file"),
    Case("mpeg sync, then garbage", lambda: {"broken.mp3": b"\xff\xfb\x90\xc4" + _random()},
         "not a readable audio file"),
    Case("nan", lambda: {"nan.wav": _wav(np.where(np.arange(RATE) % 100 == 0, np.nan,
                                                  0.1)[np.newaxis])}, "NaN or infinite"),
    Case("inf", lambda: {"inf.wav": _wav(np.where(np.arange(RATE) == 5, np.inf,
                                                  0.1)[np.newaxis])}, "NaN or infinite"),
    Case("one sample", lambda: {"one.wav": _wav(np.full((1, 1), 0.5))}, "too short"),
    Case("8 channels", lambda: {"octo.wav": _wav(_music(channels=8))}, "8 channels"),
    Case("32 channels", lambda: {"many.wav": _wav(_music(channels=32))}, "32 channels"),
    Case("4 kHz", lambda: {"low.wav": _wav(_music(4000), 4000)}, "sample rate 4000 Hz"),
]

GOOD = [
    Case("flac named wav", lambda: {"really_flac.wav": _encoded(_music(), RATE, "FLAC")}),
    Case("wav named mp3", lambda: {"really_wav.mp3": _wav(_music())}),
    Case("real mp3", lambda: {"song.mp3": _encoded(_music(44100, 2, 0.5), 44100, "MP3")}),
    Case("real ogg", lambda: {"song.ogg": _encoded(_music(44100, 2, 0.5), 44100, "OGG")}),
    Case("+40 dBFS floats", lambda: {"hot.wav": _wav(100.0 * _music())}),
    Case("+40 dBFS floats, default preset", lambda: {"hot.wav": _wav(100.0 * _music())},
         preset="auto"),
    Case("digital silence", lambda: {"silence.wav": _wav(np.zeros((1, RATE)))}),
    Case("digital silence, default preset", lambda: {"silence.wav": _wav(np.zeros((2, RATE)))},
         preset="auto"),
    Case("dc only", lambda: {"dc.wav": _wav(np.full((1, RATE), 0.25))}),
    Case("dc only, default preset", lambda: {"dc.wav": _wav(np.full((1, RATE), 0.25))},
         preset="auto"),
    *[Case(f"{rate} Hz", lambda rate=rate: {f"r{rate}.wav": _wav(_music(rate), rate)})
      for rate in (8000, 11025, 16000, 22050, 96000, 192000, 384000)],
    Case("8 kHz, default preset", lambda: {"r8000.wav": _wav(_music(8000), 8000)},
         preset="auto"),
    Case("space in name", lambda: {"my song (final).wav": _wav(_music())}),
    Case("unicode name", lambda: {"café 日本 ♪.wav": _wav(_music())}),
    Case("latin-1 byte in name", lambda: {os.fsdecode(b"caf\xe9.wav"): _wav(_music())}),
    Case("leading dash via ./", lambda: {"-x.wav": _wav(_music())}, args=("./{0}",)),
    Case("leading dash after --", lambda: {"-x.wav": _wav(_music())}, args=("--", "{0}")),
]



def _tree(folder: Path) -> dict[bytes, str]:
    """sha256 of every file under ``folder`` (byte names: some are not UTF-8)."""
    out = {}
    for root, _, names in os.walk(os.fsencode(folder)):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def _make(folder: Path, case: Case) -> list[str]:
    scratch = folder / ".scratch"
    scratch.mkdir()
    _SCRATCH.append(scratch)
    try:
        files = case.files()
    finally:
        _SCRATCH.pop()
        for f in scratch.iterdir():
            f.unlink()
        scratch.rmdir()
    for name, content in files.items():
        with open(os.fsencode(folder / name), "wb") as f:
            f.write(content)
    return list(files)


def _run(folder: Path, case: Case, names: list[str], capfd: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    monkeypatch.chdir(folder)
    inputs = [a.format(*names) for a in case.args] if case.args else names
    capfd.readouterr()
    code = main(["restore", "--preset", case.preset, *extra, *inputs])
    out, err = capfd.readouterr()
    return code, out, err


def _assert_clean(text: str) -> None:
    for word in CHATTER:
        assert word not in text, f"{word!r} on the terminal:\n{text}"


def _assert_one_error_line(err: str, name: str, problem: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("genrestore: error:")]
    assert len(errors) == 1, err
    assert display_path(name) in errors[0], errors[0]
    assert problem in errors[0], errors[0]
    others = [line for line in lines if line not in errors]
    assert all(line.endswith("failed") and "restored" in line for line in others), err


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_file_fails_with_one_line_and_changes_nothing(
        tmp_path: Path, case: Case, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    names = _make(tmp_path, case)
    before = _tree(tmp_path)
    code, out, err = _run(tmp_path, case, names, capfd, monkeypatch)
    assert code == 1, err
    _assert_one_error_line(err, names[0], str(case.problem))
    _assert_clean(out + err)
    assert _tree(tmp_path) == before, "a bad input must leave every file as it was, and no output"


@pytest.mark.parametrize("case", GOOD,
                         ids=[c.name for c in GOOD])
def test_odd_but_valid_file_restores_and_changes_nothing(
        tmp_path: Path, case: Case, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    names = _make(tmp_path, case)
    before = _tree(tmp_path)
    code, out, err = _run(tmp_path, case, names, capfd, monkeypatch)
    assert code == 0, err
    _assert_clean(out + err)
    after = _tree(tmp_path)
    assert {k: after.get(k) for k in before} == before, "an input changed"
    new = [os.fsdecode(k) for k in after if k not in before]
    assert len(new) == 1, new
    assert new[0].endswith("_restored.wav"), new
    audio, rate = sf.read(os.fsencode(new[0]), always_2d=True)
    info_in = sf.info(os.fsencode(tmp_path / names[0]))
    assert rate == 44100
    assert audio.shape[1] == info_in.channels
    assert audio.shape[0] == pytest.approx(info_in.frames * 44100 / info_in.samplerate, abs=2)
    assert np.all(np.isfinite(audio))


def _deny_writes(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """A read-only folder: by mode, and for root (whom modes do not stop) by making the
    create call fail as it does for anyone else."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return
    real_open = os.open

    def os_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        target = Path(os.path.abspath(os.fsdecode(path)))  # type: ignore[arg-type]
        if target.parent == folder and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", os_open)


def test_output_into_a_read_only_folder(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case("ok", lambda: {"in.wav": _wav(_music())})
    names = _make(tmp_path, case)
    locked = tmp_path / "locked"
    locked.mkdir()
    before = _tree(tmp_path)
    _deny_writes(monkeypatch, locked)
    try:
        code, out, err = _run(tmp_path, case, names, capfd, monkeypatch,
                              extra=("-o", "locked/out.wav"))
    finally:
        locked.chmod(0o755)
    assert code == 1, err
    _assert_one_error_line(err, "locked/out.wav", "cannot write: permission denied")
    _assert_clean(out + err)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize(("name", "content"), [("download.mp3", HTML), ("noise.mp3", _random())],
                         ids=["html", "random"])
def test_no_decoder_chatter_on_fd2_in_a_real_process(tmp_path: Path, name: str,
                                                     content: bytes) -> None:
    """What a user sees in a terminal: the whole stderr of a fresh process."""
    (tmp_path / name).write_bytes(content)
    src = str(Path(genrestore.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "genrestore.cli", "restore", "--preset", "none",
                           name], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines()[0] == (
        f"genrestore: error: {name}: not a readable audio file (no MPEG audio frame where MP3 "
        "data should start; is it really an MP3?)")
    _assert_one_error_line(done.stderr, name, "not a readable audio file")
    _assert_clean(done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_report_on_a_name_that_is_not_utf8(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case("latin-1 report", lambda: {os.fsdecode(b"caf\xe9.wav"): _wav(_music())},
                args=("{0}", "-o", "out", "--report"))
    names = _make(tmp_path, case)
    before = _tree(tmp_path)
    code, out, err = _run(tmp_path, case, names, capfd, monkeypatch)
    assert code == 0, err
    _assert_clean(out + err)
    after = _tree(tmp_path)
    assert {k: after.get(k) for k in before} == before
    page = (tmp_path / "out" / "report.html").read_text("utf-8")
    assert "caf%E9_restored.wav" in page or "caf%E9.wav" in page


def test_a_name_the_terminal_cannot_encode_does_not_stop_the_batch(tmp_path: Path) -> None:
    """Under a strict UTF-8 stdout (a usual desktop terminal) a Latin-1 byte in a name used
    to raise UnicodeEncodeError in the summary line and lose the rest of the batch."""
    sf.write(os.fsencode(tmp_path / os.fsdecode(b"caf\xe9.wav")), _music().T, 32000)
    sf.write(tmp_path / "song.wav", _music().T, 32000)
    src = str(Path(genrestore.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    for command in (["restore", "--preset", "none", "-o", "out", "."], ["analyze", "."]):
        done = subprocess.run([sys.executable, "-m", "genrestore.cli", *command], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "caf\\udce9.wav" in done.stdout
    assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == [
        b"caf\xe9.wav", b"genrestore-manifest.jsonl", b"song.wav"]
    # The manifest holds the name (JSON escapes its odd byte) and reads it back: a re-run
    # finds both files done.
    again = subprocess.run([sys.executable, "-m", "genrestore.cli", "restore", "--preset",
                            "none", "-o", "out", "."], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert "2 file(s) already done" in again.stderr


def test_damaged_mp3_frames_are_one_warning_not_decoder_chatter(tmp_path: Path) -> None:
    good = tmp_path / "good.mp3"
    sf.write(good, _music(32000, 1, 3.0).T, 32000, format="MP3")
    from genrestore.io import _mpeg_frame

    data = bytearray(good.read_bytes())
    pos = 0
    for _ in range(10):  # walk to the 10th frame and break its header
        frame = _mpeg_frame(bytes(data), pos)
        assert frame is not None
        pos += frame[0]
    data[pos : pos + 4] = b"\xec\x53\x1d\xfb"
    (tmp_path / "damaged.mp3").write_bytes(bytes(data))
    good.unlink()
    src = str(Path(genrestore.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    raw = subprocess.run([sys.executable, "-c", "import soundfile; soundfile.read('damaged.mp3')"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert "Illegal Audio-MPEG-Header" in raw.stderr, "the decoder must have something to say"
    done = subprocess.run([sys.executable, "-m", "genrestore.cli", "restore", "--preset", "none",
                           "damaged.mp3"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        line for line in done.stderr.splitlines() if line.startswith("genrestore: ")]
    assert "damaged frames" in done.stderr
    assert "MPEG" not in done.stderr.replace("MP3", "")
    assert (tmp_path / "damaged_restored.wav").exists()


def test_truncated_aiff_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "half.aiff"
    sf.write(path, _music(32000, 2, 3.0).T, 32000, format="AIFF", subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert main(["restore", str(path), "-o", str(tmp_path / "out.wav")]) == 1
    err = capfd.readouterr().err
    assert "half.aiff: truncated: the header declares 96000 frames" in err
    assert not (tmp_path / "out.wav").exists()
