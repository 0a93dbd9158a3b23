"""Batches that resume (issue 12, part 2): the manifest, --force, --dry-run, and stopping a
running batch with SIGINT or SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrestore import __version__, cli
from genrestore.cli import main
from genrestore.manifest import MANIFEST_NAME, Manifest, file_digest

RATE = 32000


def clip(path: Path, freq_hz: float, seconds: float = 0.6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(RATE * seconds)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), RATE,
             subtype="PCM_16")
    return path


def lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines()]


def stamps(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.wav")}


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "in"
    for i, freq in enumerate((220.0, 330.0, 440.0)):
        clip(src / f"c{i}.wav", freq)
    return src, tmp_path / "out"


def restore(src: Path, out: Path, *flags: str) -> int:
    return main(["restore", str(src), "-o", f"{out}/", "--preset", "none", "--jobs", "1",
                 *flags])


def test_a_batch_records_every_file(batch: tuple[Path, Path]) -> None:
    src, out = batch
    assert restore(src, out) == 0
    records = lines(out)
    assert len(records) == 3
    for record in records:
        assert record["status"] == "done"
        assert record["version"] == __version__
        assert record["input_sha256"] == file_digest(record["input"])
        assert record["output_sha256"] == hashlib.sha256(Path(record["output"]).read_bytes()
                                                         ).hexdigest()
        assert Path(record["output"]).parent == out
        assert record["lufs"] is not None
        assert record["error"] is None


def test_a_rerun_skips_what_is_done_and_redoes_what_changed(
        batch: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    src, out = batch
    assert restore(src, out) == 0
    before = stamps(out)
    capsys.readouterr()
    assert restore(src, out) == 0  # no --overwrite needed: nothing is run
    assert stamps(out) == before
    assert "3 file(s) already done" in capsys.readouterr().err
    # One input changes: that file alone is redone, and its own earlier output replaced.
    clip(src / "c1.wav", 550.0)
    assert restore(src, out) == 0
    after = stamps(out)
    assert after[out / "c1.wav"] != before[out / "c1.wav"]
    assert {p: t for p, t in after.items() if p.name != "c1.wav"} == {
        p: t for p, t in before.items() if p.name != "c1.wav"}
    assert lines(out)[-1]["input_sha256"] == file_digest(src / "c1.wav")
    # Other settings: everything is redone.
    assert restore(src, out, "--bits", "16") == 0
    assert all(sf.info(str(p)).subtype == "PCM_16" for p in out.glob("*.wav"))
    assert len(lines(out)) == 3 + 1 + 3


def test_force_redoes_and_dry_run_writes_nothing(batch: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture) -> None:
    src, out = batch
    # A dry run before anything: every file listed, nothing written, not even the manifest.
    assert restore(src, out, "--dry-run") == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert sorted(line.split()[0] for line in listed) == ["restore"] * 3
    assert not out.exists()
    assert restore(src, out) == 0
    clip(src / "c2.wav", 660.0)
    capsys.readouterr()
    assert restore(src, out, "--dry-run") == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert sum(line.startswith("done") for line in listed) == 2
    assert [line for line in listed if line.startswith("restore")] == [
        f"restore {src / 'c2.wav'} -> {out / 'c2.wav'} (input changed)"]
    before = stamps(out)
    assert restore(src, out, "--force") == 0
    assert all(stamps(out)[p] != t for p, t in before.items())


def test_an_output_changed_by_hand_is_not_replaced_without_overwrite(
        batch: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    src, out = batch
    assert restore(src, out) == 0
    edited = out / "c0.wav"
    clip(edited, 1000.0)  # the user's own edit of an output
    mine = file_digest(edited)
    capsys.readouterr()
    assert restore(src, out) == 1  # redone for the edit, but the edit is not genrestore's
    assert "c0.wav exists (use --overwrite to replace it)" in capsys.readouterr().err
    assert file_digest(edited) == mine
    assert restore(src, out, "--overwrite") == 0
    assert file_digest(edited) != mine


def test_failures_are_recorded_and_retried(batch: tuple[Path, Path]) -> None:
    src, out = batch
    bad = src / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    assert restore(src, out) == 1
    failed = [r for r in lines(out) if r["status"] == "failed"]
    assert len(failed) == 1
    assert "bad.wav" in failed[0]["error"]
    clip(bad, 880.0)  # repaired
    assert restore(src, out) == 0
    assert lines(out)[-1]["status"] == "done"
    assert (out / "bad.wav").is_file()


def test_a_line_cut_short_by_a_crash_is_ignored(batch: tuple[Path, Path],
                                                caplog: pytest.LogCaptureFixture) -> None:
    src, out = batch
    assert restore(src, out) == 0
    text = (out / MANIFEST_NAME).read_text().splitlines()
    (out / MANIFEST_NAME).write_text("\n".join(text[:2]) + "\n" + text[2][:30])
    manifest = Manifest(out)
    assert len(manifest.records) == 2
    assert "line 3 ignored" in caplog.text
    # The file whose line was lost is not known to be genrestore's: it is not replaced.
    assert restore(src, out) == 1
    assert restore(src, out, "--overwrite") == 0
    assert len(Manifest(out).records) == 3


def test_one_file_keeps_no_manifest(tmp_path: Path) -> None:
    song = clip(tmp_path / "song.wav", 440.0)
    assert main(["restore", str(song), "-o", str(tmp_path / "out.wav"), "--preset", "none"]) == 0
    assert main(["restore", str(song), "--preset", "none"]) == 0
    assert not list(tmp_path.rglob(MANIFEST_NAME))


@pytest.mark.parametrize(("how", "code"), [("group", 130), ("sigterm", 143)])
def test_stopping_a_running_batch_leaves_no_part_and_a_true_manifest(
        tmp_path: Path, how: str, code: int) -> None:
    """Ctrl-C reaches the whole process group (workers included); SIGTERM from a job manager
    reaches the main process.  Either way: the exit status, the summary, no temporary file,
    and every output the manifest lists is whole and the one recorded."""
    src = tmp_path / "in"
    for i in range(12):
        clip(src / f"c{i:02d}.wav", 200.0 + 50 * i, seconds=4.0)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "genrestore", "restore", str(src), "-o", f"{out}/", "--jobs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    manifest = out / MANIFEST_NAME
    while time.monotonic() < deadline and not (manifest.is_file() and manifest.read_text()):
        time.sleep(0.05)
    assert manifest.is_file(), "no file finished in 60 s"
    if how == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted" in err
    assert "restored" in err
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    records = lines(out)
    assert 1 <= len(records) < 12
    for record in records:
        assert record["status"] == "done"
        assert file_digest(record["output"]) == record["output_sha256"]
        assert sf.info(record["output"]).frames > 0
    written = sorted(p.name for p in out.glob("*.wav"))
    assert written == sorted(Path(r["output"]).name for r in records)
    # The next run finishes the batch without --overwrite.
    assert main(["restore", str(src), "-o", f"{out}/", "--jobs", "2", "-q"]) == 0
    assert len(list(out.glob("*.wav"))) == 12


def test_the_progress_bar_shows_files_done_and_clips_per_minute(
        batch: tuple[Path, Path], capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = batch
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar is drawn
    assert restore(src, out) == 0
    err = capsys.readouterr().err
    # tqdm's last frame: files done, its rate and time left, and the clips per minute.
    assert re.search(r"3/3 \[[^]]*, [0-9]+ clips/min\]", err), err


def test_the_manifest_holds_from_another_folder_and_keeps_collisions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    clip(tmp_path / "in" / "a.wav", 300.0)
    sf.write(tmp_path / "in" / "a.flac", 0.2 * np.ones(RATE // 2, np.float32), RATE)
    monkeypatch.chdir(tmp_path)
    args = ["restore", "in", "-o", "out/", "--preset", "none", "--jobs", "1"]
    assert main(args) == 1  # a.wav and a.flac both map to out/a.wav: one is refused
    first = file_digest(tmp_path / "out" / "a.wav")
    # Run again from elsewhere, with --overwrite: the done file is skipped, and the other
    # still collides with it rather than replacing its output.
    monkeypatch.chdir(tmp_path / "in")
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "in"), "-o", f"{tmp_path / 'out'}/", "--preset",
                 "none", "--jobs", "1", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "1 file(s) already done" in err
    assert "collide" in err
    assert file_digest(tmp_path / "out" / "a.wav") == first


def test_a_folder_restored_beside_itself_is_redone_from_its_manifest(
        batch: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    """Beside the inputs, STEM_restored.wav is kept as a possible input, unless the manifest
    shows it is genrestore's own output of STEM, unchanged: then --force and changed settings
    replace it; an output edited by hand is still never replaced."""
    src, _ = batch
    beside = ["restore", str(src), "--preset", "none", "--jobs", "1"]
    assert main(beside) == 0
    assert (src / MANIFEST_NAME).is_file()
    outputs = sorted(src.glob("*_restored.wav"))
    assert len(outputs) == 3
    before = stamps(src)
    capsys.readouterr()
    assert main(beside) == 0  # done: nothing redone
    assert "3 file(s) already done" in capsys.readouterr().err
    assert stamps(src) == before
    assert main([*beside, "--force"]) == 0
    after = stamps(src)
    assert all(after[p] != before[p] for p in outputs)
    assert all(after[p] == before[p] for p in src.glob("c?.wav"))  # inputs untouched
    digests = {p: file_digest(p) for p in outputs}
    assert main([*beside, "--bits", "16"]) == 0  # settings changed: redone at 16 bits
    assert all(sf.info(p).subtype == "PCM_16" for p in outputs)
    assert all(file_digest(p) != digests[p] for p in outputs)
    edited = src / "c1_restored.wav"
    clip(edited, 1000.0)  # the user's own edit of an output
    mine = file_digest(edited)
    capsys.readouterr()
    assert main([*beside, "--force"]) == 1
    assert "never replaced there" in capsys.readouterr().err
    assert file_digest(edited) == mine
    assert len(list(src.glob("*_restored_restored.wav"))) == 0


def test_an_input_changed_while_restored_is_redone_next_time(
        batch: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest holds the input's hash from before its restore: an input edited while it
    was being restored is not taken as done with the edit."""
    src, out = batch
    real = cli.restore_file

    def edited_meanwhile(source: Path, *args: object, **kwargs: object) -> object:
        result = real(source, *args, **kwargs)
        if Path(source).name == "c1.wav":
            clip(Path(source), 990.0)  # the user saves a new take while it is restored
        return result

    monkeypatch.setattr(cli, "restore_file", edited_meanwhile)
    assert restore(src, out) == 0
    monkeypatch.setattr(cli, "restore_file", real)
    manifest = Manifest(out)
    settings = lines(out)[0]["settings"]
    decision = manifest.decide(src / "c1.wav", out / "c1.wav", settings)
    assert (decision.action, decision.reason) == ("redo", "input changed")
    assert manifest.decide(src / "c0.wav", out / "c0.wav", settings).action == "skip"


def test_an_output_written_as_the_stop_came_is_recorded(
        batch: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """SIGINT lands after c0's output is in place but before its outcome is taken: the output
    is complete, so it is recorded, and the next run does not redo it."""
    src, out = batch
    real = cli.restore_file

    def stopped_after_the_write(source: Path, *args: object, **kwargs: object) -> object:
        result = real(source, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # the batch's handler raises here
        return result

    monkeypatch.setattr(cli, "restore_file", stopped_after_the_write)
    assert restore(src, out) == 130
    assert "was written as the batch stopped; recorded" in capsys.readouterr().err
    monkeypatch.setattr(cli, "restore_file", real)
    (record,) = lines(out)
    assert (Path(record["output"]).name, record["status"]) == ("c0.wav", "done")
    assert record["output_sha256"] == file_digest(out / "c0.wav")
    before = (out / "c0.wav").stat().st_mtime_ns
    assert restore(src, out) == 0
    assert "1 file(s) already done" in capsys.readouterr().err
    assert (out / "c0.wav").stat().st_mtime_ns == before


def test_a_second_signal_while_stopping_changes_nothing() -> None:
    stopper = cli._Stopper()
    with pytest.raises(KeyboardInterrupt) as stop:
        stopper(signal.SIGTERM, None)
    assert stop.value.signum == signal.SIGTERM
    stopper(signal.SIGINT, None)  # ignored: the batch is already winding down
    with stopper.shielded():
        stopper(signal.SIGINT, None)
    assert stopper.pending is None
