"""restore() takes what audiocraft and transformers return (issue 13, part 1): torch tensors
(batch, channels, samples), (channels, samples) or (samples,), float16 or float32, on any
device, and numpy arrays; it gives back the same kind, dtype, device and layout."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import genrestore
from genrestore.errors import ParameterError

RATE = 32000
OUT = 44100


def music(channels: int, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    """A 32 kHz clip band-limited at 10 kHz, with -50 dBFS hiss: a generator's output."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    tones = sum(0.1 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (220, 440, 660, 3000))
    hiss = 10 ** (-50 / 20) * rng.standard_normal((channels, t.size))
    return (tones + hiss).astype(np.float32)


def devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", devices())
def test_a_batch_tensor_comes_back_a_tensor_of_its_dtype_and_device(device: str) -> None:
    import torch

    batch = np.stack([music(1, seed=1), music(1, seed=2)])  # (2, 1, 16000), as MusicGen gives
    for dtype in (torch.float32, torch.float16):
        tensor = torch.from_numpy(batch).to(device=device, dtype=dtype)
        out, rate = genrestore.restore(tensor, RATE)
        assert rate == OUT
        assert isinstance(out, torch.Tensor)
        assert out.dtype == dtype
        assert out.device == tensor.device
        assert tuple(out.shape) == (2, 1, 22050)  # 0.5 s at 44.1 kHz: the length follows the rate
        # Each item is restored on its own, as the float32 numpy clip the tensor holds.
        for item in range(2):
            clip = tensor[item].float().cpu().numpy()
            expected, _ = genrestore.restore(clip, RATE)
            assert torch.equal(out[item].cpu(), torch.from_numpy(expected).to(dtype))


def test_one_clip_tensors_keep_their_layout() -> None:
    import torch

    stereo = torch.from_numpy(music(2))
    mono = torch.from_numpy(music(1)[0]).requires_grad_()  # a tensor from a graph: detached
    out2, _ = genrestore.restore(stereo, RATE)
    out1, _ = genrestore.restore(mono, RATE)
    assert tuple(out2.shape) == (2, 22050)
    assert tuple(out1.shape) == (22050,)
    np.testing.assert_array_equal(out1.numpy(), genrestore.restore(music(1)[0], RATE)[0])
    widened, _ = genrestore.restore(mono, RATE, stereo={"enabled": True})
    assert tuple(widened.shape) == (2, 22050), "a mono clip made stereo cannot stay 1-D"


def test_a_numpy_batch_is_restored_item_by_item() -> None:
    batch = np.stack([music(2, seed=3), music(2, seed=4)])
    out, _ = genrestore.restore(batch, RATE, preset="gentle")
    assert isinstance(out, np.ndarray)
    assert out.shape == (2, 2, 22050)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[1], genrestore.restore(batch[1], RATE, preset="gentle")[0])


def test_what_cannot_be_audio_is_a_parameter_error() -> None:
    import torch

    with pytest.raises(ParameterError, match=r"floating point, got torch\.int16"):
        genrestore.restore(torch.zeros(16000, dtype=torch.int16), RATE)
    with pytest.raises(ParameterError, match="an empty batch"):
        genrestore.restore(torch.zeros((0, 1, 16000)), RATE)
    with pytest.raises(ParameterError, match=r"got shape \(1, 1, 1, 16000\)"):
        genrestore.restore(torch.zeros((1, 1, 1, 16000)), RATE)
    with pytest.raises(ParameterError, match="3 channels"):
        genrestore.restore(torch.zeros((1, 3, 16000)), RATE)


def test_restoring_numpy_audio_does_not_import_torch() -> None:
    code = ("import sys, numpy as np, genrestore\n"
            "t = np.arange(16000) / 32000\n"
            "x = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)\n"
            "genrestore.restore(np.stack([x[None], x[None]]), 32000)\n"
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr
