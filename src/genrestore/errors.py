"""Exception hierarchy: one root, a parameter-error subclass, a file-error subclass."""

from __future__ import annotations


class GenrestoreError(Exception):
    """Root of every error genrestore raises on purpose."""


class ParameterError(GenrestoreError, ValueError):
    """A parameter, preset key or array shape is invalid."""


class AudioFileError(GenrestoreError):
    """A file cannot be read or written; the message starts with the file's path."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


#: What fails one file of a batch without stopping the others: genrestore's own errors plus
#: what the libraries underneath raise (soundfile, pedalboard and soxr surface as OSError,
#: ValueError or RuntimeError).  The CLI, the benchmarks and the report all use it.
FILE_ERRORS: tuple[type[BaseException], ...] = (GenrestoreError, OSError, ValueError, RuntimeError,
                                                MemoryError)
