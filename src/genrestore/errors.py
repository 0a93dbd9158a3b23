"""Exception hierarchy: one root, a parameter-error subclass, a file-error subclass."""

from __future__ import annotations


class GenrestoreError(Exception):
    """Root of every error genrestore raises on purpose."""


class ParameterError(GenrestoreError, ValueError):
    """A parameter, preset key or array shape is invalid."""


class AudioFileError(GenrestoreError):
    """A file cannot be read or written; the message starts with the file's path.

    ``path`` keeps the name as the OS gave it; the message shows a name that is not valid
    UTF-8 with its odd bytes escaped (``caf\\xe9.wav``), so it can always be printed.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{display_path(self.path)}: {problem}")


def display_path(path: object) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (held by Python as surrogate
    escapes) are shown as ``\\xNN``."""
    text = str(path)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


#: What fails one file of a batch without stopping the others: genrestore's own errors (the
#: I/O layer turns OS and libsndfile errors into :class:`AudioFileError` sentences) and
#: running out of memory on a long file.  Anything else is a bug and must surface.  The CLI,
#: the benchmarks and the report all use it.
FILE_ERRORS: tuple[type[BaseException], ...] = (GenrestoreError, MemoryError)
