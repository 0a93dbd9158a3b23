"""How much a right envelope is worth: ViSQOL of `auto` with the DSP envelope against `auto`
with bwe's model path fed the clean excerpt's own band levels (an oracle, not a model).

    python scripts/envelope_oracle.py CORPUS DEGRADATION [SMOOTH_FRAMES [level|ratio]]

The same 20 clips and seeds as `genrestore bench --clean CORPUS --clips 20`.  SMOOTH_FRAMES
averages the oracle over time; `ratio` applies the clean/copied band ratio instead of levels.
"""
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

import genrestore.stages.bwe as bwe
from genrestore.analysis import effective_bandwidth_hz
from genrestore.bench import _seed, excerpt
from genrestore.degrade import degrade
from genrestore.io import read_audio
from genrestore.metrics import full_reference
from genrestore.model.features import LOG_FLOOR, spectrum_energies
from genrestore.pipeline import load_preset, run_pipeline
from genrestore.spectral import Spectrogram, stft, window_energy
from genrestore.stages.bwe import BandPlan

ORACLE: dict[str, np.ndarray] = {}
SMOOTH = int(sys.argv[3]) if len(sys.argv) > 3 else 1
MODE = sys.argv[4] if len(sys.argv) > 4 else "level"


def _ratio_levels(spec: Spectrogram, cutoff: float, stage: bwe.BandwidthExtension,
                  lv: np.ndarray) -> np.ndarray:
    """The clean/copied band ratio, smoothed over SMOOTH frames, times the copied band."""
    from genrestore.model.features import BANDS, band_index

    target, source = bwe.patch_bins(spec, cutoff, stage.max_freq_hz)
    n = min(lv.shape[1], spec.data.shape[1])
    src = np.abs(spec.data[:, :n, source]) ** 2 / np.float32(window_energy(spec.n_fft))
    band = band_index(spec.n_fft, spec.sample_rate)[target]
    band = np.where(band < 0, BANDS - 1, band)
    m = np.zeros((len(target), BANDS))
    m[np.arange(len(target)), band] = 1
    m /= np.maximum(m.sum(0), 1)
    exc = src @ m
    c = lv[:, :n] if lv.shape[0] == spec.data.shape[0] else lv[:1, :n]
    smooth_exc = np.maximum(ndimage.uniform_filter1d(exc, SMOOTH, axis=1), 1e-30)
    ratio = ndimage.uniform_filter1d(10**c, SMOOTH, axis=1) / smooth_exc
    levels = np.full((spec.data.shape[0], spec.data.shape[1], BANDS), LOG_FLOOR, np.float32)
    levels[:, :n] = np.log10(np.maximum(ratio * exc, 1e-12))
    return levels


def oracle_plan(stage: bwe.BandwidthExtension, spec: Spectrogram, cutoff: float) -> BandPlan | None:
    if stage.method == "dsp":
        return bwe.plan_extension(spec, cutoff, strength=stage.strength, max_freq_hz=stage.max_freq_hz,
                                  extra_rolloff_db_per_oct=stage.extra_rolloff_db_per_oct)
    if bwe.patch_bins(spec, cutoff, stage.max_freq_hz) is None:
        return None
    lv = ORACLE["levels"]
    if MODE == "ratio":
        levels = _ratio_levels(spec, cutoff, stage, lv)
    else:
        if SMOOTH > 1:
            lv = np.log10(ndimage.uniform_filter1d(10**lv, SMOOTH, axis=1))
        n = min(lv.shape[1], spec.data.shape[1])
        levels = np.full((spec.data.shape[0], spec.data.shape[1], lv.shape[2]), LOG_FLOOR, np.float32)
        levels[:, :n] = lv[:, :n] if lv.shape[0] == spec.data.shape[0] else lv[:1, :n]
    return bwe.plan_model_extension(spec, cutoff, levels, strength=stage.strength,
                                    max_freq_hz=stage.max_freq_hz)


def job(args: tuple[Path, str, str]) -> tuple[str, dict[str, tuple[float, float, float]]]:
    path, name, deg = args
    audio, rate = read_audio(path)
    ref = excerpt(audio, rate, 10.0)
    band = effective_bandwidth_hz(ref, rate)
    degraded, r = degrade(ref, rate, deg, seed=_seed(name, deg))
    target = ref.mean(axis=0, keepdims=True) if degraded.shape[0] == 1 else ref
    ORACLE["levels"] = np.log10(np.maximum(spectrum_energies(stft(target, rate)), 1e-12))
    out = {}
    presets = (("dsp", load_preset("auto")),
               ("oracle", load_preset("auto", {"bwe": {"method": "model"}})))
    for label, preset in presets:
        res = run_pipeline(degraded, r, preset, output_rate_hz=rate)
        f = full_reference(ref, res.audio, rate, split_hz=8000.0, visqol=True,
                           max_hz=max(band, 10000.0))
        out[label] = (f["visqol_moslqo"], f["lsd_high"], f["lsd"])
    return name, out


if __name__ == "__main__":
    bwe.BandwidthExtension.plan = oracle_plan  # the workers are forked with this in place
    root = Path(sys.argv[1])
    files = sorted(p for p in root.rglob("*") if p.suffix in (".ogg", ".wav"))
    idx = np.linspace(0, len(files) - 1, 20).round().astype(int)
    deg = sys.argv[2]
    tasks = [(files[i], str(files[i].relative_to(root)), deg) for i in idx]
    with ProcessPoolExecutor(2) as pool:
        res = list(pool.map(job, tasks))
    for label in ("dsp", "oracle"):
        v = np.array([r[1][label] for r in res]).mean(0)
        print(f"{deg} {label} visqol {v[0]:.3f} lsd_high {v[1]:.3f} lsd {v[2]:.3f}")
