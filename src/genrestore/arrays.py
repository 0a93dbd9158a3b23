"""Audio as generators hand it over: numpy arrays and torch tensors, one clip or a batch.

MusicGen through audiocraft or transformers returns a torch tensor ``(batch, channels,
samples)``, on the CPU or a GPU, float32 or float16; other code passes ``(channels, samples)``
or ``(samples,)``, as tensors or numpy arrays.  :func:`unpack` turns any of them into the
``(channels, samples)`` numpy clips the pipeline works on (float32, on the CPU) and remembers
what it was given; :func:`pack` puts restored clips back into that kind, dtype, device and
layout.  Only the number of samples differs (the output rate is not the input's: 32 kHz in,
44.1 kHz out makes 1.378125 times as many samples), and the channels when a stage made a
mono clip stereo.

torch is never imported here unless a tensor is given (and then it is loaded already): a
tensor is recognised by its type's module, not by ``isinstance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from genrestore.errors import ParameterError


@dataclass(frozen=True)
class Layout:
    """What :func:`unpack` was given: ``ndim`` 1 (samples), 2 (channels, samples) or 3
    (batch, channels, samples); for a tensor, its ``dtype`` and ``device`` (None for numpy)."""

    ndim: int
    tensor: bool = False
    dtype: Any = None
    device: Any = None


def is_tensor(audio: object) -> bool:
    """Whether ``audio`` is a torch tensor (checked without importing torch)."""
    return type(audio).__module__.split(".")[0] == "torch" and hasattr(audio, "detach")


def unpack(audio: Any, *, source: str = "<array>") -> tuple[Layout, list[np.ndarray]]:
    """The clips in ``audio`` as a list of numpy arrays, and its :class:`Layout`.

    A 1-D or 2-D input is one clip (a numpy array is passed on as it is: the pipeline's own
    check, :func:`genrestore.io.as_channels`, validates it); a 3-D input is a batch, one clip
    per item along the first axis.  A tensor is detached, moved to the CPU and converted to
    float32 first.  Raises :class:`ParameterError` for other shapes, an empty batch, and
    integer or complex tensors.
    """
    if is_tensor(audio):
        if not audio.is_floating_point():
            raise ParameterError(f"{source}: audio must be floating point, got {audio.dtype}")
        layout = Layout(audio.dim(), True, audio.dtype, audio.device)
        arr = audio.detach().to("cpu").float().numpy()
    else:
        arr = np.asarray(audio)
        layout = Layout(arr.ndim)
    if arr.ndim in (1, 2):
        return layout, [arr]
    if arr.ndim != 3:
        raise ParameterError(f"{source}: audio must be (samples,), (channels, samples) or "
                             f"(batch, channels, samples), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ParameterError(f"{source}: an empty batch (shape {tuple(arr.shape)})")
    return layout, list(arr)


def pack(clips: list[np.ndarray], layout: Layout) -> Any:
    """Restored ``(channels, samples)`` clips in the :class:`Layout` :func:`unpack` saw.

    A 1-D input gives a 1-D result unless its clip became stereo; a batch is stacked (every
    clip of one batch has the same length and channel count after restoring, since the
    rate change and the stages' choice of channels do not depend on the content); a tensor
    input gives a tensor of its dtype on its device.
    """
    if layout.ndim == 3:
        shapes = {clip.shape for clip in clips}
        if len(shapes) != 1:
            raise ParameterError(f"the restored clips of the batch differ in shape ({sorted(shapes)})"
                                 f"; restore them one at a time")
        out = np.stack(clips)
    else:
        (out,) = clips
        if layout.ndim == 1 and out.shape[0] == 1:
            out = out[0]
    if not layout.tensor:
        return out
    import torch  # loaded already: the input was a tensor

    return torch.from_numpy(np.ascontiguousarray(out)).to(device=layout.device,
                                                           dtype=layout.dtype)
