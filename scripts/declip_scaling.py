"""How declip's time grows with the clip's length (issue 11: linear, at least 30x real time).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/declip_scaling.py corpus/wesnoth/battle-epic.ogg

The file's first channel, at 32 kHz, is repeated to 1 and to 10 minutes and clipped where
2.5 % of its samples are flat; prints the seconds and the real-time factor of each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from genrestore.io import read_audio
from genrestore.stages import declip, resample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="any audio file genrestore reads")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--fraction", type=float, default=0.025, help="share of samples clipped")
    args = parser.parse_args()
    audio, rate = read_audio(args.file)
    mono = resample(audio[:1], rate, 32000)
    for minutes in args.minutes:
        n = int(minutes * 60 * 32000)
        x = np.tile(mono, (1, n // mono.shape[1] + 1))[:, :n]
        level = float(np.quantile(np.abs(x), 1.0 - args.fraction))
        clipped = np.clip(x, -level, level)
        start = time.perf_counter()
        _, runs = declip(clipped)
        spent = time.perf_counter() - start
        print(f"{minutes:g} min: {spent:.1f} s, {minutes * 60 / spent:.0f}x real time, "
              f"{runs} runs rebuilt")


if __name__ == "__main__":
    main()
