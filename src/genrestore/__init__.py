"""genrestore: make text-to-music generator output release-ready on a CPU.

>>> import numpy as np, genrestore
>>> clip = 0.1 * np.sin(2 * np.pi * 440 * np.arange(32000) / 32000)[np.newaxis]
>>> audio, rate = genrestore.restore(clip.astype(np.float32), 32000, preset="none")
>>> audio.shape, rate
((1, 44100), 44100)
"""

from __future__ import annotations

from genrestore.analysis import Analysis, analyze
from genrestore.errors import AudioFileError, GenrestoreError, ParameterError
from genrestore.io import read_audio, write_audio
from genrestore.pipeline import (
    FileResult,
    Preset,
    RestoreResult,
    load_preset,
    preset_names,
    restore,
    restore_file,
    run_pipeline,
)

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
