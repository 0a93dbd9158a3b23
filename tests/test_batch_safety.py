"""No input is ever overwritten or altered, however the batch is built (review C1, R1, R5).

Every test records the sha256 of every file that exists before the run and checks the inputs
afterwards.  ``--preset none`` keeps them fast: the restoration itself does not matter here.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrestore import cli
from genrestore.cli import main, plan_batch
from genrestore.errors import ParameterError

RATE = 44100


def tone(path: Path, freq_hz: float, seconds: float = 0.5) -> Path:
    """A distinct sine per file, so a file replaced by another's output is detected."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(RATE * seconds)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), RATE,
             subtype="PCM_16")
    return path


def hashes(folder: Path) -> dict[Path, str]:
    """sha256 of every regular file under ``folder`` (symlinks are recorded as their target)."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def assert_unchanged(before: dict[Path, str], paths: list[Path] | None = None) -> None:
    for path, digest in before.items():
        if paths is None or path in paths:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} was altered"


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("genrestore: error:")]


def test_an_input_named_like_another_inputs_output_is_kept(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    song = tone(tmp_path / "song.wav", 440)
    other = tone(tmp_path / "song_restored.wav", 1000)  # unrelated input, different content
    before = hashes(tmp_path)
    code = main(["restore", str(song), str(other), "--preset", "none", "--overwrite"])
    err = capsys.readouterr().err
    assert code == 1
    assert_unchanged(before)
    (line,) = error_lines(err)
    assert "song.wav" in line
    assert "is an input of this batch" in line
    assert "1 restored, 1 failed" in err
    # song_restored.wav was restored from its own content (1 kHz), not from song.wav's output
    out, rate = sf.read(tmp_path / "song_restored_restored.wav")
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * rate / len(out)
    assert peak_hz == pytest.approx(1000, abs=5)


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--jobs", "2"],
                                   ["--jobs", "2", "--overwrite"]])
def test_folder_with_an_earlier_output_beside_its_input(tmp_path: Path, flags: list[str],
                                                        capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "songs"
    tone(folder / "x.wav", 440)
    tone(folder / "x_restored.wav", 1000)  # an earlier output, or an input that looks like one
    tone(folder / "y.wav", 660)
    tone(folder / "sub" / "z.wav", 880)
    before = hashes(tmp_path)
    code = main(["restore", str(folder), "--preset", "none", *flags])
    err = capsys.readouterr().err
    assert code == 1
    assert_unchanged(before)  # x_restored.wav too, even with --overwrite
    assert not (folder / "x_restored_restored.wav").exists()
    assert (folder / "y_restored.wav").exists()
    assert (folder / "sub" / "z_restored.wav").exists()
    (line,) = error_lines(err)
    assert "x.wav" in line
    assert "never replaced" in line
    assert "skipped 1 earlier output" in err
    # a second run skips the new outputs too and restores nothing again
    again = hashes(tmp_path)
    assert main(["restore", str(folder), "--preset", "none", *flags]) == 1
    assert_unchanged(again)
    assert not list(folder.rglob("*_restored_restored.*"))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_output_folder_inside_the_input_folder_run_twice(tmp_path: Path, jobs: str) -> None:
    folder = tmp_path / "in"
    tone(folder / "a.wav", 440)
    tone(folder / "b.wav", 660)
    before = hashes(tmp_path)
    out = folder / "restored"
    args = ["restore", str(folder), "-o", str(out), "--preset", "none", "--jobs", jobs, "-q"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "genrestore-manifest.jsonl"]
    assert main(args) == 0  # the manifest shows both done: nothing run, nothing re-ingested
    assert main([*args, "--force"]) == 0  # redone over genrestore's own outputs
    (out / "a.wav").unlink()
    (out / "genrestore-manifest.jsonl").unlink()
    assert main(args) == 1  # b.wav exists and no manifest says whose: refused before any work
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.wav", "b.wav",
                                                                             "genrestore-manifest.jsonl"]
    assert_unchanged(before)


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_output_that_is_a_link_to_the_input(tmp_path: Path, kind: str,
                                            capsys: pytest.CaptureFixture) -> None:
    src = tone(tmp_path / "a.wav", 440)
    link = tmp_path / "link.wav"
    if kind == "symlink":
        link.symlink_to(src)
    else:
        os.link(src, link)
    before = hashes(tmp_path)
    assert main(["restore", str(src), "-o", str(link), "--preset", "none", "--overwrite"]) == 1
    assert_unchanged(before)
    assert link.is_symlink() == (kind == "symlink")
    (line,) = error_lines(capsys.readouterr().err)
    assert "a.wav" in line
    assert "is an input" in line


def test_output_folder_holding_a_hard_link_to_another_input(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """Job b's destination is the same file as job a's source: b is refused, a runs."""
    a, b = tone(tmp_path / "in" / "a.wav", 440), tone(tmp_path / "in" / "b.wav", 660)
    (tmp_path / "out").mkdir()
    os.link(a, tmp_path / "out" / "b.wav")
    before = hashes(tmp_path)
    assert main(["restore", str(a), str(b), "-o", str(tmp_path / "out"), "--preset", "none",
                 "--overwrite", "--jobs", "2"]) == 1
    assert_unchanged(before, [a, b])
    (line,) = error_lines(capsys.readouterr().err)
    assert str(b) in line
    assert "is an input" in line
    assert sf.info(str(tmp_path / "out" / "a.wav")).subtype == "PCM_24"


def test_several_spellings_of_the_input_as_output(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tone(tmp_path / "sub" / "x.wav", 440)
    before = hashes(tmp_path)
    for spelling in ["sub/x.wav", "./sub/x.wav", "sub/../sub/x.wav", str(tmp_path / "sub/x.wav"),
                     "sub//x.wav"]:
        assert main(["restore", "sub/x.wav", "-o", spelling, "--preset", "none",
                     "--overwrite"]) == 1, spelling
    assert_unchanged(before)


def test_one_input_named_several_ways_is_restored_once(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    tone(tmp_path / "x.wav", 440)
    before = hashes(tmp_path)
    assert main(["restore", "x.wav", "./x.wav", str(tmp_path / "x.wav"), ".", "--preset",
                 "none"]) == 0
    assert_unchanged(before)
    assert error_lines(capsys.readouterr().err) == []  # one job, not three collisions
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "x.wav") == [
        "genrestore-manifest.jsonl", "x_restored.wav"]


def test_existing_output_is_refused_before_any_work(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tone(tmp_path / "a.wav", 440), tone(tmp_path / "b.wav", 660)
    tone(tmp_path / "a_restored.wav", 1000)
    before = hashes(tmp_path)
    started: list[str] = []
    real = cli.restore_file

    def recording(source: Path, *args: object, **kwargs: object) -> object:
        started.append(Path(source).name)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(cli, "restore_file", recording)
    assert main(["restore", str(a), str(b), "--preset", "none", "-q"]) == 1
    assert started == ["b.wav"]  # a.wav was never processed
    assert_unchanged(before)


def test_plan_batch_without_running_anything(tmp_path: Path) -> None:
    x = tone(tmp_path / "d" / "x.wav", 440)
    tone(tmp_path / "d" / "x_restored.wav", 1000)
    y = tone(tmp_path / "d" / "y.wav", 660)
    plan = plan_batch([str(tmp_path / "d")])
    assert [(s.name, d.name) for s, d, _ in plan.pairs] == [("y.wav", "y_restored.wav")]
    assert [s for s, _ in plan.refusals] == [x]
    assert [p.name for p in plan.skipped] == ["x_restored.wav"]
    assert set(plan.sources) == {x, y, tmp_path / "d" / "x_restored.wav"}
    assert plan.report_folder == tmp_path / "d"
    flac = plan_batch([str(y)], str(tmp_path / "o.flac"))
    assert flac.pairs == ((y, tmp_path / "o.flac", "flac"),)
    with pytest.raises(ParameterError, match="disagrees"):
        plan_batch([str(y)], str(tmp_path / "o.flac"), file_format="wav")


def _killed_on(name: str) -> Callable[..., object]:
    real = cli.restore_file

    def restore_or_die(source: Path, *args: object, **kwargs: object) -> object:
        if Path(source).name == name:
            os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
        return real(source, *args, **kwargs)

    return restore_or_die


def test_a_killed_worker_fails_only_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "in"
    for i, name in enumerate(["a.wav", "b.wav", "killer.wav", "c.wav", "d.wav"]):
        tone(folder / name, 300 + 100 * i)
    before = hashes(tmp_path)
    monkeypatch.setattr(cli, "restore_file", _killed_on("killer.wav"))  # inherited by fork
    code = main(["restore", str(folder), "-o", str(tmp_path / "out"), "--preset", "none",
                 "--jobs", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.wav", "c.wav",
                                                                     "d.wav", "genrestore-manifest.jsonl"]
    (line,) = error_lines(err)
    assert "killer.wav" in line
    assert "worker died" in line
    assert "4 restored, 1 failed" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "out").glob(".*.part"))
    assert_unchanged(before)


def test_a_file_written_when_another_worker_died_is_not_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """a.wav is written, but its worker has not answered yet when killer.wav's worker dies: the
    pool fails both futures; a.wav is re-run (and may replace its own output), killer.wav fails."""
    folder, out = tmp_path / "in", tmp_path / "out"
    tone(folder / "a.wav", 440)
    tone(folder / "killer.wav", 660)
    real = cli.restore_file

    def slow_or_die(source: Path, *args: object, **kwargs: object) -> object:
        if Path(source).name == "killer.wav":
            deadline = time.monotonic() + 20
            while not (out / "a.wav").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(source, *args, **kwargs)
        time.sleep(2)  # written, not yet answered
        return result

    monkeypatch.setattr(cli, "restore_file", slow_or_die)
    assert main(["restore", str(folder), "-o", str(out), "--preset", "none", "--jobs", "2"]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert "killer.wav" in line
    assert "worker died" in line
    # No temporary file left either; the manifest lists a.wav (and the file that killed its
    # worker as failed).
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "genrestore-manifest.jsonl"]


def test_a_killed_worker_still_gets_its_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("matplotlib")
    folder = tmp_path / "in"
    for i, name in enumerate(["a.wav", "killer.wav", "b.wav"]):
        tone(folder / name, 300 + 100 * i)
    monkeypatch.setattr(cli, "restore_file", _killed_on("killer.wav"))
    assert main(["restore", str(folder), "-o", str(tmp_path / "out"), "--preset", "none",
                 "--jobs", "2", "--report"]) == 1
    page = (tmp_path / "out" / "report.html").read_text()
    assert "2 restored, 1 failed" in page
    assert "worker died" in page


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_exits_130_with_the_summary_and_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture, jobs: str) -> None:
    folder = tmp_path / "in"
    for i, name in enumerate(["a.wav", "b.wav", "c.wav"]):
        tone(folder / name, 300 + 100 * i)
    before = hashes(tmp_path)

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "restore_file", interrupted)
    assert main(["restore", str(folder), "--preset", "none", "--jobs", jobs]) == 130
    summary, last = capsys.readouterr().err.strip().splitlines()
    assert summary == "0 restored, 0 failed, 3 not done (interrupted)"
    assert "interrupted" in last
    assert_unchanged(before)
    assert sorted(p.name for p in folder.iterdir()) == ["a.wav", "b.wav", "c.wav"]  # no .part


def test_file_named_like_an_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    tone(tmp_path / "-x.wav", 440)
    before = hashes(tmp_path)
    assert main(["restore", "-x.wav", "--preset", "none"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "./-x.wav" in err
    assert "--" in err
    assert "usage:" not in err
    assert main(["restore", "--preset", "none", "-q", "--", "-x.wav"]) == 0
    assert (tmp_path / "-x_restored.wav").exists()
    assert main(["restore", "./-x.wav", "--preset", "none", "-q", "-o", "y.wav"]) == 0
    assert_unchanged(before)


def test_restore_file_never_writes_a_protected_path(tmp_path: Path) -> None:
    from genrestore.errors import AudioFileError
    from genrestore.pipeline import restore_file

    a, b = tone(tmp_path / "a.wav", 440), tone(tmp_path / "b.wav", 660)
    before = hashes(tmp_path)
    with pytest.raises(AudioFileError, match="refusing to overwrite an input"):
        restore_file(a, tmp_path / "." / "b.wav", preset="none", overwrite=True, protect=[b])
    assert_unchanged(before)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_every_job_protects_every_source_of_the_batch(tmp_path: Path, jobs: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "in"
    names = ["a.wav", "b.wav", "c.wav"]
    for i, name in enumerate(names):
        tone(folder / name, 300 + 100 * i)
    real = cli.restore_file

    def checking(source: Path, *args: object, protect: tuple[Path, ...] = (),
                 **kwargs: object) -> object:
        if sorted(Path(p).name for p in protect) != names:  # runs in the worker: fail the file
            raise ParameterError(f"{source}: protect is {protect}")
        return real(source, *args, protect=protect, **kwargs)

    monkeypatch.setattr(cli, "restore_file", checking)
    assert main(["restore", str(folder), "-o", str(tmp_path / "out"), "--preset", "none",
                 "--jobs", jobs, "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [*names, "genrestore-manifest.jsonl"]


def test_a_report_never_replaces_an_audio_file(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("matplotlib")
    a, b = tone(tmp_path / "a.wav", 440), tone(tmp_path / "b.wav", 660)
    before = hashes(tmp_path)
    for report in (a, tmp_path / "." / "b.wav", tmp_path / "b_restored.wav"):
        assert main(["restore", str(a), str(b), "--preset", "none", "--overwrite",
                     "--report", str(report)]) == 2
        assert "would replace the audio file" in capsys.readouterr().err
    assert main(["report", str(a), str(b), "-o", str(b), "--overwrite"]) == 2
    assert_unchanged(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]


def test_a_killed_report_worker_fails_only_its_clip(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    import importlib

    report = importlib.import_module("genrestore.report")
    pairs = []
    for i, name in enumerate(["a", "killer", "b", "c"]):
        tone(tmp_path / f"{name}.wav", 300 + 100 * i)
        pairs += [str(tmp_path / f"{name}.wav"), str(tmp_path / f"{name}.wav")]
    real = report.read_audio

    def read_or_die(path: Path) -> object:
        if Path(path).name == "killer.wav":
            os.kill(os.getpid(), signal.SIGKILL)  # in the worker: the patch is inherited by fork
        return real(path)

    monkeypatch.setattr(report, "read_audio", read_or_die)
    code = main(["report", *pairs, "-o", str(tmp_path / "r.html"), "--jobs", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    page = (tmp_path / "r.html").read_text()
    assert "3 restored, 1 failed" in page
    assert "worker died while drawing it" in page


def test_one_file_named_twice_is_one_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tone(tmp_path / "a.wav", 440)
    before = hashes(tmp_path)
    spellings = [str(tmp_path / "a.wav"), str(tmp_path / "." / "a.wav")]
    assert main(["restore", *spellings, "-o", str(tmp_path / "out"), "--preset", "none"]) == 0
    assert "collide" not in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "genrestore-manifest.jsonl"]
    assert_unchanged(before)
