"""How far the detected cutoff (:func:`genrestore.analysis.estimate_cutoff_hz`, what the
analysis hands bwe) is from the true one on the benchmark's degradations.

    python scripts/cutoff_errors.py CORPUS [REALWORLD]

Every file of CORPUS (the excerpt and seed `genrestore bench --clean CORPUS` uses; ``*``
marks the 20 files that `--clips 20` picks) is degraded with ``bandlimited`` and
``musicgen_like``; the true cutoff is the -3 dB point of the zero-phase low-pass the chain
drew (0.946 x the drawn corner for its Butterworth of order 16: 7.57 kHz for
``bandlimited``'s 8 kHz), and for ``musicgen_like`` at most 11.0 kHz, LAME's own low-pass at
48 kbit/s mono 32 kHz (measured on white noise: flat to 10.5 kHz, -4 dB at 11 kHz, -80 dB at
11.5 kHz).  Prints one line per file and degradation, then per degradation how many are
within 500 Hz and 1 kHz and the worst.  ``musicgen_like``'s low-pass is invisible where the
music is already under the -60 dBFS hiss there (sad, revelation, wanderer, defeat): those
read full band or the music's own edge, and count as errors.
With REALWORLD (a folder of generator clips, which have no truth) the detected cutoff of
each of its ``.wav`` and ``.mp3`` files is printed too.
"""

import sys
from pathlib import Path

import numpy as np
from scipy import signal

from genrestore.analysis import estimate_cutoff_hz
from genrestore.bench import _seed, excerpt
from genrestore.degrade import degrade, get_degradation
from genrestore.io import read_audio

LAME_48K_MONO_HZ = 11000.0


def minus_3db_hz(corner_hz: float, rate: int, order: int) -> float:
    """Where the forward-backward Butterworth of :func:`genrestore.degrade.lowpass` (total
    ``order``) is 3 dB down."""
    sos = signal.butter(max(1, order // 2), corner_hz, fs=rate, output="sos")
    freqs, response = signal.sosfreqz(sos, worN=1 << 16, fs=rate)
    return float(freqs[np.flatnonzero(np.abs(response) ** 2 >= 10 ** (-3.0 / 20.0))[-1]])


def true_cutoff(name: str, degradation: str) -> float:
    """The -3 dB point of the low-pass :func:`genrestore.degrade.degrade` draws for this clip."""
    chain = get_degradation(degradation)
    low, high = chain.cutoff_hz or (np.inf, np.inf)
    drawn = float(np.random.default_rng(_seed(name, degradation)).uniform(low, high))
    cut = minus_3db_hz(drawn, chain.rate_hz, chain.lowpass_order)
    return min(cut, LAME_48K_MONO_HZ) if degradation == "musicgen_like" else cut


if __name__ == "__main__":
    root = Path(sys.argv[1])
    files = sorted(p for p in root.rglob("*") if p.suffix in (".ogg", ".wav"))
    picks = set(np.linspace(0, len(files) - 1, 20).round().astype(int).tolist())
    errors: dict[str, list[tuple[float, str]]] = {"bandlimited": [], "musicgen_like": []}
    for i, path in enumerate(files):
        audio, rate = read_audio(path)
        clean = excerpt(audio, rate, 10.0)
        name = str(path.relative_to(root))
        for deg, found in errors.items():
            degraded, low = degrade(clean, rate, deg, seed=_seed(name, deg))
            truth = true_cutoff(name, deg)
            cutoff = estimate_cutoff_hz(degraded, low)
            found.append((cutoff - truth, name))
            mark = "*" if i in picks else " "
            print(f"{mark} {name[:36]:36s} {deg:13s} true {truth:6.0f} found {cutoff:6.0f} "
                  f"error {cutoff - truth:+6.0f}", flush=True)
    for deg, found in errors.items():
        err = np.array([e for e, _ in found])
        worst = sorted(found, key=lambda f: -abs(f[0]))[:5]
        print(f"{deg}: {np.sum(np.abs(err) <= 500)}/{err.size} within 500 Hz, "
              f"{np.sum(np.abs(err) <= 1000)}/{err.size} within 1 kHz, median |error| "
              f"{np.median(np.abs(err)):.0f} Hz; worst: "
              + ", ".join(f"{n} {e:+.0f}" for e, n in worst))
    if len(sys.argv) > 2:
        for path in sorted(p for p in Path(sys.argv[2]).iterdir() if p.suffix in (".wav", ".mp3")):
            audio, rate = read_audio(path)
            print(f"{path.name[:40]:40s} {rate} Hz cutoff {estimate_cutoff_hz(audio, rate):6.0f}")
