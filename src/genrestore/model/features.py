"""What the learned model reads and predicts: band energies of the shared STFT.

The bands are fixed in hertz, so one model serves every output rate and FFT size: 100 Hz wide
up to 700 Hz, one ERB wide from there until an ERB reaches 500 Hz (about 4.3 kHz), then 500 Hz
wide up to 20 kHz (:data:`BAND_EDGES_HZ`, 54 bands).  A bin belongs to the band its centre
falls in; a band's energy is the mean power of its bins.

Per frame the model reads, for the frame itself and :data:`CONTEXT` frames either side:

- every band's log energy relative to the frame's *reference level*, the mean power of the
  bands that lie wholly below the cutoff (between 100 Hz and 16 kHz): ``log10`` units,
  clipped to ``[-10, 2]`` so silence and empty bands read as a floor;
- the reference level itself, as ``log10`` power (``-12`` for digital silence);

once, for the centre frame, the *long-term* relative levels and reference level: an
exponentially weighted mean over the frames so far (time constant :data:`LONG_TERM_S`, the
weights normalised, so the first frames are plain means), which tells the network the clip's
timbre and how loud this frame is for it; and which bands lie above the cutoff (the fraction
of each band's width above it) and the cutoff in units of 20 kHz.  It predicts, per band, the clean
signal's log energy relative to the same reference level.  Everything here is numpy, shared by
inference (:mod:`genrestore.model`) and the training recipe (``training/``), so both see
exactly the same numbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from genrestore.spectral import Spectrogram, window_energy


def _erb_hz(freq_hz: float) -> float:
    """Glasberg and Moore's equivalent rectangular bandwidth at ``freq_hz``."""
    return 24.7 * (4.37 * freq_hz / 1000.0 + 1.0)


def _band_edges() -> np.ndarray:
    edges = [0.0]
    while edges[-1] < 20000.0 - 1.0:
        f = edges[-1]
        width = 100.0 if f < 700.0 else min(max(_erb_hz(f), 100.0), 500.0)
        edges.append(min(f + width, 20000.0))
    return np.round(np.array(edges), 1)


#: Band edges in hertz, from 0 to 20 kHz.
BAND_EDGES_HZ: np.ndarray = _band_edges()
#: Number of bands.
BANDS: int = len(BAND_EDGES_HZ) - 1
#: Frames of context either side of the frame predicted.
CONTEXT: int = 3
#: The reference level is taken over bands wholly between these frequencies and below the cutoff.
REFERENCE_BAND_HZ = (100.0, 16000.0)
#: log10 floor of band energies (power), and the range relative levels are clipped to.
LOG_FLOOR = -12.0
RELATIVE_RANGE = (-10.0, 2.0)
#: Per frame: BANDS relative levels plus the reference level.
FRAME_FEATURES: int = BANDS + 1
#: Time constant (s) of the long-term levels.
LONG_TERM_S = 2.0
#: The input of the network: context frames, the long-term levels, the band mask, the cutoff.
INPUT_FEATURES: int = (2 * CONTEXT + 2) * FRAME_FEATURES + BANDS + 1


@functools.lru_cache(maxsize=16)
def band_index(n_fft: int, sample_rate: int) -> np.ndarray:
    """For every rfft bin, the band its centre frequency falls in (-1 above 20 kHz)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    index = np.searchsorted(BAND_EDGES_HZ, freqs, side="right") - 1
    index[(freqs >= BAND_EDGES_HZ[-1]) | (index < 0)] = -1
    index.flags.writeable = False
    return index


def band_energies(power: np.ndarray, n_fft: int, sample_rate: int) -> np.ndarray:
    """Mean power per band: ``(..., bins) -> (..., BANDS)``; a band without bins (possible
    only at low FFT sizes) is 0.  ``power`` is ``|STFT|^2`` divided by the window's energy,
    so white noise of variance s^2 reads s^2 in every band."""
    m = _membership(n_fft, sample_rate)
    keep = band_index(n_fft, sample_rate) >= 0
    flat = np.asarray(power, dtype=np.float32)[..., keep].reshape(-1, int(keep.sum()))
    sums = (flat @ m).reshape(*power.shape[:-1], BANDS)
    return sums / np.maximum(m.sum(axis=0), 1.0)


def spectrum_energies(spec: Spectrogram) -> np.ndarray:
    """Band energies of every channel and frame of ``spec``: ``(channels, frames, BANDS)``,
    the power normalised by the analysis window's energy (see :func:`band_energies`)."""
    power = (spec.data.real**2 + spec.data.imag**2) / np.float32(window_energy(spec.n_fft))
    return band_energies(power, spec.n_fft, spec.sample_rate)


@functools.lru_cache(maxsize=16)
def _membership(n_fft: int, sample_rate: int) -> np.ndarray:
    """``(kept bins, BANDS)`` 0/1 matrix: which band each bin below 20 kHz belongs to."""
    index = band_index(n_fft, sample_rate)
    kept = index[index >= 0]
    m = np.zeros((kept.size, BANDS), dtype=np.float32)
    m[np.arange(kept.size), kept] = 1.0
    m.flags.writeable = False
    return m


def fraction_above(cutoff_hz: float) -> np.ndarray:
    """How much of each band's width lies above ``cutoff_hz`` (0..1), float32 ``(BANDS,)``."""
    lo, hi = BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:]
    return np.clip((hi - cutoff_hz) / (hi - lo), 0.0, 1.0).astype(np.float32)


def reference_bands(cutoff_hz: float) -> np.ndarray:
    """Boolean ``(BANDS,)``: the bands the reference level is measured over."""
    lo, hi = BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:]
    top = min(cutoff_hz, REFERENCE_BAND_HZ[1])
    chosen = (lo >= REFERENCE_BAND_HZ[0]) & (hi <= top)
    if not chosen.any():  # a cutoff under 100 Hz: everything below it (at least one band)
        chosen = hi <= max(top, BAND_EDGES_HZ[1])
    return chosen


@dataclass(frozen=True)
class Frames:
    """Per-frame band levels of one channel: what the model reads, before context stacking."""

    relative: np.ndarray  # (frames, BANDS) float32: log10 band energy minus the reference
    reference: np.ndarray  # (frames,) float32: log10 reference power
    above: np.ndarray  # (BANDS,) float32: fraction of each band above the cutoff
    cutoff_hz: float
    long_term: np.ndarray  # (frames, FRAME_FEATURES) float32: running means of the above


def running_mean(values: np.ndarray, frame_s: float, time_constant_s: float = LONG_TERM_S
                 ) -> np.ndarray:
    """Exponentially weighted mean over time (axis 0) of everything up to each frame, the
    weights normalised (so frame 0 is itself and early frames are plain means)."""
    from scipy.signal import lfilter

    decay = float(np.exp(-frame_s / time_constant_s))
    x = np.asarray(values, dtype=np.float64)
    num = lfilter([1.0 - decay], [1.0, -decay], x, axis=0)
    den = 1.0 - decay ** np.arange(1, x.shape[0] + 1)
    return num / den.reshape(-1, *([1] * (x.ndim - 1)))


def frame_levels(energies: np.ndarray, cutoff_hz: float, frame_s: float) -> Frames:
    """Turn band energies ``(frames, BANDS)`` of one channel, one frame every ``frame_s``
    seconds, into :class:`Frames`."""
    e = np.asarray(energies, dtype=np.float64)
    ref_power = e[:, reference_bands(cutoff_hz)].mean(axis=1)
    reference = np.log10(np.maximum(ref_power, 10.0**LOG_FLOOR))
    level = np.log10(np.maximum(e, 10.0**LOG_FLOOR))
    relative = np.clip(level - reference[:, None], *RELATIVE_RANGE)
    per_frame = np.concatenate([relative, reference[:, None]], axis=1)
    long_term = running_mean(per_frame, frame_s)
    long_term[:, -1] = reference - long_term[:, -1]  # this frame against the clip's level
    return Frames(relative.astype(np.float32), reference.astype(np.float32),
                  fraction_above(cutoff_hz), float(cutoff_hz), long_term.astype(np.float32))


def network_input(frames: Frames) -> np.ndarray:
    """Stack :data:`CONTEXT` frames either side (edges repeated) and append the long-term
    levels, the band mask and the cutoff: ``(frames, INPUT_FEATURES)`` float32."""
    per_frame = np.concatenate([frames.relative, frames.reference[:, None]], axis=1)
    n = per_frame.shape[0]
    padded = np.pad(per_frame, ((CONTEXT, CONTEXT), (0, 0)), mode="edge")
    stacked = [padded[j : j + n] for j in range(2 * CONTEXT + 1)]
    stacked.append(frames.long_term)
    fixed = np.concatenate([frames.above, [frames.cutoff_hz / 20000.0]]).astype(np.float32)
    stacked.append(np.broadcast_to(fixed, (n, fixed.size)))
    return np.concatenate(stacked, axis=1).astype(np.float32)
