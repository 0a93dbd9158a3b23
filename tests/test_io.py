from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import genrestore.io as gio
from conftest import sine, white
from genrestore.errors import FILE_ERRORS, AudioFileError, ParameterError
from genrestore.io import (
    find_audio_files,
    quantize,
    read_audio,
    remove_dead_writers_parts,
    validate_audio,
    write_atomic_text,
    write_audio,
)


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


def test_keep_identical_accepts_only_the_same_bytes(tmp_path: Path) -> None:
    """A write run again after its worker was lost finds its own output: exactly the bytes it
    writes, so no error; any other existing file is still refused and left as it was."""
    x = sine(440, 44100, 0.2)
    out = write_audio(tmp_path / "o.wav", x, 44100)
    assert write_audio(out, x, 44100, keep_identical=True) == out
    mine = write_audio(tmp_path / "mine.wav", 0.5 * x, 44100)
    before = mine.read_bytes()
    with pytest.raises(AudioFileError, match="exists"):
        write_audio(mine, x, 44100, keep_identical=True)
    assert mine.read_bytes() == before
    with pytest.raises(AudioFileError, match="exists"):  # the same audio as 16-bit: other bytes
        write_audio(out, x, 44100, bits="16", keep_identical=True)
    assert not list(tmp_path.glob(".*.part")), "no temporary file may be left behind"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002], ids=oct)
def test_outputs_get_the_permissions_of_any_new_file(tmp_path: Path, umask: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    old = os.umask(umask)
    try:
        def no_umask(_: int) -> int:
            raise AssertionError("the writer must not change the process umask (not thread-safe)")

        monkeypatch.setattr(os, "umask", no_umask)
        audio = write_audio(tmp_path / "o.wav", sine(440, 44100, 0.2), 44100)
        text = write_atomic_text(tmp_path / "r.html", "<p>report</p>")
    finally:
        monkeypatch.undo()
        os.umask(old)
    for path in (audio, text):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("error", [ValueError("bad frames"), TypeError("bad argument"),
                                   KeyboardInterrupt(), RuntimeError("a bug"), MemoryError()],
                         ids=lambda e: type(e).__name__)
def test_temporary_file_removed_when_the_writer_raises_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def failing_write(file: object, *args: object, **kwargs: object) -> None:
        with open(file, "wb") as f:  # type: ignore[call-overload]
            f.write(b"RIFF partial")
        raise error

    monkeypatch.setattr(gio.sf, "SoundFile", failing_write)
    with pytest.raises(type(error)):  # not an AudioFileError: a bug or Ctrl-C must surface
        write_audio(tmp_path / "o.wav", sine(440, 44100, 0.2), 44100)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("error", "message"), [
    (OSError(errno.ENOSPC, "No space left on device"), "cannot write: no space left on the disk"),
    (PermissionError(errno.EACCES, "Permission denied"), "cannot write: permission denied"),
    (OSError(errno.EIO, "Input/output error"), "cannot write: input/output error"),
], ids=["ENOSPC", "EACCES", "EIO"])
def test_disk_errors_while_writing_are_sentences_and_leave_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, message: str) -> None:
    def failing_write(file: object, *args: object, **kwargs: object) -> None:
        with open(file, "wb") as f:  # type: ignore[call-overload]
            f.write(b"RIFF partial")
        raise error

    monkeypatch.setattr(gio.sf, "SoundFile", failing_write)
    with pytest.raises(AudioFileError) as info:
        write_audio(tmp_path / "o.wav", sine(440, 44100, 0.2), 44100)
    assert str(info.value).startswith(f"{tmp_path / 'o.wav'}: {message}")
    assert list(tmp_path.iterdir()) == []


def _deny_access(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` unwritable and its files unreadable: by mode, and for root (whom
    modes do not stop) by making the OS calls fail as they would for anyone else."""
    for f in folder.iterdir():
        f.chmod(0)
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return
    real_open, real_builtin_open = os.open, open

    def denied(path: object) -> bool:
        return Path(os.fsdecode(path)).parent == folder  # type: ignore[arg-type]

    def os_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if denied(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    def builtin_open(path: object, *args: object, **kwargs: object) -> object:
        if not isinstance(path, int) and denied(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_builtin_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(gio, "open", builtin_open, raising=False)


def test_unreadable_file_and_read_only_folder_are_sentences(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    sf.write(folder / "in.wav", sine(440, 44100, 0.2).T, 44100)
    _deny_access(monkeypatch, folder)
    try:
        with pytest.raises(AudioFileError) as info:
            read_audio(folder / "in.wav")
        assert str(info.value) == f"{folder / 'in.wav'}: cannot read: permission denied"
        with pytest.raises(AudioFileError) as info:
            write_audio(folder / "out.wav", sine(440, 44100, 0.2), 44100)
        assert str(info.value) == f"{folder / 'out.wav'}: cannot write: permission denied"
        monkeypatch.undo()
        assert sorted(p.name for p in folder.iterdir()) == ["in.wav"]
    finally:
        folder.chmod(0o755)


def test_output_folder_that_is_a_file_is_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("a file, not a folder")
    with pytest.raises(AudioFileError) as info:
        write_audio(tmp_path / "notes" / "o.wav", sine(440, 44100, 0.2), 44100)
    assert "cannot write:" in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "notes" / "o.wav"))


def test_name_that_is_not_utf8_reads_and_writes(tmp_path: Path) -> None:
    x = sine(440, 44100, 0.2)
    name = os.fsdecode(b"caf\xe9.wav")  # Latin-1 e-acute: a surrogate escape in Python
    sf.write(os.fsencode(tmp_path / name), x.T, 44100, subtype="FLOAT")
    audio, rate = read_audio(tmp_path / name)
    assert rate == 44100
    np.testing.assert_array_equal(audio, x)
    out = write_audio(tmp_path / os.fsdecode(b"caf\xe9_out.wav"), audio, 44100, bits="32f")
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [b"caf\xe9.wav", b"caf\xe9_out.wav"]
    np.testing.assert_array_equal(read_audio(out)[0], x)
    with pytest.raises(AudioFileError) as info:
        read_audio(tmp_path / os.fsdecode(b"missing\xe9.wav"))
    assert str(info.value).encode("utf-8")  # printable: the odd byte is shown escaped
    assert "missing\\xe9.wav: no such file" in str(info.value)


def test_file_errors_catch_bad_files_not_bugs() -> None:
    assert issubclass(AudioFileError, FILE_ERRORS)
    assert issubclass(ParameterError, FILE_ERRORS)
    assert issubclass(MemoryError, FILE_ERRORS)
    for bug in (ValueError, TypeError, RuntimeError, OSError, ZeroDivisionError, KeyError):
        assert not issubclass(bug, FILE_ERRORS), bug


def _truncated_wav(tmp_path: Path, frames: int, keep: int, channels: int = 2) -> Path:
    path = tmp_path / "truncated.wav"
    sf.write(path, white(44100, frames / 44100, -20, channels=channels).T, 44100,
             subtype="PCM_16")
    data = path.read_bytes()
    header = len(data) - frames * 2 * channels
    path.write_bytes(data[:header + keep * 2 * channels + 1])  # and half a sample frame
    return path


def test_truncated_wav_is_refused_with_both_lengths(tmp_path: Path) -> None:
    path = _truncated_wav(tmp_path, 44100, 22050)
    with pytest.raises(AudioFileError) as info:
        read_audio(path)
    assert str(info.value) == (f"{path}: truncated: the header declares 44100 frames, "
                               "the file holds 22050")
    header_only = _truncated_wav(tmp_path, 44100, 0)
    with pytest.raises(AudioFileError, match="truncated: the header declares 44100 frames, "
                                             "the file holds 0"):
        read_audio(header_only)


def test_wav_with_chunks_after_the_data_is_not_called_truncated(tmp_path: Path) -> None:
    x = sine(440, 44100, 0.2)
    path = tmp_path / "tagged.wav"
    sf.write(path, x.T, 44100, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data += b"LIST" + (4).to_bytes(4, "little") + b"INFO"
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert read_audio(path)[0].shape == x.shape


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="FLAC"):
        write_audio(tmp_path / "o.flac", sine(440, 44100, 0.2), 44100, bits="32f")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.wav", b"", "empty file"),
        ("text.wav", b"this is not audio at all, just text\n" * 20, "not a readable audio file"),
        ("fragment.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a readable audio file"),
        ("page.mp3", b"<!DOCTYPE html><html><body>404</body></html>\n" * 30,
         "not a readable audio file"),
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


def _id3_tag(size: int) -> bytes:
    """An ID3v2.4 tag of ``size`` bytes of padding (as a tag holding cover art is long)."""
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + bytes(size)


def _mp3(tmp_path: Path) -> bytes:
    sf.write(tmp_path / "m.mp3", white(44100, 1.0, -20).T, 44100, format="MP3")
    data = (tmp_path / "m.mp3").read_bytes()
    (tmp_path / "m.mp3").unlink()
    return data


def test_mp3_after_a_long_id3_tag_reads(tmp_path: Path, capfd: pytest.CaptureFixture[str]
                                        ) -> None:
    data = _mp3(tmp_path)
    path = tmp_path / "tagged.mp3"
    path.write_bytes(_id3_tag(200_000) + data)  # longer than the bytes sniffed at first
    audio, rate = read_audio(path)
    assert rate == 44100
    assert audio.shape == (1, 44100)
    assert capfd.readouterr().err == ""


def test_truncated_mp3_is_refused_before_the_decoder_speaks(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = _mp3(tmp_path)
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFileError, match=r"truncated: the MP3 header declares \d+ bytes"):
        read_audio(path)
    assert capfd.readouterr().err == ""  # libmpg123 would print "Xing stream size off"


def test_truncated_wav_with_a_long_chunk_before_the_data(tmp_path: Path) -> None:
    path = _truncated_wav(tmp_path, 44100, 1000, channels=1)
    data = path.read_bytes()
    junk = b"JUNK" + (100_000).to_bytes(4, "little") + bytes(100_000)  # past the first read
    path.write_bytes(data[:4] + (len(data) + len(junk) - 8).to_bytes(4, "little") + data[8:12]
                     + junk + data[12:])
    with pytest.raises(AudioFileError, match="declares 44100 frames, the file holds 1000"):
        read_audio(path)


def test_report_text_with_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.wav")
    path = write_atomic_text(tmp_path / "r.html", f"<p>{name}</p><p>caf\u00e9 \u266a</p>")
    assert path.read_bytes().decode("utf-8") == "<p>caf\\xe9.wav</p><p>caf\u00e9 \u266a</p>"


def test_a_full_disk_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # libsndfile reports ENOSPC during a write as "System error."
    import collections

    import genrestore.io as gio

    def fail(*args: object, **kwargs: object) -> None:
        raise sf.SoundFileError("System error.")

    monkeypatch.setattr(gio.sf, "SoundFile", fail)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(gio.shutil, "disk_usage", lambda _: usage(1 << 30, 1 << 30, 0))
    with pytest.raises(AudioFileError, match="cannot write: no space left on the disk"):
        write_audio(tmp_path / "o.wav", sine(440, 44100, 0.2), 44100)
    monkeypatch.setattr(gio.shutil, "disk_usage", lambda _: usage(1 << 30, 0, 1 << 30))
    with pytest.raises(AudioFileError, match="cannot write: System error"):
        write_audio(tmp_path / "o.wav", sine(440, 44100, 0.2), 44100)
    assert list(tmp_path.iterdir()) == []


def test_a_long_tag_is_cut_in_a_wav_and_kept_whole_in_a_flac(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A WAV INFO string holds about 2 kB (libsndfile writes no tag at all past that): a
    longer prompt is cut, with a warning, and the other tags survive; FLAC keeps it whole."""
    from genrestore.io import read_tags

    x = sine(440, 44100, 0.2)
    prompt = "a slow piano piece with rain é " * 100  # 3,100 bytes
    wav = write_audio(tmp_path / "long.wav", x, 44100, tags={"title": prompt, "artist": "me"})
    tags = read_tags(wav)
    assert tags["artist"] == "me"
    assert prompt.startswith(tags["title"])
    assert 1900 < len(tags["title"].encode("utf-8")) <= 2000
    assert "title tag is cut" in caplog.text
    flac = write_audio(tmp_path / "long.flac", x, 44100, tags={"title": prompt})
    assert read_tags(flac)["title"] == prompt


def test_a_killed_writers_part_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    """What a writer killed outright leaves (``.NAME.XXXXXXXX.part``) goes once the batch is
    done; the output, another file's part, look-alikes and a folder of that name stay."""
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "a [1].wav"  # glob characters in the name
    dst.write_bytes(b"RIFF")
    dead = out / ".a [1].wav.0a1b2c3d.part"
    dead.write_bytes(b"half")
    kept = [out / ".b.wav.0a1b2c3d.part", out / ".a [1].wav.part", out / "a [1].wav.0a1b2c3d.part",
            out / ".a [1].wav.0a1b2c3d.partial"]
    for path in kept:
        path.write_bytes(b"x")
    (out / ".a [1].wav.deadbeef.part").mkdir()
    assert remove_dead_writers_parts([dst, tmp_path / "missing" / "x.wav"]) == [dead]
    assert not dead.exists()
    assert all(path.exists() for path in [dst, *kept, out / ".a [1].wav.deadbeef.part"])
