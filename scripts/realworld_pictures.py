"""Before/after spectrograms of the band that bandwidth extension fills, on real generator
clips (issue 10, point 5: does the new band look like music: no tonal lines copied up at
wrong pitches, no flicker at the frame rate, no edge at the old cutoff?).

    python scripts/realworld_pictures.py CLIP [CLIP ...] --out docs/realworld [--preset auto]

Each clip is restored in memory with the preset (to 44.1 kHz, as ``genrestore restore``
does) and one picture per clip is written to ``--out`` (JPEG): the input (resampled to 44.1 kHz, so
both share one frequency axis, its level raised to the output's loudness) above the output,
on a linear frequency axis from 2 kHz under the detected cutoff to 22 kHz, 46 ms frames, one
colour range for both, the detected cutoff dashed.  Needs matplotlib (the ``report`` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from genrestore.analysis import integrated_lufs
from genrestore.io import read_audio
from genrestore.pipeline import load_preset, run_pipeline
from genrestore.spectral import stft
from genrestore.stages.resample import resample

OUTPUT_RATE_HZ = 44100
N_FFT = 2048
RANGE_DB = 80.0
TOP_HZ = 22050.0
BELOW_CUTOFF_HZ = 2000.0


def _spectrogram_db(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(freqs_hz, power_db (bins, frames), seconds per frame)`` of the mono downmix."""
    mono = np.asarray(audio, dtype=np.float32).mean(axis=0, keepdims=True)
    spec = stft(mono, rate, n_fft=N_FFT)
    power = np.abs(spec.data[0].T) ** 2
    return spec.freqs_hz, 10.0 * np.log10(np.maximum(power, 1e-20)), spec.hop / rate


def picture(path: Path, out: Path, preset_name: str) -> Path:
    """Restore ``path`` with ``preset_name`` and write its before/after picture into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    audio, rate = read_audio(path)
    result = run_pipeline(audio, rate, load_preset(preset_name), output_rate_hz=OUTPUT_RATE_HZ)
    cutoff = result.analysis.cutoff_hz
    before = audio if rate == OUTPUT_RATE_HZ else resample(audio, rate, OUTPUT_RATE_HZ)
    gain_db = (integrated_lufs(result.audio, OUTPUT_RATE_HZ)
               - integrated_lufs(before, OUTPUT_RATE_HZ))
    if not np.isfinite(gain_db):
        gain_db = 0.0
    freqs, a, frame_s = _spectrogram_db(before, OUTPUT_RATE_HZ)
    _, b, _ = _spectrogram_db(result.audio, OUTPUT_RATE_HZ)
    a = a + gain_db
    low = max(0.0, min(cutoff, TOP_HZ) - BELOW_CUTOFF_HZ)
    rows = (freqs >= low) & (freqs <= TOP_HZ)
    vmax = float(np.percentile(np.concatenate([a[rows], b[rows]]), 99.9))
    figure = Figure(figsize=(10, 6.4), dpi=100, layout="constrained")
    acted = [r.stage for r in result.reports if r.acted]
    for k, (title, data) in enumerate((("input (resampled, level matched)", a),
                                       (f"restored with {preset_name}: " + ", ".join(acted), b))):
        ax = figure.add_subplot(2, 1, k + 1)
        extent = (0.0, data.shape[1] * frame_s, freqs[rows][0] / 1000.0,
                  freqs[rows][-1] / 1000.0)
        image = ax.imshow(data[rows], origin="lower", aspect="auto", extent=extent,
                          cmap="magma", vmin=vmax - RANGE_DB, vmax=vmax,
                          interpolation="nearest")
        if cutoff < TOP_HZ:
            ax.axhline(cutoff / 1000.0, color="white", linestyle="--", linewidth=0.8)
        ax.set_ylabel("kHz")
        ax.set_title(f"{path.name}: {title}", fontsize=9)
        if k == 1:
            ax.set_xlabel("seconds")
            figure.colorbar(image, ax=figure.axes, label="dB", shrink=0.8)
    figure.suptitle(f"detected cutoff {cutoff / 1000:.1f} kHz (dashed)", fontsize=9)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{path.stem}.jpg"
    figure.savefig(target, pil_kwargs={"quality": 85})  # photographic: JPEG is 4x smaller
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="auto")
    args = parser.parse_args()
    for clip in args.clips:
        print(picture(clip, args.out, args.preset))


if __name__ == "__main__":
    main()
