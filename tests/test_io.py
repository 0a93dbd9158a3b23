from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import sine, white
from genrestore.errors import AudioFileError, ParameterError
from genrestore.io import find_audio_files, quantize, read_audio, validate_audio, write_audio


def test_float_overs_survive_read(tmp_path: Path) -> None:
    x = sine(440, 32000, 1.0, amplitude=1.8)  # +5.1 dBFS, like real MusicGen float files
    sf.write(tmp_path / "hot.wav", x.T, 32000, subtype="FLOAT")
    audio, rate = read_audio(tmp_path / "hot.wav")
    assert rate == 32000
    assert audio.shape == (1, 32000)
    assert audio.dtype == np.float32
    assert np.max(np.abs(audio)) == pytest.approx(1.8, abs=1e-4)


def test_24bit_round_trip_within_one_lsb(tmp_path: Path) -> None:
    x = white(44100, 0.5, -20, channels=2)
    write_audio(tmp_path / "o.wav", x, 44100, bits="24")
    y, rate = read_audio(tmp_path / "o.wav")
    assert rate == 44100
    assert y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 2.0**-23 * 1.01
    assert sf.info(str(tmp_path / "o.wav")).subtype == "PCM_24"


@pytest.mark.parametrize(("bits", "fmt", "subtype"),
                         [("16", "flac", "PCM_16"), ("24", "flac", "PCM_24"),
                          ("32f", "wav", "FLOAT"), ("16", "wav", "PCM_16")])
def test_formats(tmp_path: Path, bits: str, fmt: str, subtype: str) -> None:
    path = write_audio(tmp_path / f"o.{fmt}", sine(1000, 48000, 0.2), 48000, bits=bits)
    info = sf.info(str(path))
    assert (info.samplerate, info.subtype, info.format) == (48000, subtype, fmt.upper())


def test_quantize_clips_and_counts() -> None:
    ints, clipped = quantize(np.array([[0.5, 1.5, -2.0]]), 16)
    assert clipped == 2
    assert ints.tolist() == [[16384, 32767, -32768]]


def test_existing_output_needs_overwrite_and_inputs_are_never_replaced(tmp_path: Path) -> None:
    x = sine(440, 44100, 0.2)
    out = write_audio(tmp_path / "o.wav", x, 44100)
    with pytest.raises(AudioFileError, match="exists"):
        write_audio(out, x, 44100)
    write_audio(out, 0.5 * x, 44100, overwrite=True)
    before = out.read_bytes()
    with pytest.raises(AudioFileError, match="input"):
        write_audio(out, x, 44100, overwrite=True, protect=(out,))
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".*.part")), "no temporary file may be left behind"
    assert out.stat().st_mode & 0o044, "outputs are readable by others, like any new file"


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="FLAC"):
        write_audio(tmp_path / "o.flac", sine(440, 44100, 0.2), 44100, bits="32f")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.wav", b"", "empty file"),
        ("text.wav", b"this is not audio at all, just text\n" * 20, "not a readable audio file"),
        ("truncated.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a readable audio file"),
    ],
)
def test_bad_files_get_one_line_errors_naming_the_file(tmp_path: Path, name: str,
                                                       content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioFileError, match=message) as info:
        read_audio(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert "\n" not in text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="no such file"):
        read_audio(tmp_path / "nope.wav")


@pytest.mark.parametrize(
    ("audio", "rate", "message"),
    [
        (np.zeros((8, 44100), np.float32), 44100, "8 channels"),
        (np.zeros((1, 1), np.float32), 44100, "too short"),
        (np.full((1, 44100), np.nan, np.float32), 44100, "NaN"),
        (np.zeros((1, 44100), np.float32), 4000, "sample rate"),
    ],
)
def test_unusable_audio_in_files(tmp_path: Path, audio: np.ndarray, rate: int,
                                 message: str) -> None:
    path = tmp_path / "bad.wav"
    sf.write(path, audio.T, rate, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=message):
        read_audio(path)


def test_validate_rejects_integer_arrays() -> None:
    with pytest.raises(ParameterError, match="floating point"):
        validate_audio(np.zeros((1, 44100), np.int16), 44100)


@pytest.mark.parametrize("rate", [8000, 192000])
def test_extreme_rates_read(tmp_path: Path, rate: int) -> None:
    sf.write(tmp_path / "r.wav", sine(1000, rate, 0.5).T, rate)
    audio, got = read_audio(tmp_path / "r.wav")
    assert got == rate
    assert audio.shape == (1, rate // 2)


def test_find_audio_files_walks_folders(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/one.wav", "a/b/two.flac", "a/notes.txt", "a/.hidden.wav"):
        (tmp_path / p).write_bytes(b"x")
    found = find_audio_files([tmp_path / "a"])
    assert [str(rel) for _, rel in found] == ["b/two.flac", "one.wav"]
