"""Write N MusicGen-like clips (the synthetic song, each with its own seed, degraded by the
``demo`` chain: mono, 32 kHz, band-limited, light hiss) into a folder, for the batch
throughput figure in the README:

    python scripts/batch_clips.py 100 /tmp/clips --seconds 10
    genrestore restore /tmp/clips -o /tmp/restored      # prints clips per minute

``--clipped 2.5`` scales each clip so that 2.5 % of its samples lie beyond full scale and
clips them there (flat tops at +-1), for the clipped figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from genrestore.degrade import degrade
from genrestore.synth import render_song


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clipped", type=float, default=0.0, metavar="PERCENT",
                        help="clip this percentage of each clip's samples at full scale")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for seed in range(args.count):
        clip, rate = degrade(render_song(44100, args.seconds, seed=seed), 44100, "demo", seed=seed)
        if args.clipped > 0:
            level = float(np.quantile(np.abs(clip), 1.0 - args.clipped / 100.0))
            clip = np.clip(clip / level, -1.0, 1.0).astype(np.float32)
        sf.write(args.folder / f"clip{seed:04d}.wav", clip.T, rate, subtype="FLOAT")


if __name__ == "__main__":
    main()
