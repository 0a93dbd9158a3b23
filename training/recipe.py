"""The whole recipe in one command: fetch the Debian music, build the pairs, train, export.

    python -m training.recipe [--cache DIR] [--out src/genrestore/model/envelope.npz]

Each step is also its own module (``training.data``, ``training.pairs``, ``training.train``);
a step whose output is already in the cache is reused (``--fresh`` rebuilds the pairs).  The
seeds are fixed, so the same cache, machine and library versions give the same weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "genrestore" / "model" / "envelope.npz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--fresh", action="store_true", help="rebuild the pairs")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the pair workers; torch sets its own
    from training import data, pairs, train

    cache = args.cache or data.default_cache()
    start = time.perf_counter()
    data.main(["--cache", str(cache)])
    print(f"[recipe] data ready after {time.perf_counter() - start:.0f} s", flush=True)
    if args.fresh or not (cache / "pairs" / "validation.npz").exists():
        pairs.build(cache)
    print(f"[recipe] pairs ready after {time.perf_counter() - start:.0f} s", flush=True)
    train_args = ["--cache", str(cache), "--out", str(args.out)]
    if args.steps:
        train_args += ["--steps", str(args.steps)]
    train.main(train_args)
    print(f"[recipe] done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
