"""Pictures for the report: spectrograms on an ERB-rate frequency scale, their difference,
and waveform envelopes as SVG.

Spectrograms are rendered straight to JPEG (matplotlib's colour maps and ``imsave``, Agg,
no figures), so a clip costs a few tens of milliseconds.  Axes and the cutoff line are
drawn by the HTML, from :func:`erb_position`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrestore.spectral import stft

#: Picture size in pixels: columns (time) by rows (frequency).
WIDTH, HEIGHT = 720, 240
LOW_HZ = 20.0
RANGE_DB = 90.0
DIFF_RANGE_DB = 24.0
#: Spectrograms are photographic: JPEG is 5x smaller and 10x faster to encode than PNG.
_JPEG = {"quality": 88}
FREQ_TICKS_HZ = (100, 200, 500, 1000, 2000, 5000, 10000, 20000)
FRAME_S = 0.04


def erb_rate(freq_hz: np.ndarray | float) -> np.ndarray | float:
    """Glasberg and Moore's ERB-rate scale (ERB number) of a frequency."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(freq_hz, dtype=np.float64))


def erb_position(freq_hz: float, top_hz: float) -> float:
    """Height of ``freq_hz`` on the picture's frequency axis, 0 (bottom) to 1 (top)."""
    low, high = erb_rate(LOW_HZ), erb_rate(top_hz)
    return float(np.clip((erb_rate(freq_hz) - low) / (high - low), 0.0, 1.0))


def _row_edges(top_hz: float) -> np.ndarray:
    """``HEIGHT + 1`` band edges in Hz, evenly spaced in ERB rate, bottom to top."""
    erb = np.linspace(erb_rate(LOW_HZ), erb_rate(top_hz), HEIGHT + 1)
    return (10.0 ** (erb / 21.4) - 1.0) / 0.00437


def spectrogram_db(audio: np.ndarray, sample_rate: int, top_hz: float) -> np.ndarray:
    """``(HEIGHT, WIDTH)`` mean power in dB per ERB band and time column of the mono
    downmix; rows run from ``top_hz`` (row 0) down to 20 Hz.  Bands above the clip's
    Nyquist frequency are ``nan``."""
    mono = np.asarray(audio, dtype=np.float32).mean(axis=0, keepdims=True)
    # Frames of one duration at every rate, power as density per Hz: two versions of a clip
    # at different rates read the same levels.
    n_fft = 4 * round(FRAME_S * sample_rate / 4)
    spec = stft(mono, sample_rate, n_fft=n_fft)
    window_energy = float(np.sum(np.hanning(n_fft + 1)[:-1] ** 2))
    power = (np.abs(spec.data[0]) ** 2).astype(np.float64) / (window_energy * sample_rate)
    frames = power.shape[0]
    starts = np.linspace(0, frames, WIDTH + 1).astype(int)[:-1]
    columns = np.add.reduceat(power, np.minimum(starts, frames - 1), axis=0)
    counts = np.diff(np.append(np.minimum(starts, frames - 1), frames)).clip(min=1)
    columns /= counts[:, None]  # (WIDTH, bins)
    freqs = spec.freqs_hz
    cumulative = np.concatenate([np.zeros((WIDTH, 1)), np.cumsum(columns, axis=1)], axis=1)
    edges = _row_edges(top_hz)
    lo = np.searchsorted(freqs, edges[:-1], side="left")
    hi = np.searchsorted(freqs, edges[1:], side="left")
    empty = hi <= lo
    hi = np.where(empty, lo + 1, hi).clip(max=freqs.size)
    lo = np.minimum(lo, hi - 1)
    bands = (cumulative[:, hi] - cumulative[:, lo]) / (hi - lo)  # (WIDTH, HEIGHT)
    # Narrow low bands hold no bin of their own: interpolate between bins there.
    centres = np.sqrt(edges[:-1] * edges[1:])
    interpolated = np.stack([np.interp(centres, freqs, c) for c in columns])
    bands = np.where(empty[None, :], interpolated, bands)
    db = 10.0 * np.log10(np.maximum(bands, 1e-20))
    db[:, edges[:-1] >= sample_rate / 2.0] = np.nan
    return db.T[::-1]


@dataclass(frozen=True)
class PairImages:
    """File names (relative to the report folder) and the colour range used."""

    before: str
    after: str
    difference: str
    vmin_db: float
    vmax_db: float


def write_pair_images(
    before: np.ndarray,
    before_rate: int,
    after: np.ndarray,
    after_rate: int,
    folder: Path,
    stem: str,
    *,
    before_gain_db: float = 0.0,
) -> PairImages:
    """Spectrograms of ``before`` (raised by ``before_gain_db``, to match loudness) and
    ``after`` with one colour range, and the difference after minus before, as JPEGs in
    ``folder`` named after ``stem``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps
    from matplotlib import image as mimage

    top = max(before_rate, after_rate) / 2.0
    a = spectrogram_db(before, before_rate, top) + before_gain_db
    b = spectrogram_db(after, after_rate, top)
    vmax = float(np.nanpercentile(np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]]), 99.9))
    vmin = vmax - RANGE_DB
    folder.mkdir(parents=True, exist_ok=True)
    names = PairImages(f"{stem}_before.jpg", f"{stem}_after.jpg", f"{stem}_diff.jpg", vmin, vmax)
    cmap = colormaps["magma"]
    for name, data in ((names.before, a), (names.after, b)):
        mimage.imsave(folder / name, np.nan_to_num(data, nan=vmin), cmap=cmap, vmin=vmin,
                      vmax=vmax, origin="upper", pil_kwargs=_JPEG)
    difference = np.nan_to_num(b - a, nan=DIFF_RANGE_DB)  # above the old Nyquist: all new
    mimage.imsave(folder / names.difference, difference, cmap=colormaps["RdBu_r"],
                  vmin=-DIFF_RANGE_DB, vmax=DIFF_RANGE_DB, origin="upper", pil_kwargs=_JPEG)
    return names


def waveform_svg(audio: np.ndarray, *, gain_db: float = 0.0, height: int = 60) -> str:
    """An inline SVG of the min/max envelope of the mono downmix (full scale = full height;
    anything beyond is drawn red)."""
    mono = np.asarray(audio, dtype=np.float32).mean(axis=0) * np.float32(10 ** (gain_db / 20))
    starts = np.linspace(0, mono.size, WIDTH + 1).astype(int)[:-1]
    starts = np.minimum(starts, mono.size - 1)
    top = np.maximum.reduceat(mono, starts)
    bottom = np.minimum.reduceat(mono, starts)
    half = height / 2.0

    def y(v: np.ndarray) -> np.ndarray:
        return half - np.clip(v, -1.0, 1.0) * (half - 1)

    xs = np.arange(WIDTH)
    upper = " ".join(f"{x},{v:.1f}" for x, v in zip(xs, y(top), strict=True))
    lower = " ".join(f"{x},{v:.1f}" for x, v in zip(xs[::-1], y(bottom)[::-1], strict=True))
    over = np.flatnonzero((top > 1.0) | (bottom < -1.0))
    marks = "".join(f'<line x1="{x}" y1="0" x2="{x}" y2="{height}" class="over"/>' for x in over)
    return (f'<svg class="wave" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="none" '
            f'role="img" aria-label="waveform"><polygon points="{upper} {lower}"/>{marks}</svg>')
