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

once, for the centre frame: the *copied* band levels, the energy the bandwidth extension's
replication puts into each band above the cutoff before any gain (:func:`copied_energies`),
relative to the reference and floored where nothing is copied; the *medium-term* relative and
copied levels (time constant :data:`MEDIUM_TERM_S`) and the *long-term* relative levels and
reference level (:data:`LONG_TERM_S`): exponentially weighted means over the frames so far
(the weights normalised, so the first frames are plain means), which tell the network what
the last phrase and the clip sound like and how loud this frame is for them; and which bands
lie above the cutoff (the fraction of each band's width above it) and the cutoff in units of
20 kHz.  Only past frames and :data:`CONTEXT` frames of look-ahead are read, so the features
of a stream's blocks equal those of the whole when the running means' state is carried.

A model predicts, per band, either the clean signal's log energy relative to the reference
level (``target = "levels"``) or, above the cutoff, the log ratio of the clean energy to the
copied energy, both smoothed over :data:`RATIO_SMOOTH_FRAMES` (``target = "ratio"``): a gain
for the replicated band that varies slowly, so the band keeps its source's dynamics frame by
frame and an unsure prediction stays near a constant gain.  Everything here is numpy, shared by
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
#: Time constant (s) of the medium-term relative and copied levels (about a beat).
MEDIUM_TERM_S = 0.25
#: Frames the ratio target is smoothed over (centred; 43 frames are 0.5 s at 44.1 kHz).
RATIO_SMOOTH_FRAMES = 43
#: The input of the network: context frames, the long-term levels, the copied levels, the
#: medium-term relative and copied levels and reference, the band mask, the cutoff.
INPUT_FEATURES: int = ((2 * CONTEXT + 2) * FRAME_FEATURES + BANDS + (2 * BANDS + 1)
                       + BANDS + 1)
#: Where the band mask (fraction of each band above the cutoff) sits in the network input.
ABOVE_SLICE = slice(INPUT_FEATURES - BANDS - 1, INPUT_FEATURES - 1)
#: What a model may predict (see the module's description).
TARGETS = ("levels", "ratio")


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


def copied_energies(spec: Spectrogram, target_bins: np.ndarray, source_bins: np.ndarray
                    ) -> np.ndarray:
    """The energy band replication copies into each band: ``(channels, frames, BANDS)``, the
    mean over a band's target bins of their source bins' power (normalised as
    :func:`spectrum_energies`); 0 in bands without target bins, and target bins above 20 kHz
    count in the top band."""
    index = band_index(spec.n_fft, spec.sample_rate)[target_bins]
    index = np.where(index < 0, BANDS - 1, index)
    member = np.zeros((len(target_bins), BANDS), dtype=np.float32)
    member[np.arange(len(target_bins)), index] = 1.0
    member /= np.maximum(member.sum(axis=0), 1.0)
    src = spec.data[:, :, source_bins]
    power = (src.real**2 + src.imag**2) / np.float32(window_energy(spec.n_fft))
    return power @ member


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
    copied: np.ndarray  # (frames, BANDS) float32: log10 copied energy minus the reference
    medium_term: np.ndarray  # (frames, 2 * BANDS + 1) float32: running means (relative, copied)


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


def frame_levels(energies: np.ndarray, cutoff_hz: float, frame_s: float,
                 copied: np.ndarray | None = None) -> Frames:
    """Turn band energies ``(frames, BANDS)`` of one channel, one frame every ``frame_s``
    seconds, and the copied energies of the same frames (:func:`copied_energies`; ``None``:
    nothing is copied) into :class:`Frames`."""
    e = np.asarray(energies, dtype=np.float64)
    ref_power = e[:, reference_bands(cutoff_hz)].mean(axis=1)
    reference = np.log10(np.maximum(ref_power, 10.0**LOG_FLOOR))
    level = np.log10(np.maximum(e, 10.0**LOG_FLOOR))
    relative = np.clip(level - reference[:, None], *RELATIVE_RANGE)
    if copied is None:
        copied_rel = np.full_like(relative, RELATIVE_RANGE[0])
    else:
        c = np.log10(np.maximum(np.asarray(copied, dtype=np.float64), 10.0**LOG_FLOOR))
        copied_rel = np.clip(c - reference[:, None], *RELATIVE_RANGE)
    per_frame = np.concatenate([relative, reference[:, None]], axis=1)
    long_term = running_mean(per_frame, frame_s)
    long_term[:, -1] = reference - long_term[:, -1]  # this frame against the clip's level
    medium = running_mean(np.concatenate([relative, copied_rel, reference[:, None]], axis=1),
                          frame_s, MEDIUM_TERM_S)
    medium[:, -1] = reference - medium[:, -1]
    return Frames(relative.astype(np.float32), reference.astype(np.float32),
                  fraction_above(cutoff_hz), float(cutoff_hz), long_term.astype(np.float32),
                  copied_rel.astype(np.float32), medium.astype(np.float32))


def network_input(frames: Frames) -> np.ndarray:
    """Stack :data:`CONTEXT` frames either side (edges repeated) and append the long-term
    levels, the copied and medium-term levels, the band mask and the cutoff:
    ``(frames, INPUT_FEATURES)`` float32."""
    per_frame = np.concatenate([frames.relative, frames.reference[:, None]], axis=1)
    n = per_frame.shape[0]
    padded = np.pad(per_frame, ((CONTEXT, CONTEXT), (0, 0)), mode="edge")
    stacked = [padded[j : j + n] for j in range(2 * CONTEXT + 1)]
    stacked += [frames.long_term, frames.copied, frames.medium_term]
    fixed = np.concatenate([frames.above, [frames.cutoff_hz / 20000.0]]).astype(np.float32)
    stacked.append(np.broadcast_to(fixed, (n, fixed.size)))
    return np.concatenate(stacked, axis=1).astype(np.float32)
