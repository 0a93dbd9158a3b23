"""The learned spectral-envelope model: numpy inference of the weights shipped in the wheel.

A small fully connected network reads band levels of the shared STFT around each frame and
the levels band replication copies above the cutoff (:mod:`genrestore.model.features`).  It
predicts either the clean signal's level in every band (``info["target"] == "levels"``) or,
above the cutoff, a slowly varying log gain of the copied band (``"ratio"``); either way
:func:`predict_levels` turns that into the envelope the bandwidth-extension stage shapes its
replicated band to (``bwe.method = "model"``).  The
weights are package data (``genrestore/model/*.npz``), trained by the recipe in ``training/``
(torch, never imported here); inference is plain numpy, deterministic, and works frame by
frame with :data:`~genrestore.model.features.CONTEXT` frames of look-ahead, so it can run on
blocks.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from genrestore.errors import ParameterError
from genrestore.model.features import (
    BANDS,
    INPUT_FEATURES,
    LOG_FLOOR,
    TARGETS,
    copied_energies,
    frame_levels,
    network_input,
    spectrum_energies,
)
from genrestore.spectral import Spectrogram

#: The weights shipped with the package.
DEFAULT_WEIGHTS = "envelope.npz"

__all__ = ["DEFAULT_WEIGHTS", "EnvelopeModel", "load_model", "predict_levels"]


@dataclass(frozen=True)
class EnvelopeModel:
    """A trained network: standardisation of its input, dense layers (ReLU between them, the
    last one linear) and what the training recipe recorded about itself (``info``)."""

    mean: np.ndarray  # (INPUT_FEATURES,)
    scale: np.ndarray  # (INPUT_FEATURES,)
    weights: tuple[np.ndarray, ...]  # (inputs, outputs) each
    biases: tuple[np.ndarray, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dims = [w.shape for w in self.weights]
        if (not dims or dims[0][0] != INPUT_FEATURES or dims[-1][1] != BANDS
                or any(a[1] != b[0] for a, b in itertools.pairwise(dims))
                or [b.shape[0] for b in self.biases] != [d[1] for d in dims]
                or self.mean.shape != (INPUT_FEATURES,) or self.scale.shape != (INPUT_FEATURES,)):
            raise ParameterError(
                f"model weights do not fit the features: layers {dims}, "
                f"expected {INPUT_FEATURES} inputs and {BANDS} outputs")
        if self.target not in TARGETS:
            raise ParameterError(f"model target must be one of {', '.join(TARGETS)}, "
                                 f"not {self.target!r}")

    @property
    def target(self) -> str:
        """What the network predicts: ``"levels"`` or ``"ratio"`` (see the module)."""
        return str(self.info.get("target", "levels"))

    @property
    def parameters(self) -> int:
        return int(sum(w.size + b.size for w, b in zip(self.weights, self.biases, strict=True)))

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """``(frames, INPUT_FEATURES) -> (frames, BANDS)``: per band, the predicted clean
        level relative to the frame's reference level, or the log gain of the copied band
        (log10 power; see :attr:`target`)."""
        h = (np.asarray(inputs, dtype=np.float32) - self.mean) / self.scale
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``.npz`` :func:`load_model` reads."""
        arrays = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        arrays["info"] = np.frombuffer(json.dumps(self.info, sort_keys=True).encode(), np.uint8)
        np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})


def _from_npz(data: Any, name: str) -> EnvelopeModel:
    try:
        count = sum(1 for k in data.files if k.startswith("w"))
        return EnvelopeModel(
            mean=data["mean"].astype(np.float32), scale=data["scale"].astype(np.float32),
            weights=tuple(data[f"w{i}"].astype(np.float32) for i in range(count)),
            biases=tuple(data[f"b{i}"].astype(np.float32) for i in range(count)),
            info=json.loads(bytes(data["info"]).decode()) if "info" in data.files else {})
    except (KeyError, ValueError) as exc:
        raise ParameterError(f"{name}: not a genrestore model file ({exc})") from None


@functools.lru_cache(maxsize=4)
def _load_packaged(name: str) -> EnvelopeModel:
    ref = resources.files("genrestore.model").joinpath(name)
    if not ref.is_file():
        raise ParameterError(f"the package holds no model weights named {name!r}")
    with ref.open("rb") as handle, np.load(handle) as data:
        return _from_npz(data, name)


def load_model(path: str | os.PathLike[str] | None = None) -> EnvelopeModel:
    """The shipped model (cached), or the one in an ``.npz`` written by
    :meth:`EnvelopeModel.save` (the training recipe's export)."""
    if path is None:
        return _load_packaged(DEFAULT_WEIGHTS)
    p = Path(path)
    try:
        with np.load(p) as data:
            return _from_npz(data, str(p))
    except OSError as exc:
        raise ParameterError(f"{p}: cannot read model weights ({exc.strerror or exc})") from None


def predict_levels(spec: Spectrogram, cutoff_hz: float, model: EnvelopeModel,
                   bins: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The model's clean band levels for every channel and frame of ``spec``:
    ``(channels, frames, BANDS)`` float32, log10 of the mean power per bin (the scale of
    :func:`~genrestore.model.features.band_energies`).  ``bins`` are the band replication's
    ``(target_bins, source_bins)`` (:func:`genrestore.stages.bwe.patch_bins`); without them
    nothing counts as copied, and a ``"ratio"`` model's levels are the floor everywhere."""
    energies = spectrum_energies(spec)
    copied = copied_energies(spec, *bins) if bins is not None else None
    out = np.empty(energies.shape, dtype=np.float32)
    for c in range(energies.shape[0]):
        own = copied[c] if copied is not None else None
        frames = frame_levels(energies[c], cutoff_hz, spec.hop / spec.sample_rate, own)
        pred = model.forward(network_input(frames))
        if model.target == "levels":
            out[c] = pred + frames.reference[:, None]
        elif own is None:
            out[c] = LOG_FLOOR
        else:
            have = own > 10.0**LOG_FLOOR
            out[c] = np.where(have, np.log10(np.maximum(own, 10.0**LOG_FLOOR)) + pred, LOG_FLOOR)
    return out
