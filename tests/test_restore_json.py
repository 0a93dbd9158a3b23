"""``restore --json`` (issue 13, part 4): one JSON object per file on stdout, the summary
line's fields with units in their names, null where there is no figure; human lines on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import generator_like, song
from genrestore.analysis import integrated_lufs, true_peak_dbtp
from genrestore.cli import main

FIELDS = {"source", "destination", "status", "input_lufs", "output_lufs",
          "input_true_peak_dbtp", "output_true_peak_dbtp", "cutoff_hz", "full_band",
          "stages_acted", "seconds", "error"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    clip, rate = generator_like(song(44100, 3.0), 44100, seed=0)  # 10 kHz low-pass, 32 kHz
    sf.write(src / "gen.wav", clip.T, rate, subtype="FLOAT")
    sf.write(src / "silent.wav", np.zeros(44100, np.float32), 44100)
    (src / "bad.wav").write_bytes(b"RIFF but not audio")
    return src


def objects(text: str) -> dict[str, dict]:
    records = [json.loads(line) for line in text.splitlines()]  # every stdout line is JSON
    return {Path(r["source"]).name: r for r in records}


def test_one_object_per_file_with_the_summary_fields(folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["restore", str(folder), "-o", f"{out}/", "--json", "--jobs", "1"]) == 1
    captured = capsys.readouterr()
    records = objects(captured.out)
    assert set(records) == {"gen.wav", "silent.wav", "bad.wav"}
    assert all(set(r) == FIELDS for r in records.values())

    gen = records["gen.wav"]
    assert gen["status"] == "restored"
    assert gen["error"] is None
    assert gen["destination"] == str(out / "gen.wav")
    audio, rate = sf.read(out / "gen.wav", always_2d=True)
    # The figures are the output file's own, to the summary's precision.
    assert gen["output_lufs"] == pytest.approx(integrated_lufs(audio.T, rate), abs=0.05)
    assert gen["output_true_peak_dbtp"] == pytest.approx(
        true_peak_dbtp(audio.T.astype(np.float32)), abs=0.05)
    assert gen["output_true_peak_dbtp"] <= -1.0 + 0.01
    assert gen["input_true_peak_dbtp"] > 0.0  # the demo chain's float overs (+2 dBFS peak)
    assert 9000.0 < gen["cutoff_hz"] < 10500.0
    assert gen["full_band"] is False
    assert "bwe" in gen["stages_acted"]
    assert gen["stages_acted"]["loudness"].startswith("loudness ")
    assert gen["seconds"] > 0

    silent = records["silent.wav"]  # -inf LUFS and no cutoff: null, never NaN or Infinity
    assert silent["status"] == "restored"
    assert silent["input_lufs"] is None
    assert silent["output_lufs"] is None
    assert silent["cutoff_hz"] is None

    bad = records["bad.wav"]
    assert bad["status"] == "failed"
    assert "bad.wav" in bad["error"]
    assert bad["output_lufs"] is None
    # The human lines are on stderr: the summary line of each file and the batch's total.
    assert "gen.wav ->" in captured.err
    assert "2 restored, 1 failed" in captured.err


def test_refused_and_done_files_get_their_object_too(folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    (folder / "bad.wav").unlink()
    out = tmp_path / "out"
    args = ["restore", str(folder), "-o", f"{out}/", "--json", "--jobs", "1", "-q"]
    assert main(args) == 0
    first = objects(capsys.readouterr().out)
    # A re-run: the manifest shows both done; -q keeps the JSON (it is the asked-for output).
    assert main(args) == 0
    captured = capsys.readouterr()
    done = objects(captured.out)
    assert {r["status"] for r in done.values()} == {"done"}
    assert done["gen.wav"]["output_lufs"] == pytest.approx(first["gen.wav"]["output_lufs"],
                                                           abs=0.01)
    assert captured.err == ""
    # An existing output that is not genrestore's is refused: a failed object, named.
    other = tmp_path / "other"
    other.mkdir()
    (other / "gen.wav").write_bytes((out / "gen.wav").read_bytes() + b"\0")
    assert main(["restore", str(folder / "gen.wav"), "-o", str(other / "gen.wav"),
                 "--json"]) == 1
    refused = objects(capsys.readouterr().out)["gen.wav"]
    assert refused["status"] == "failed"
    assert "exists" in refused["error"]


def test_objects_come_through_a_pipe_from_parallel_workers(folder: Path, tmp_path: Path) -> None:
    (folder / "bad.wav").unlink()
    (folder / "silent.wav").unlink()
    for i in range(2):
        sf.write(folder / f"s{i}.wav", song(44100, 2.0).T * 0.3, 44100)
    done = subprocess.run([sys.executable, "-m", "genrestore", "restore", str(folder), "-o",
                           f"{tmp_path / 'out'}/", "--json", "--jobs", "2"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert len(objects(done.stdout)) == 3
    assert "3 restored, 0 failed" in done.stderr
