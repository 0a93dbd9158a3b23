"""genrestore: make text-to-music generator output release-ready on a CPU.

>>> import numpy as np, genrestore
>>> clip = 0.1 * np.sin(2 * np.pi * 440 * np.arange(32000) / 32000)[np.newaxis]
>>> audio, rate = genrestore.restore(clip.astype(np.float32), 32000, preset="none")
>>> audio.shape, rate
((1, 44100), 44100)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genrestore.analysis import Analysis, analyze
    from genrestore.errors import AudioFileError, GenrestoreError, ParameterError
    from genrestore.io import read_audio, write_audio
    from genrestore.pipeline import FileResult, RestoreResult, restore, restore_file, run_pipeline
    from genrestore.preset import Preset, load_preset, preset_names

#: Where each public name lives.  They are imported on first use (PEP 562), so that
#: ``import genrestore`` and ``genrestore --help`` do not load scipy's signal stack.
_LAZY = {
    "Analysis": "analysis", "analyze": "analysis",
    "AudioFileError": "errors", "GenrestoreError": "errors", "ParameterError": "errors",
    "read_audio": "io", "write_audio": "io",
    "FileResult": "pipeline", "RestoreResult": "pipeline", "restore": "pipeline",
    "restore_file": "pipeline", "run_pipeline": "pipeline",
    "Preset": "preset", "load_preset": "preset", "preset_names": "preset",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"genrestore.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'genrestore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "AudioFileError",
    "FileResult",
    "GenrestoreError",
    "ParameterError",
    "Preset",
    "RestoreResult",
    "__version__",
    "analyze",
    "load_preset",
    "preset_names",
    "read_audio",
    "restore",
    "restore_file",
    "run_pipeline",
    "write_audio",
]
