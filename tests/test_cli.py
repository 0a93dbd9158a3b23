from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import generator_like, sine, song
from genrestore.cli import main


@pytest.fixture
def clip_file(tmp_path: Path) -> Path:
    clip, rate = generator_like(song(44100, 3.0), 44100, seed=0)
    path = tmp_path / "in" / "clip.wav"
    path.parent.mkdir()
    sf.write(path, clip.T, rate, subtype="FLOAT")
    return path


def test_restore_one_file_next_to_input(clip_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["restore", str(clip_file)]) == 0
    out = clip_file.with_name("clip_restored.wav")
    assert sf.info(str(out)).samplerate == 44100
    line = capsys.readouterr().out
    assert "LUFS" in line
    assert "dBTP" in line
    assert re.search(r"cutoff (9\.[5-9]|10\.[0-4]) kHz", line)  # musicgen_like low-passes at 10k


def test_output_file_format_and_bits(clip_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "o.flac"
    assert main(["restore", str(clip_file), "-o", str(target), "--bits", "16", "--rate",
                 "48000"]) == 0
    info = sf.info(str(target))
    assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_16", 48000)


def test_batch_survives_bad_files(tmp_path: Path, clip_file: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    folder = clip_file.parent
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("not audio\n" * 50)
    sf.write(folder / "nan.wav", np.full((4410, 1), np.nan, np.float32), 44100, subtype="FLOAT")
    sf.write(folder / "eight.wav", np.zeros((44100, 8), np.float32), 44100)
    sf.write(folder / "silence.wav", np.zeros((44100, 1), np.float32), 44100)
    sf.write(folder / "hi.wav", sine(1000, 192000, 1.0).T, 192000)
    sf.write(folder / "lo.wav", sine(1000, 8000, 1.0).T, 8000)
    sf.write(folder / "one.wav", np.zeros((1, 1), np.float32), 44100)
    outdir = tmp_path / "out"
    code = main(["restore", str(folder), "-o", str(outdir), "--preset", "none"])
    err = capsys.readouterr().err
    assert code == 1
    assert "4 restored, 5 failed" in err
    for name, problem in [("empty.wav", "empty file"), ("text.wav", "not a readable"),
                          ("nan.wav", "NaN"), ("eight.wav", "8 channels"),
                          ("one.wav", "too short")]:
        assert any(name in line and problem in line for line in err.splitlines()), name
    assert sorted(p.name for p in outdir.iterdir()) == ["clip.wav", "hi.wav", "lo.wav",
                                                         "silence.wav"]
    assert "Traceback" not in err


def test_missing_file_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["restore", str(tmp_path / "ghost.wav")]) == 1
    assert "ghost.wav: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--preset", "loudest"], ["--set", "denoise.strength"],
                                  ["--set", "denoise.bogus=1"]])
def test_usage_errors_exit_2(clip_file: Path, args: list[str],
                             capsys: pytest.CaptureFixture) -> None:
    assert main(["restore", str(clip_file), *args]) == 2
    assert capsys.readouterr().err.startswith("genrestore: error:")
    assert not clip_file.with_name("clip_restored.wav").exists()


def test_outputs_are_not_replaced_without_overwrite(clip_file: Path) -> None:
    assert main(["restore", str(clip_file), "-q"]) == 0
    out = clip_file.with_name("clip_restored.wav")
    first = out.read_bytes()
    assert main(["restore", str(clip_file), "-q"]) == 1
    assert out.read_bytes() == first
    assert main(["restore", str(clip_file), "-q", "--overwrite",
                 "--set", "loudness.target_lufs=-20"]) == 0
    assert out.read_bytes() != first


def test_input_is_never_overwritten(tmp_path: Path) -> None:
    src = tmp_path / "clip.wav"
    sf.write(src, song(44100, 2.0).T, 44100, subtype="PCM_24")
    before = src.read_bytes()
    assert main(["restore", str(src), "-o", str(src), "--overwrite", "-q"]) == 1
    assert src.read_bytes() == before


def test_parallel_jobs(tmp_path: Path, clip_file: Path) -> None:
    for i in range(3):
        (clip_file.parent / f"copy{i}.wav").write_bytes(clip_file.read_bytes())
    assert main(["restore", str(clip_file.parent), "-o", str(tmp_path / "o"), "--jobs", "2",
                 "-q"]) == 0
    assert len(list((tmp_path / "o").glob("*.wav"))) == 4


def test_presets_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "auto" in out
    assert "full" in out
    assert "gentle" in out
    assert "none" in out


@pytest.mark.slow
def test_console_script_demo(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("genrestore")
    done = subprocess.run([str(exe), "demo", "--out", str(tmp_path), "--seconds", "4"],
                          capture_output=True, text=True, check=True)
    assert "restored:" in done.stdout
    restored = tmp_path / "example_restored.wav"
    assert sf.info(str(restored)).subtype == "PCM_24"
    clip = sf.info(str(tmp_path / "example_musicgen_like.wav"))
    assert (clip.samplerate, clip.channels) == (32000, 1)


@pytest.mark.slow
def test_bench_speed_runs(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--speed", "--seconds", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "real-time factor" in out
    assert "pyloudnorm" in out
