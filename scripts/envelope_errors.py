"""How far the extended band's levels are from the clean ones on the benchmark's clips, for
the DSP envelope and for a model's.

    python scripts/envelope_errors.py CORPUS WEIGHTS.npz [DEGRADATION]

The same 20 clips and seeds as `genrestore bench --clean CORPUS --clips 20`.  Each clip is
extended by bwe's DSP plan and by its model plan (the pipeline's resampling, no other stage);
per clip, over the 9-15 kHz bands and the frames louder than the clip's quietest fifth: the
cutoff the analysis detects, the mean signed and absolute error (dB) of the output's band
levels against the clean excerpt's, and their mean correlation in time.  Clips the bwe stage
does not extend (a detected cutoff under 6 kHz) are listed and left out of the means.
"""

import sys
from pathlib import Path

import numpy as np

from genrestore.analysis import analyze
from genrestore.bench import _seed, excerpt
from genrestore.degrade import degrade
from genrestore.io import read_audio
from genrestore.model.features import BAND_EDGES_HZ, spectrum_energies
from genrestore.spectral import stft
from genrestore.stages.bwe import BandwidthExtension, extend_spectrum
from genrestore.stages.resample import resample


def errors(out: np.ndarray, true: np.ndarray, bands: np.ndarray) -> tuple[float, float, float]:
    n = min(len(out), len(true))
    p, t = out[:n, bands], true[:n, bands]
    loud = t.mean(1) > np.percentile(t.mean(1), 20)
    err = (p - t)[loud] * 10.0
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant band has no correlation
        corr = np.nanmean([np.corrcoef(p[loud, j], t[loud, j])[0, 1] for j in range(p.shape[1])])
    return float(err.mean()), float(np.abs(err).mean()), float(corr)


if __name__ == "__main__":
    root = Path(sys.argv[1])
    stages = {"dsp": BandwidthExtension(),
              "model": BandwidthExtension(method="model", weights=sys.argv[2])}
    deg = sys.argv[3] if len(sys.argv) > 3 else "bandlimited"
    files = sorted(p for p in root.rglob("*") if p.suffix in (".ogg", ".wav"))
    picks = np.linspace(0, len(files) - 1, 20).round().astype(int)
    bands = (BAND_EDGES_HZ[:-1] >= 9000) & (BAND_EDGES_HZ[1:] <= 15000)
    rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in stages}
    for i in picks:
        audio, rate = read_audio(files[i])
        clean = excerpt(audio, rate, 10.0)
        name = str(files[i].relative_to(root))
        degraded, low = degrade(clean, rate, deg, seed=_seed(name, deg))
        cutoff = analyze(degraded, low).cutoff_hz
        spec = stft(resample(degraded, low, rate), rate)
        target = clean.mean(0, keepdims=True) if degraded.shape[0] == 1 else clean
        true = np.log10(np.maximum(spectrum_energies(stft(target, rate))[0], 1e-12))
        line = f"{name[:34]:34s} cutoff {cutoff:6.0f} Hz"
        for label, stage in stages.items():
            plan = stage.plan(spec, cutoff)
            if plan is None:
                line += "  not extended"
                break
            out = np.log10(np.maximum(spectrum_energies(extend_spectrum(spec, plan))[0], 1e-12))
            rows[label].append(errors(out, true, bands))
            bias, absolute, corr = rows[label][-1]
            line += f"  {label}: bias {bias:6.1f} abs {absolute:5.1f} dB corr {corr:.2f}"
        print(line)
    for label, r in rows.items():
        bias, absolute, corr = np.mean(r, axis=0)
        print(f"mean {label} ({len(r)} clips): bias {bias:.1f} dB, abs {absolute:.1f} dB, corr {corr:.2f}")
