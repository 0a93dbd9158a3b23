"""TPDF dither for integer PCM output, seeded, optionally high-pass shaped.

``"tpdf"`` adds triangular noise of +-1 LSB (the difference of two independent uniform
values), which makes the quantisation error independent of the signal.  ``"hp_tpdf"``
uses the difference of *successive* uniform values instead: still triangular, but its
spectrum rises at 6 dB/octave, moving dither noise away from the midrange where hearing
is most sensitive.  Float output is never dithered.
"""

from __future__ import annotations

import numpy as np

from genrestore.errors import ParameterError
from genrestore.io import as_channels

SHAPES = ("tpdf", "hp_tpdf", "none")


def dither(audio: np.ndarray, *, bits: int, seed: int = 0, shape: str = "tpdf") -> np.ndarray:
    """Return ``audio`` plus dither for quantisation to ``bits``-bit PCM, as float64
    ``(channels, samples)`` (a 1-D input is mono).

    Round the result to the ``bits``-bit grid afterwards (:func:`genrestore.io.quantize`
    does).  The same ``seed`` gives the same noise.
    """
    if shape not in SHAPES:
        raise ParameterError(f"dither shape must be one of {SHAPES}, not {shape!r}")
    if bits not in (16, 24):
        raise ParameterError(f"dither needs 16 or 24 bits, not {bits}")
    # float32 cannot hold a 24-bit LSB near full scale
    x = as_channels(audio, dtype=np.float64)
    if shape == "none":
        return x.copy()
    lsb = 2.0 ** -(bits - 1)
    rng = np.random.default_rng(seed)
    if shape == "tpdf":
        noise = rng.random(x.shape) - rng.random(x.shape)
    else:
        uniform = rng.random((x.shape[0], x.shape[-1] + 1))
        noise = uniform[:, 1:] - uniform[:, :-1]
    return x + noise * lsb
