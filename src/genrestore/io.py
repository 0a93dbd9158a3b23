"""Reading and writing audio files.

The array layout everywhere in genrestore is ``(channels, samples)`` float32.  Float samples
above full scale are kept as they are on read (several real MusicGen files peak at +5 dBFS);
only the writer decides what happens to them.  Writes are atomic: a temporary file in the
target folder is renamed over the destination once complete, and an input is never
overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import logging
import os
import shutil
import struct
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from genrestore.errors import AudioFileError, ParameterError, display_path

# The output rates, word lengths and formats live in genrestore.preset (no numpy behind
# them, for the CLI's parser); genrestore.io.OUTPUT_RATES_HZ still names the same tuple.
from genrestore.preset import OUTPUT_BITS, OUTPUT_FORMATS
from genrestore.preset import OUTPUT_RATES_HZ as OUTPUT_RATES_HZ

log = logging.getLogger(__name__)

#: Extensions :func:`find_audio_files` picks up when walking a folder.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
#: Text tags the writer can store (libsndfile's strings: a WAV file's LIST/INFO chunk, a
#: FLAC file's Vorbis comments).
TAG_FIELDS = ("title", "copyright", "software", "artist", "comment", "date", "album", "license",
              "tracknumber", "genre")

MIN_RATE_HZ = 8000
MAX_RATE_HZ = 384000
MAX_CHANNELS = 2
MIN_DURATION_S = 0.1


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says about an input."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def as_channels(audio: np.ndarray, *, source: str = "<array>",
                dtype: type[np.floating] = np.float32) -> np.ndarray:
    """The one array layout of genrestore: ``(channels, samples)`` float32 (or ``dtype``),
    C-contiguous.

    A 1-D array is mono (``(1, samples)``); a 2-D array is ``(channels, samples)``.  Every
    public entry point that takes audio (``restore``, ``run_pipeline``, the stage functions,
    :func:`~genrestore.spectral.stft`) goes through this check, so a 1-D array can never be
    read as ``samples`` channels.  Raises :class:`ParameterError` naming ``source`` for any
    other shape, for integer samples, and for more than :data:`MAX_CHANNELS` channels.
    Copies only when the dtype or memory order requires it.
    """
    arr = np.asarray(audio)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise ParameterError(f"{source}: audio must be (channels, samples), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ParameterError(f"{source}: audio must be floating point, got {arr.dtype}")
    channels, samples = arr.shape
    if channels > MAX_CHANNELS:
        raise ParameterError(
            f"{source}: {channels} channels; genrestore restores mono and stereo only"
            + (" (is the array transposed?)" if samples <= MAX_CHANNELS else "")
        )
    if channels == 0:
        raise ParameterError(f"{source}: no channels")
    return np.ascontiguousarray(arr, dtype=dtype)


def validate_audio(audio: np.ndarray, sample_rate: int, *, source: str = "<array>") -> np.ndarray:
    """Check an array is usable audio and return it as float32 ``(channels, samples)``.

    The layout rules are :func:`as_channels`'s.  Raises :class:`ParameterError` (for
    arrays) naming ``source`` for: more than two channels, a rate outside 8-384 kHz, fewer
    than 0.1 s of samples, or NaN/infinite samples.
    """
    arr = as_channels(audio, source=source)
    samples = arr.shape[1]
    if not isinstance(sample_rate, (int, np.integer)) or not (
        MIN_RATE_HZ <= sample_rate <= MAX_RATE_HZ
    ):
        raise ParameterError(
            f"{source}: sample rate {sample_rate} Hz is outside {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz"
        )
    if samples < MIN_DURATION_S * sample_rate:
        raise ParameterError(
            f"{source}: too short ({samples} samples; at least {MIN_DURATION_S:g} s is needed)"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ParameterError(f"{source}: {bad} NaN or infinite samples")
    return arr


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header; raise :class:`AudioFileError` with a one-line reason.

    The first bytes are checked before any decoder sees the file: data that is neither a
    known container nor MPEG audio is refused here, so the MP3 decoder never prints its
    resync notes to stderr, and a WAV whose data chunk is shorter than its header says is
    refused as truncated.
    """
    p = Path(path)
    try:
        if not p.exists():
            raise AudioFileError(p, "no such file")
        size = p.stat().st_size
        if p.is_dir():
            raise AudioFileError(p, "is a folder, not an audio file")
        if size == 0:
            raise AudioFileError(p, "empty file")
        with open(p, "rb") as f:
            mpeg = _sniff(p, f, size)
    except OSError as exc:
        raise AudioFileError(p, _os_reason(exc, "read")) from exc
    try:
        with _decoder_notes(p, mpeg):
            info = sf.info(os.fsencode(p))
    except sf.SoundFileError as exc:
        raise AudioFileError(p, f"not a readable audio file ({_sf_reason(exc)})") from exc
    return AudioInfo(
        path=str(p),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def read_audio(path: str | os.PathLike[str], *, info: AudioInfo | None = None
               ) -> tuple[np.ndarray, int]:
    """Read WAV/FLAC/OGG/MP3/AIFF into float32 ``(channels, samples)`` and its rate in Hz.

    Float samples beyond +-1.0 are kept.  Every problem (missing, empty, unreadable, not
    audio, too many channels, NaN samples, too short) raises :class:`AudioFileError`
    whose message starts with the path.  A truncated file is refused, not restored at a
    shorter length: a WAV whose data chunk holds fewer bytes than its header declares
    (an interrupted download or copy) fails with "truncated: the header declares N
    frames, the file holds M", and so does an MP3 whose Xing/Info header declares more
    bytes than the file holds, and an AIFF whose sound chunk is shorter than its COMM chunk
    says; a truncated FLAC fails as undecodable.  A truncated OGG, Wave64 or RF64 file is
    read as far as it goes (their headers give no length to check against).  Damaged MP3
    frames are skipped by the decoder and reported as one logged warning.  Names that
    are not valid UTF-8 are read as they are on disk.  ``info`` is the file's :func:`probe`
    when the caller has it (the header is then not read twice).
    """
    p = Path(path)
    info = info or probe(p)  # the caller may have read the header already
    try:
        with _decoder_notes(p, info.format == "MP3"):
            data, rate = sf.read(os.fsencode(p), dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:
        raise AudioFileError(p, f"cannot decode audio ({_sf_reason(exc)})") from exc
    except OSError as exc:
        raise AudioFileError(p, _os_reason(exc, "read")) from exc
    if data.shape[0] == 0:
        raise AudioFileError(p, f"no audio frames ({info.format}/{info.subtype} header only)")
    try:
        return validate_audio(data.T, int(rate), source=str(p)), int(rate)
    except ParameterError as exc:
        problem = str(exc).removeprefix(f"{p}: ")
        raise AudioFileError(p, problem) from exc


def read_blocks(path: str | os.PathLike[str], size: int = 1 << 20
                ) -> tuple[AudioInfo, Callable[[], Iterator[np.ndarray]]]:
    """A file's header (:func:`probe`) and a source of its float32 ``(channels, samples)``
    blocks of ``size`` samples (the last shorter), read from the file each time the source is
    called: a long file is never in memory at once.

    The checks of :func:`read_audio` hold block by block: a decoding error, a NaN or infinite
    sample and more than two channels raise :class:`AudioFileError` naming the file (a NaN in
    the last block is only found there: measure or restore nothing from a file before its
    blocks have all been read once).  Too short a file is for the caller to refuse from the
    samples it counted (the header's frame count is not always exact for MP3).
    """
    p = Path(path)
    info = probe(p)
    if info.channels > MAX_CHANNELS:
        raise AudioFileError(p, f"{info.channels} channels; at most {MAX_CHANNELS} are supported")
    if not MIN_RATE_HZ <= info.sample_rate <= MAX_RATE_HZ:
        raise AudioFileError(p, f"sample rate {info.sample_rate} Hz is outside "
                                f"{MIN_RATE_HZ}-{MAX_RATE_HZ} Hz")
    mpeg = info.format == "MP3"

    def blocks() -> Iterator[np.ndarray]:
        try:
            with _decoder_notes(p, mpeg):  # around each call, never across a yield
                f = sf.SoundFile(os.fsencode(p))
            with f:
                while True:
                    with _decoder_notes(p, mpeg):
                        data = f.read(size, dtype="float32", always_2d=True)
                    if data.shape[0] == 0:
                        return
                    if not np.all(np.isfinite(data)):
                        bad = int(np.count_nonzero(~np.isfinite(data)))
                        raise AudioFileError(p, f"{bad} NaN or infinite samples")
                    yield np.ascontiguousarray(data.T)
        except sf.SoundFileError as exc:
            raise AudioFileError(p, f"cannot decode audio ({_sf_reason(exc)})") from exc
        except OSError as exc:
            raise AudioFileError(p, _os_reason(exc, "read")) from exc

    return info, blocks


def quantize(audio: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """Round float audio to ``bits``-bit integers (clipping at full scale).

    Returns the integer array (int16 for 16 bits, int32 left-aligned for 24 bits, as
    libsndfile expects) and the number of samples that had to be clipped.  Apply dither
    before calling this (see :func:`genrestore.stages.dither.dither`).
    """
    if bits not in (16, 24):
        raise ParameterError(f"integer output must be 16 or 24 bits, not {bits}")
    scale = float(2 ** (bits - 1))
    ints = np.rint(np.asarray(audio, dtype=np.float64) * scale)
    clipped = int(np.count_nonzero((ints > scale - 1) | (ints < -scale)))
    np.clip(ints, -scale, scale - 1, out=ints)
    if bits == 16:
        return ints.astype(np.int16), clipped
    return (ints.astype(np.int32) << 8), clipped


def write_audio(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sample_rate: int,
    *,
    bits: str = "24",
    file_format: str | None = None,
    overwrite: bool = False,
    protect: tuple[str | os.PathLike[str], ...] = (),
    keep_identical: bool = False,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write ``(channels, samples)`` audio atomically and return the path written.

    ``bits`` is ``"16"``, ``"24"`` (integer PCM; the samples must already be dithered if
    dither is wanted) or ``"32f"`` (float, samples kept as they are).  ``file_format`` is
    ``"wav"`` or ``"flac"`` (default: from the extension).  An existing file is replaced
    only with ``overwrite=True``; a path in ``protect`` (the inputs) is never replaced.
    With ``keep_identical=True``, an existing file that already holds exactly the bytes this
    call would write is not an error (it is rewritten with the same bytes): a task run again
    after its worker was lost once it had written its output; any other existing file is
    still refused, and left as it was.  ``tags`` maps names of :data:`TAG_FIELDS` to text,
    stored in the file (WAV LIST/INFO, FLAC Vorbis comments; read back with
    :func:`read_tags`).
    """
    dst = Path(path)
    unknown = sorted(set(tags or {}) - set(TAG_FIELDS))
    if unknown:
        raise ParameterError(f"unknown tag {unknown[0]!r}; the tags are {', '.join(TAG_FIELDS)}")
    refused, fmt = check_destination(dst, bits, file_format, overwrite, protect, keep_identical)
    arr = np.asarray(audio)
    if arr.ndim != 2:
        raise ParameterError(f"{dst}: audio must be (channels, samples), got shape {arr.shape}")
    if bits == "32f":
        frames, subtype = np.ascontiguousarray(arr.T, dtype=np.float32), "FLOAT"
    else:
        ints, clipped = quantize(arr, int(bits))
        if clipped:
            log.warning("%s: %d samples clipped at full scale on write", dst, clipped)
        frames, subtype = np.ascontiguousarray(ints.T), f"PCM_{bits}"
    texts = tag_texts(tags, fmt, dst)

    def write(tmp: Path) -> None:
        with sf.SoundFile(os.fsencode(tmp), "w", int(sample_rate), frames.shape[1],
                          subtype=subtype, format=fmt.upper()) as f:
            for name, text in texts.items():  # before the audio: FLAC writes them first
                setattr(f, name, text)
            f.write(frames)
        if refused and not _same_bytes(tmp, dst):
            raise AudioFileError(dst, "output exists (use --overwrite to replace it)")

    _write_atomic(dst, write)
    return dst


def tag_texts(tags: Mapping[str, str] | None, fmt: str, dst: Path) -> dict[str, str]:
    """``tags`` as the writer stores them: a WAV INFO string longer than
    :data:`_WAV_TAG_BYTES` is cut there, with a warning naming ``dst`` (libsndfile would drop
    every tag otherwise); FLAC keeps them whole."""
    texts = {name: str(text) for name, text in (tags or {}).items()}
    if fmt == "wav":
        for name, text in texts.items():
            data = text.encode("utf-8")
            if len(data) > _WAV_TAG_BYTES:
                texts[name] = data[:_WAV_TAG_BYTES].decode("utf-8", "ignore")
                log.warning("%s: the %s tag is cut to %d bytes (a WAV INFO string holds no "
                            "more; FLAC does)", display_path(dst), name, _WAV_TAG_BYTES)
    return texts


#: The longest text (UTF-8 bytes) a WAV INFO string keeps: libsndfile silently writes no
#: INFO chunk at all when one string is longer (measured: 2045 bytes kept, 2046 lost).
_WAV_TAG_BYTES = 2000


def read_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """The text tags of an audio file (:data:`TAG_FIELDS` that are set), as
    :func:`write_audio` stores them; raises :class:`AudioFileError` for an unreadable file."""
    p = Path(path)
    probe(p)
    try:
        with sf.SoundFile(os.fsencode(p)) as f:
            return {name: getattr(f, name) for name in TAG_FIELDS if getattr(f, name)}
    except sf.SoundFileError as exc:
        raise AudioFileError(p, f"not a readable audio file ({_sf_reason(exc)})") from exc


def check_destination(dst: Path, bits: str, file_format: str | None, overwrite: bool,
                      protect: Sequence[str | os.PathLike[str]], keep_identical: bool
                      ) -> tuple[bool, str]:
    """:func:`write_audio`'s checks of a destination before anything is written: the format
    and bits, never a protected path, an existing file only with ``overwrite`` (or
    ``keep_identical``: then the writer must find the same bytes there).  Returns ``(whether
    an existing file is kept unless identical, the format)``."""
    fmt = (file_format or dst.suffix.lstrip(".")).lower()
    if fmt not in OUTPUT_FORMATS:
        raise AudioFileError(dst, f"output format must be one of {', '.join(OUTPUT_FORMATS)}")
    if bits not in OUTPUT_BITS:
        raise ParameterError(f"bits must be one of {', '.join(OUTPUT_BITS)}, not {bits!r}")
    if fmt == "flac" and bits == "32f":
        raise AudioFileError(dst, "FLAC cannot store 32-bit float; use --bits 16 or 24")
    for other in protect:
        if _same_file(dst, Path(other)):
            raise AudioFileError(dst, "refusing to overwrite an input file")
    try:
        exists = dst.exists()
    except OSError as exc:  # a folder on the way that cannot be searched
        raise AudioFileError(dst, _os_reason(exc, "write")) from exc
    refused = exists and not overwrite
    if refused and not keep_identical:
        raise AudioFileError(dst, "output exists (use --overwrite to replace it)")
    return refused, fmt


def _same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (False when ``b`` cannot be read)."""
    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


#: Under this much free space a failed write is reported as a full disk.
_MIN_FREE_BYTES = 1 << 20


def _write_atomic(dst: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temporary file beside ``dst``, then rename it over ``dst``: a
    reader sees the old file or the whole new one, never a part.

    The temporary file is removed whatever goes wrong, Ctrl-C included.  OS and libsndfile
    errors (permission denied, disk full, read-only folder) become :class:`AudioFileError`
    sentences; anything else (a bug) is re-raised as it is.
    """
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(dst)
    except OSError as exc:
        raise AudioFileError(dst, _os_reason(exc, "write")) from exc
    try:
        write(tmp)
        os.replace(tmp, dst)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, AudioFileError):
            raise
        if isinstance(exc, OSError):
            raise AudioFileError(dst, _os_reason(exc, "write")) from exc
        if isinstance(exc, sf.SoundFileError):
            # libsndfile says "System error." for a full disk: say which error it was.
            full = shutil.disk_usage(dst.parent).free < _MIN_FREE_BYTES
            reason = "no space left on the disk" if full else _sf_reason(exc)
            raise AudioFileError(dst, f"cannot write: {reason}") from exc
        raise


def write_atomic_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a UTF-8 text file (a report) atomically; returns its path.

    A file name that is not valid UTF-8 inside ``text`` is written with its odd bytes
    shown as ``\\xNN`` (as in error messages), never as invalid UTF-8 and never as a crash.
    """
    dst = Path(path)
    data = display_path(text).encode("utf-8")
    _write_atomic(dst, lambda tmp: tmp.write_bytes(data))
    return dst


def find_audio_files(paths: list[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(file, path relative to its root)`` pairs.

    Folders are walked recursively for :data:`AUDIO_EXTENSIONS`, in sorted order; files
    named directly are kept whatever their extension (so a bad file gets its own error).
    """
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith("."):
                    found.append((f, f.relative_to(p)))
        else:
            found.append((p, Path(p.name)))
    return found


def remove_dead_writers_parts(destinations: Sequence[Path]) -> list[Path]:
    """Remove the hidden ``.<name>.<random>.part`` files (:func:`_create_temp`'s) that a
    writer of one of ``destinations`` left when it was killed outright (SIGKILL, a lost
    Dask worker, the out-of-memory killer: nothing runs to remove them), and return them.
    Call it only when every writer of those destinations has finished: a batch calls it once
    all its files are done.  Each folder is listed once, whatever the number of files."""
    by_folder: dict[Path, set[str]] = {}
    for dst in destinations:
        by_folder.setdefault(dst.parent, set()).add(dst.name)
    removed: list[Path] = []
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and name.endswith(".part")):
                continue
            stem, _, suffix = name[1:-len(".part")].rpartition(".")
            if stem in names and len(suffix) == 8 and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _create_temp(dst: Path) -> Path:
    """Create an empty hidden ``.<name>.<random>.part`` file beside ``dst``.

    It is created with mode 0o666 so that the kernel applies the umask (and any default
    ACL) exactly as for any new file; the process umask is never read or changed.
    """
    for _ in range(100):
        # os.urandom, as secrets.token_hex does, without importing secrets (hashlib, hmac)
        tmp = dst.with_name(f".{dst.name}.{os.urandom(4).hex()}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(dst))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _sf_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


_OS_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "a file of that name already exists",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error (a disk or network problem)",
    errno.ENAMETOOLONG: "name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EFBIG: "file too large for this file system",
}


def _os_reason(exc: OSError, action: str) -> str:
    """``cannot read: permission denied``: an :class:`OSError` as the end of a sentence."""
    reason = _OS_REASONS.get(exc.errno or -1) or (exc.strerror or type(exc).__name__).lower()
    return f"cannot {action}: {reason}"


#: How much of a file :func:`_sniff` looks at.
_SNIFF_BYTES = 64 * 1024
#: First bytes of the containers libsndfile recognises on its own (never sent to the MP3
#: decoder): WAV (RIFF/RIFX/RF64), Wave64, AIFF/AIFC (FORM), FLAC, OGG, AU, CAF.
_CONTAINER_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"riff", b"FORM", b"fLaC", b"OggS", b".snd",
                    b"dns.", b"caff")
_MPEG_SUFFIXES = (".mp3", ".mp2", ".mp1", ".mpga")
#: MPEG audio bitrates in kbit/s by (version is MPEG-1, layer) and bitrate index 1-14.
_MPEG_KBPS = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _sniff(p: Path, f: BinaryIO, size: int) -> bool:
    """Refuse, before any decoder runs, what would only make it print to stderr; True when
    the file is MPEG audio (the one decoder that prints notes of its own)."""
    head = f.read(_SNIFF_BYTES)
    if head.startswith((b"RIFF", b"RIFX")):
        _check_wav_length(p, f, size)
        return False
    if head.startswith(b"FORM"):
        _check_aiff_length(p, f, size)
        return False
    if head.startswith(_CONTAINER_MAGIC):
        return False
    mpeg_like = head.startswith(b"ID3") or _mpeg_frame(head, 0) is not None
    if not mpeg_like and p.suffix.lower() not in _MPEG_SUFFIXES:
        return False  # libsndfile answers "format not recognised" quietly for these
    start = _skip_id3(head)
    if start:  # the tag (cover art) can be long: look at what follows it
        f.seek(start)
        head = f.read(_SNIFF_BYTES)
        padding = len(head) - len(head.lstrip(b"\0"))  # some taggers pad after the tag
        start, head = start + padding, head[padding:]
    first = _mpeg_frame(head, 0)
    if first is None:
        raise AudioFileError(p, "not a readable audio file (no MPEG audio frame where MP3 data "
                                "should start; is it really an MP3?)")
    length, is_v1, mono = first
    if length + 4 <= len(head) and _mpeg_frame(head, length) is None:
        raise AudioFileError(p, "not a readable audio file (MPEG frame headers are inconsistent)")
    if start + length >= size:
        raise AudioFileError(p, "too short (a single MPEG frame)")
    _check_xing_length(p, head, is_v1, mono, size - start)
    return True


@contextlib.contextmanager
def _decoder_notes(p: Path, mpeg: bool) -> Iterator[None]:
    """Keep libmpg123's notes about damaged frames ("Illegal Audio-MPEG-Header ... Trying to
    resync", "dequantization failed") off the terminal: for an MPEG file, C-level stderr (fd
    2) goes to a temporary file while the decoder runs, and what it said becomes one logged
    warning naming the file.  Other formats (``mpeg`` false, as :func:`_sniff` found) decode
    quietly and are left alone.  fd 2 is process-wide: another thread writing to it in that
    moment is captured too."""
    if not mpeg:
        yield
        return
    import tempfile  # only for MPEG files: a WAV or FLAC run does not load it

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                sink.seek(0)
                notes = sink.read().decode("utf-8", "replace").strip()
                if notes:
                    log.warning("%s: the MP3 decoder met damaged frames and skipped them (%d "
                                "notes)", display_path(p), len(notes.splitlines()))
    finally:
        os.close(saved)


def _skip_id3(head: bytes) -> int:
    if len(head) >= 10 and head.startswith(b"ID3"):
        b = head[6:10]
        length = (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]
        footer = 10 if head[5] & 0x10 else 0
        return 10 + length + footer
    return 0


def _mpeg_frame(head: bytes, pos: int) -> tuple[int, bool, bool] | None:
    """Length in bytes, MPEG-1 or not, and mono or not, of a valid MPEG audio frame header
    at ``pos`` (None when there is none)."""
    if pos < 0 or pos + 4 > len(head):
        return None
    h = int.from_bytes(head[pos:pos + 4], "big")
    version, layer_bits = (h >> 19) & 3, (h >> 17) & 3
    bitrate_index, rate_index = (h >> 12) & 15, (h >> 10) & 3
    if (h >> 21) != 0x7FF or version == 1 or layer_bits == 0 or bitrate_index in (0, 15) \
            or rate_index == 3:
        return None
    is_v1, layer = version == 3, 4 - layer_bits
    bitrate = _MPEG_KBPS[(is_v1, layer)][bitrate_index - 1] * 1000
    rate = _MPEG_RATES[version][rate_index]
    padding = (h >> 9) & 1
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    else:
        length = (144 if is_v1 or layer == 2 else 72) * bitrate // rate + padding
    return length, is_v1, ((h >> 6) & 3) == 3


def _check_xing_length(p: Path, head: bytes, is_v1: bool, mono: bool, held: int) -> None:
    """Refuse an MP3 whose Xing/Info header (``head`` starts at its first frame) declares
    more bytes than the ``held`` bytes that follow the ID3 tag."""
    side = (17 if mono else 32) if is_v1 else (9 if mono else 17)
    tag = 4 + side
    if head[tag:tag + 4] not in (b"Xing", b"Info") or len(head) < tag + 16:
        return
    flags = int.from_bytes(head[tag + 4:tag + 8], "big")
    if flags & 1:  # frame count: no MPEG frame is shorter than 24 bytes
        (frames,) = struct.unpack(">I", head[tag + 8:tag + 12])
        if frames > held // 24 + 1:
            raise AudioFileError(p, f"corrupt MP3 header: it declares {frames} frames, the file "
                                    f"can hold at most {held // 24 + 1}")
    if not flags & 2:
        return
    declared = int.from_bytes(head[tag + 12 if flags & 1 else tag + 8:][:4], "big")
    if declared > held * 1.01:
        raise AudioFileError(p, f"truncated: the MP3 header declares {declared} bytes of audio, "
                                f"the file holds {held}")


#: AIFF-C compression types that store plain PCM or float frames (bytes per frame known).
_AIFC_PLAIN = (b"NONE", b"sowt", b"twos", b"fl32", b"FL32", b"fl64", b"FL64", b"raw ")


def _check_aiff_length(p: Path, f: BinaryIO, size: int) -> None:
    """Refuse an AIFF whose ``COMM`` chunk declares more frames than its ``SSND`` chunk
    holds (libsndfile would read what is there and say nothing)."""
    f.seek(8)
    kind = f.read(4)
    pos, channels, frames, frame_bytes = 12, 0, 0, 0
    while pos + 8 <= size:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return
        chunk_id, (chunk_size,) = header[:4], struct.unpack(">I", header[4:])
        if chunk_id == b"COMM":
            comm = f.read(min(chunk_size, 22))
            if len(comm) < 8:
                return
            channels, frames, bits = struct.unpack(">HIH", comm[:8])
            if kind == b"AIFC" and comm[18:22] not in _AIFC_PLAIN:
                return  # compressed: bytes per frame not known from the header
            frame_bytes = channels * ((bits + 7) // 8)
        if chunk_id == b"SSND":
            held = size - (pos + 16)
            if frame_bytes and 0 <= held < frames * frame_bytes:
                raise AudioFileError(p, f"truncated: the header declares {frames} frames, "
                                        f"the file holds {held // frame_bytes}")
            return
        pos += 8 + chunk_size + (chunk_size & 1)


def _check_wav_length(p: Path, f: BinaryIO, size: int) -> None:
    """Refuse a WAV whose ``data`` chunk declares more bytes than the file holds."""
    f.seek(0)
    order = "<" if f.read(4) == b"RIFF" else ">"
    pos, block_align = 12, 0
    while pos + 8 <= size:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return
        chunk_id, (chunk_size,) = header[:4], struct.unpack(order + "I", header[4:])
        if chunk_id == b"fmt ":
            fmt = f.read(14)
            if len(fmt) == 14:
                (block_align,) = struct.unpack(order + "H", fmt[12:14])
        if chunk_id == b"data":
            held = size - (pos + 8)
            if block_align and 0 <= held < chunk_size < 0xFFFFFFFF:
                raise AudioFileError(
                    p, f"truncated: the header declares {chunk_size // block_align} frames, "
                       f"the file holds {held // block_align}")
            return
        pos += 8 + chunk_size + (chunk_size & 1)
