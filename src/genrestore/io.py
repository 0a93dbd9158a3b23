"""Reading and writing audio files.

The array layout everywhere in genrestore is ``(channels, samples)`` float32.  Float samples
above full scale are kept as they are on read (several real MusicGen files peak at +5 dBFS);
only the writer decides what happens to them.  Writes are atomic: a temporary file in the
target folder is renamed over the destination once complete, and an input is never
overwritten.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from genrestore.errors import AudioFileError, ParameterError

log = logging.getLogger(__name__)

#: Extensions :func:`find_audio_files` picks up when walking a folder.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
#: Output rates the writer accepts.
OUTPUT_RATES_HZ = (44100, 48000)
#: Output word lengths: integer PCM bits, or "32f" for 32-bit float.
OUTPUT_BITS = ("16", "24", "32f")
OUTPUT_FORMATS = ("wav", "flac")

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
    """Read a file's header; raise :class:`AudioFileError` with a one-line reason."""
    p = Path(path)
    if not p.exists():
        raise AudioFileError(p, "no such file")
    if p.is_dir():
        raise AudioFileError(p, "is a folder, not an audio file")
    if p.stat().st_size == 0:
        raise AudioFileError(p, "empty file")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(p, f"not a readable audio file ({_sf_reason(exc)})") from exc
    return AudioInfo(
        path=str(p),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read WAV/FLAC/OGG/MP3/AIFF into float32 ``(channels, samples)`` and its rate in Hz.

    Float samples beyond +-1.0 are kept.  Every problem (missing, empty, not audio,
    truncated, too many channels, NaN samples, too short) raises :class:`AudioFileError`
    whose message starts with the path.
    """
    p = Path(path)
    info = probe(p)
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(p, f"cannot decode audio ({_sf_reason(exc)})") from exc
    if data.shape[0] == 0:
        raise AudioFileError(p, f"no audio frames ({info.format}/{info.subtype} header only)")
    try:
        return validate_audio(data.T, int(rate), source=str(p)), int(rate)
    except ParameterError as exc:
        problem = str(exc).removeprefix(f"{p}: ")
        raise AudioFileError(p, problem) from exc


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
) -> Path:
    """Write ``(channels, samples)`` audio atomically and return the path written.

    ``bits`` is ``"16"``, ``"24"`` (integer PCM; the samples must already be dithered if
    dither is wanted) or ``"32f"`` (float, samples kept as they are).  ``file_format`` is
    ``"wav"`` or ``"flac"`` (default: from the extension).  An existing file is replaced
    only with ``overwrite=True``; a path in ``protect`` (the inputs) is never replaced.
    """
    dst = Path(path)
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
    if dst.exists() and not overwrite:
        raise AudioFileError(dst, "output exists (use --overwrite to replace it)")
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
    _write_atomic(dst, lambda tmp: sf.write(str(tmp), frames, int(sample_rate),
                                             subtype=subtype, format=fmt.upper()))
    return dst


def _write_atomic(dst: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temporary file beside ``dst``, then rename it over ``dst``: a
    reader sees the old file or the whole new one, never a part."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, dst)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise AudioFileError(dst, f"cannot write ({exc})") from exc


def write_atomic_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a UTF-8 text file (a report) atomically; returns its path."""
    dst = Path(path)
    _write_atomic(dst, lambda tmp: tmp.write_text(text, encoding="utf-8"))
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _sf_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
