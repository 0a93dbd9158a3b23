"""Training pairs for the envelope model: real full-band music, degraded at random.

Each full-band track of the manifest (``training.data``) gives a few excerpts; each excerpt
is degraded by a randomly drawn chain (:func:`random_chain`: band limits of three shapes from
5 to 16 kHz, MP3 or Opus at 24-96 kbit/s, white or pink hiss at 15-45 dB SNR, mono or stereo,
random gain, mild clipping), brought back to the clean track's rate the way the pipeline does
(``genrestore.stages.resample``), and measured with the package's own feature code
(``genrestore.model.features``), so training sees exactly what inference will.  Two targets
are stored: ``levels``, the clean excerpt's band levels relative to the degraded frame's
reference level, and ``ratios``, in the bands above the cutoff, the log10 ratio of the clean
energy to the energy band replication copies there (``genrestore.stages.bwe.patch_bins``),
both smoothed over ``RATIO_SMOOTH_FRAMES`` frames.  The loss masks keep only bands the clean
track really has (below its own measured cutoff), frames that are not silent and, for the
ratios, bands above the cutoff with something copied into them.  Every ``FRAME_STRIDE``-th
frame is kept (neighbours are nearly the same row) and the inputs are stored as float16.

    python -m training.pairs --cache DIR          # writes DIR/pairs/{train,validation}.npz
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from genrestore.analysis import estimate_cutoff_hz
from genrestore.degrade import Degradation, degrade
from genrestore.model.features import (
    BAND_EDGES_HZ,
    LOG_FLOOR,
    RATIO_SMOOTH_FRAMES,
    RELATIVE_RANGE,
    copied_energies,
    fraction_above,
    frame_levels,
    network_input,
    spectrum_energies,
)
from genrestore.spectral import stft
from genrestore.stages.bwe import patch_bins
from genrestore.stages.resample import resample

log = logging.getLogger("training.pairs")

#: Excerpt length (s) and how many excerpts per track and split.
EXCERPT_S = 8.0
EXCERPTS = {"train": 9, "validation": 4}
#: Every this many frames is a row.
FRAME_STRIDE = 2
#: The ratio target is clipped to this range (log10 power).
RATIO_RANGE = (-6.0, 3.0)
#: Frames whose degraded reference level is below this (log10 power) are left out of the loss.
SILENT_REFERENCE = -9.0
#: A clean track is a training target only if its own band reaches this far (Hz); bands above
#: a track's own cutoff are left out of its loss, so a 14 kHz track still teaches 5-14 kHz.
MIN_TARGET_CUTOFF_HZ = 12000.0


def random_chain(rng: np.random.Generator) -> Degradation:
    """One degradation drawn around what text-to-music generators and lossy files do."""
    codec = str(rng.choice(["", "mp3", "opus"], p=[0.4, 0.35, 0.25]))
    cutoff = None
    if codec == "" or rng.random() < 0.6:
        c = float(rng.uniform(5000.0, 16000.0))
        cutoff = (c, c)
    kind = str(rng.choice(["butterworth", "elliptic", "brickwall"], p=[0.5, 0.3, 0.2]))
    snr = float(rng.uniform(15.0, 45.0)) if rng.random() < 0.5 else None
    return Degradation(
        description="training draw",
        mono=bool(rng.random() < 0.6),
        rate_hz=32000,
        cutoff_hz=cutoff,
        lowpass_order=int(rng.choice([4, 8, 16, 32])),
        lowpass_kind=kind,
        codec=codec,
        bitrate_kbps=float(rng.uniform(24.0, 96.0)),
        snr_db=snr,
        noise_colour=str(rng.choice(["white", "pink"])),
        peak_dbfs=(float(rng.uniform(-12.0, 0.0)),) * 2,
        clip_fraction=float(rng.uniform(0.001, 0.01)) if rng.random() < 0.15 else 0.0,
    )


@dataclass(frozen=True)
class Pairs:
    """Network inputs, targets and loss weights, one row per channel-frame."""

    inputs: np.ndarray  # (rows, INPUT_FEATURES) float16
    levels: np.ndarray  # (rows, BANDS) float32, relative log10 levels of the clean signal
    level_weights: np.ndarray  # (rows, BANDS) float32, 0 where the clean track has no content
    ratios: np.ndarray  # (rows, BANDS) float32, log10 clean / copied energy (smoothed)
    ratio_weights: np.ndarray  # (rows, BANDS) float32, 0 where there is no ratio to learn

    FIELDS = ("inputs", "levels", "level_weights", "ratios", "ratio_weights")

    @staticmethod
    def concatenate(parts: list[Pairs]) -> Pairs:
        return Pairs(*(np.concatenate([getattr(p, f) for p in parts]) for f in Pairs.FIELDS))

    def arrays(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in Pairs.FIELDS}


def smooth_frames(values: np.ndarray, frames: int = RATIO_SMOOTH_FRAMES) -> np.ndarray:
    """Centred moving mean over ``frames`` frames (axis 0), the edges repeated."""
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(np.asarray(values, dtype=np.float64), frames, axis=0, mode="nearest")


def excerpt_pairs(clean: np.ndarray, rate: int, clean_cutoff_hz: float, chain: Degradation,
                  seed: int, stride: int = FRAME_STRIDE) -> Pairs:
    """Degrade one clean ``(channels, samples)`` excerpt and measure inputs and targets."""
    degraded, low_rate = degrade(clean, rate, chain, seed=seed)
    cutoff = estimate_cutoff_hz(degraded, low_rate)  # as the pipeline's analysis sees it
    restored_rate = resample(degraded, low_rate, rate)
    target = clean.mean(axis=0, keepdims=True) if chain.mono else clean
    n = min(target.shape[-1], restored_rate.shape[-1])
    spec_in = stft(restored_rate[:, :n], rate)
    e_in = spectrum_energies(spec_in)
    e_clean = spectrum_energies(stft(target[:, :n], rate))
    bins = patch_bins(spec_in, cutoff)
    copied = copied_energies(spec_in, *bins) if bins is not None else None
    band_ok = (BAND_EDGES_HZ[1:] <= clean_cutoff_hz).astype(np.float32)
    above = (fraction_above(cutoff) >= 0.5).astype(np.float32)
    floor = 10.0**LOG_FLOOR
    parts = []
    for c in range(e_in.shape[0]):
        own = copied[c] if copied is not None else None
        frames = frame_levels(e_in[c], cutoff, spec_in.hop / rate, own)
        clean_level = np.log10(np.maximum(e_clean[c].astype(np.float64), floor))
        rel = np.clip(clean_level - frames.reference[:, None], *RELATIVE_RANGE)
        audible = (frames.reference > SILENT_REFERENCE).astype(np.float32)
        level_w = audible[:, None] * band_ok[None, :]
        if own is None:
            ratio = np.zeros_like(rel)
            ratio_w = np.zeros_like(level_w)
        else:
            smooth_copy = smooth_frames(own)
            ratio = np.log10(np.maximum(smooth_frames(e_clean[c]), floor)
                             / np.maximum(smooth_copy, floor))
            ratio = np.clip(ratio, *RATIO_RANGE)
            ratio_w = level_w * above[None, :] * (smooth_copy > 1e3 * floor)
        keep = slice(None, None, stride)
        parts.append(Pairs(network_input(frames)[keep].astype(np.float16),
                           rel[keep].astype(np.float32), level_w[keep],
                           ratio[keep].astype(np.float32), ratio_w[keep].astype(np.float32)))
    return Pairs.concatenate(parts)


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little")


def track_pairs(args: tuple[str, str, float, str, int]) -> Pairs | None:
    """All excerpts of one track (a worker's task)."""
    path, sha, clean_cutoff, split, count = args
    try:
        info = sf.info(path)
        length = int(EXCERPT_S * info.samplerate)
        if info.frames < length:
            return None
        parts = []
        for k in range(count):
            rng = np.random.default_rng(_seed(sha, split, k))
            start = int(rng.integers(0, info.frames - length + 1))
            data, rate = sf.read(path, start=start, frames=length, dtype="float32", always_2d=True)
            clean = np.ascontiguousarray(data.T)
            if float(np.sqrt(np.mean(clean**2))) < 1e-4:  # a silent stretch teaches nothing
                continue
            chain = random_chain(rng)
            parts.append(excerpt_pairs(clean, int(rate), clean_cutoff, chain, _seed(sha, k, "chain")))
        return Pairs.concatenate(parts) if parts else None
    except (RuntimeError, ValueError, sf.LibsndfileError) as exc:
        log.warning("%s: skipped (%s)", path, exc)
        return None


def build(cache: Path, jobs: int = 2) -> dict[str, Path]:
    """Write ``cache/pairs/<split>.npz`` for the manifest's full-band tracks."""
    from training.data import read_manifest

    tracks = [t for t in read_manifest(cache) if t.cutoff_hz >= MIN_TARGET_CUTOFF_HZ]
    out_dir = cache / "pairs"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "validation"):
        chosen = sorted((t for t in tracks if t.split == split), key=lambda t: t.sha256)
        tasks = [(str(cache / t.path), t.sha256, float(t.cutoff_hz), split, EXCERPTS[split])
                 for t in chosen]
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = [r for r in pool.map(track_pairs, tasks, chunksize=1) if r is not None]
        pairs = Pairs.concatenate(results)
        path = out_dir / f"{split}.npz"
        part = path.with_suffix(".part.npz")
        np.savez(part, **pairs.arrays())
        os.replace(part, path)
        written[split] = path
        print(f"{split}: {len(chosen)} tracks, {pairs.inputs.shape[0]} channel-frames "
              f"in {time.perf_counter() - start:.0f} s -> {path}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    from training.data import default_cache

    build(args.cache or default_cache(), args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
