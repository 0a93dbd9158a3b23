"""Which stage makes `auto` worse than `none` on a bench pair: restore the pair's degraded
excerpt with `none`, `auto`, and `auto` less one stage at a time (declip, denoise, bwe, eq,
dynamics; the loudness stage with its limiting capped at 3 dB instead of removed, since it is
always last), and print ViSQOL, LSD and SI-SDR against the clean excerpt, as `genrestore
bench` measures them, plus ViSQOL's per-band similarity (NSIM) in its top gammatone bands.

    python scripts/never_worse_stages.py CORPUS CLIP:DEGRADATION [CLIP:DEGRADATION ...]

CLIP is the bench's name, e.g. ``wesnoth/underground.ogg`` (relative to CORPUS); the
excerpt and the degradation seed are the bench's (`excerpt`, `_seed`).
"""
import dataclasses
import sys
from pathlib import Path

import numpy as np
from scipy import signal

from genrestore.analysis import analyze, effective_bandwidth_hz
from genrestore.bench import BENCH_RATES_HZ, _seed, excerpt
from genrestore.degrade import degrade
from genrestore.io import read_audio
from genrestore.metrics import VISQOL_RATE_HZ, _visqol_api, align, full_reference
from genrestore.pipeline import load_preset, run_pipeline
from genrestore.preset import Preset
from genrestore.stages.resample import resample

#: ViSQOL's gammatone bands (audio mode: 32, 50 Hz to 24 kHz) shown per band: the top ones.
TOP_BANDS = 6


def _band_nsim(ref: np.ndarray, est: np.ndarray, rate: int, max_hz: float) -> np.ndarray:
    """ViSQOL's per-band NSIM (``fvnsim``) on the signals `full_reference` gives it."""
    ref, est = align(ref, est, rate)
    if max_hz < 0.95 * rate / 2.0:
        sos = signal.butter(8, max_hz, fs=rate, output="sos")
        ref, est = signal.sosfiltfilt(sos, ref, axis=-1), signal.sosfiltfilt(sos, est, axis=-1)
    mono = [resample(s.mean(axis=0, keepdims=True).astype(np.float32), rate, VISQOL_RATE_HZ)[0]
            for s in (ref, est)]
    result = _visqol_api().measure_from_arrays(mono[0].astype(np.float64),
                                               mono[1].astype(np.float64), VISQOL_RATE_HZ)
    return np.asarray(result.fvnsim)


def _variants() -> dict[str, Preset]:
    auto = load_preset("auto")
    out = {"none": load_preset("none"), "auto": auto}
    for name in ("declip", "denoise", "bwe", "eq", "dynamics"):
        out[f"-{name}"] = dataclasses.replace(
            auto, stages=tuple(s for s in auto.stages if s.name != name))
    out["lim<=3dB"] = load_preset("auto", {"loudness": {"max_limiting_db": 3.0}})
    return out


def main(corpus: Path, cases: list[str]) -> None:
    variants = _variants()
    for case in cases:
        name, degradation = case.split(":")
        audio, rate = read_audio(corpus / name)
        clean = excerpt(audio, rate, 10.0)
        degraded, in_rate = degrade(clean, rate, degradation, seed=_seed(name, degradation))
        if rate not in BENCH_RATES_HZ:  # the bench's reference: 44.1 kHz from any other rate
            clean, rate = resample(clean, rate, 44100), 44100
        max_hz = max(effective_bandwidth_hz(clean, rate), 10000.0)
        info = analyze(degraded, in_rate)
        print(f"== {case}: reference judged to {max_hz:.0f} Hz; input cutoff "
              f"{info.cutoff_hz:.0f} Hz, SNR {info.snr_db:.1f} dB, {info.clipped_runs} clipped "
              f"runs, LRA {info.loudness_range_lu:.1f} LU, peak {info.sample_peak_dbfs:+.1f} dBFS, "
              f"{info.integrated_lufs:.1f} LUFS")
        print(f"{'variant':10s} {'ViSQOL':>6s} {'LSD':>6s} {'LSD>8k':>6s} {'SI-SDR':>6s}  "
              f"NSIM of the top {TOP_BANDS} bands  [stages that acted]")
        for label, preset in variants.items():
            result = run_pipeline(degraded, in_rate, preset, output_rate_hz=rate)
            f = full_reference(clean, result.audio, rate, visqol=True, max_hz=max_hz)
            nsim = _band_nsim(clean, result.audio, rate, max_hz)[-TOP_BANDS:]
            acted = ",".join(r.stage for r in result.reports if r.acted and r.stage != "resample")
            print(f"{label:10s} {f['visqol_moslqo']:6.3f} {f['lsd']:6.3f} {f['lsd_high']:6.3f} "
                  f"{f['si_sdr_db']:6.1f}  {' '.join(f'{v:5.2f}' for v in nsim)}  [{acted}]",
                  flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
