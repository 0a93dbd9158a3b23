"""The batch manifest: what a ``restore`` batch did to each file, so that a re-run resumes.

A batch that writes into a folder keeps ``genrestore-manifest.jsonl`` there: one JSON line per
file, appended as each file finishes (a crash loses at most the files in flight; a line cut
short by a crash is ignored when the manifest is read).  A line records the input's path and
content hash, the settings' hash (the preset with every parameter, the output rate, bits and
format, and genrestore's version), the status (``done`` or ``failed``), the output's path and
content hash, the output's loudness and true peak, and the error of a failure.  A
``generate`` batch (:mod:`genrestore.generate`) writes the same lines, its raw file as the
input and its restored file as the output, plus the prompt, model, seed, preset and duration.

On a re-run, :meth:`Manifest.decide` says for each file: ``skip`` (done before with the same
input and settings, and its output is still the file written then), ``redo`` (the input or the
settings changed, or the run failed; an output the manifest shows genrestore wrote, unchanged
since, may be replaced) or ``new``.  Nothing here touches an audio file; the CLI acts on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_NAME = "genrestore-manifest.jsonl"
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex), read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_digest(*parts: Any) -> str:
    """SHA-256 (hex, first 16 bytes) of the ``repr`` of everything that shapes an output: a
    :class:`~genrestore.preset.Preset` (frozen dataclasses, so every stage parameter is in its
    repr), the rate, bits, format and genrestore's version."""
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Record:
    """One line of the manifest."""

    input: str
    input_sha256: str
    settings: str
    version: str
    status: str  # "done" or "failed"
    output: str
    output_sha256: str | None = None
    lufs: float | None = None
    true_peak_dbtp: float | None = None
    error: str | None = None
    # A ``generate`` batch's lines also say what made the input (the raw file); a
    # ``restore`` batch's lines, and lines written before these fields existed, leave them out.
    prompt: str | None = None
    model: str | None = None
    seed: int | None = None
    preset: str | None = None  # None: the raw file was not restored (--no-restore)
    duration_s: float | None = None


#: The fields of :class:`Record` a line leaves out when they are None.
GENERATION_FIELDS = ("prompt", "model", "seed", "preset", "duration_s")


@dataclass(frozen=True)
class Decision:
    """What a re-run does with one file (see the module's text)."""

    action: str  # "new", "skip" or "redo"
    reason: str
    replace_output: bool = False  # the existing output is genrestore's own, unchanged


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


class Manifest:
    """The manifest of one output folder: the last record of each input, and appending."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / MANIFEST_NAME
        self.records: dict[str, Record] = {}
        if self.path.is_file():
            self.records = {_key(r.input): r for r in _read(self.path)}

    def decide(self, source: Path, destination: Path, settings: str, *,
               force: bool = False) -> Decision:
        """``skip``, ``redo`` or ``new`` for restoring ``source`` to ``destination`` with
        ``settings`` (:func:`settings_digest`); ``force`` redoes what is done."""
        record = self.records.get(_key(source))
        if record is None or _key(record.output) != _key(destination):
            return Decision("new", "not in the manifest")
        ours = (record.status == "done" and record.output_sha256 is not None
                and destination.is_file() and file_digest(destination) == record.output_sha256)
        if record.status != "done":
            return Decision("redo", "failed before", ours)
        if not ours:
            return Decision("redo", "its output was changed or removed since", False)
        if force:
            return Decision("redo", "--force", True)
        if record.settings != settings:
            return Decision("redo", "settings changed", True)
        if file_digest(source) != record.input_sha256:
            return Decision("redo", "input changed", True)
        return Decision("skip", "done with the same input and settings", True)

    def append(self, record: Record) -> None:
        """Add ``record`` as one line (one write of the whole line, flushed to disk)."""
        data = {k: v for k, v in asdict(record).items()
                if v is not None or k not in GENERATION_FIELDS}
        line = json.dumps(data, allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # after a line cut short by a crash: start a new one
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records[_key(record.input)] = record


def _read(path: Path) -> Iterable[Record]:
    fields = set(Record.__dataclass_fields__)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                data = json.loads(line)
                yield Record(**{k: v for k, v in data.items() if k in fields})
            except (ValueError, TypeError) as exc:  # a line cut short by a crash
                log.warning("%s: line %d ignored (%s)", path, number, exc)
