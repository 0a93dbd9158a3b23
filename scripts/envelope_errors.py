"""How far a model's predicted band levels are from the clean ones on the benchmark's clips.

    python scripts/envelope_errors.py CORPUS WEIGHTS.npz [DEGRADATION]

The same 20 clips and seeds as `genrestore bench --clean CORPUS --clips 20`.  Per clip, over
the 9-15 kHz bands and the frames louder than the clip's quietest fifth: the cutoff the
analysis detects, the mean signed and absolute error (dB) and the mean correlation in time.
"""

import sys
from pathlib import Path

import numpy as np

from genrestore.analysis import analyze
from genrestore.bench import _seed, excerpt
from genrestore.degrade import degrade
from genrestore.io import read_audio
from genrestore.model import load_model, predict_levels
from genrestore.model.features import BAND_EDGES_HZ, spectrum_energies
from genrestore.spectral import stft
from genrestore.stages.resample import resample

if __name__ == "__main__":
    root, model = Path(sys.argv[1]), load_model(sys.argv[2])
    deg = sys.argv[3] if len(sys.argv) > 3 else "bandlimited"
    files = sorted(p for p in root.rglob("*") if p.suffix in (".ogg", ".wav"))
    picks = np.linspace(0, len(files) - 1, 20).round().astype(int)
    bands = (BAND_EDGES_HZ[:-1] >= 9000) & (BAND_EDGES_HZ[1:] <= 15000)
    rows = []
    for i in picks:
        audio, rate = read_audio(files[i])
        clean = excerpt(audio, rate, 10.0)
        name = str(files[i].relative_to(root))
        degraded, low = degrade(clean, rate, deg, seed=_seed(name, deg))
        cutoff = analyze(degraded, low).cutoff_hz
        pred = predict_levels(stft(resample(degraded, low, rate), rate), cutoff, model)[0]
        target = clean.mean(0, keepdims=True) if degraded.shape[0] == 1 else clean
        true = np.log10(np.maximum(spectrum_energies(stft(target, rate))[0], 1e-12))
        n = min(len(pred), len(true))
        p, t = pred[:n, bands], true[:n, bands]
        loud = t.mean(1) > np.percentile(t.mean(1), 20)
        err = (p - t)[loud] * 10.0
        corr = np.mean([np.corrcoef(p[loud, j], t[loud, j])[0, 1] for j in range(p.shape[1])])
        rows.append((err.mean(), np.abs(err).mean(), corr))
        print(f"{name[:34]:34s} cutoff {cutoff:6.0f} Hz  bias {err.mean():6.1f} dB  "
              f"abs {np.abs(err).mean():5.1f} dB  corr {corr:.2f}")
    bias, absolute, corr = np.mean(rows, axis=0)
    print(f"mean: bias {bias:.1f} dB, abs {absolute:.1f} dB, corr {corr:.2f}")
