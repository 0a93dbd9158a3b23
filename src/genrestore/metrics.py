"""Quality metrics: full-reference (restored against a clean original) and no-reference.

Full-reference metrics first :func:`align` the estimate to the reference (the lag of the
cross-correlation peak, within ``max_lag_s``) and match its gain by least squares, so a
delay or a loudness change is not counted as damage.  When the channel counts differ
(a mono restoration of a stereo original) both are compared as mono downmixes.

LSD follows the NU-Wave / AudioSR papers: per STFT frame (2048-point Hann, hop 512),
``sqrt(mean over bins of (log10 P_ref - log10 P_est)^2)`` with ``P = |X|^2 + 1e-8``, then
the mean over frames.  It is in units of log10 power ("bels"), *without* the factor of 10:
multiply by 10 for dB.  This is the scale those papers report (about 1-2 for an
8 kHz-limited input, under 1 for a good restoration).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import signal

from genrestore import analysis as an
from genrestore.errors import ParameterError

log = logging.getLogger(__name__)

LSD_N_FFT = 2048
LSD_HOP = 512
_LSD_EPS = 1e-8
MRSTFT_SIZES = (512, 1024, 2048)
VISQOL_RATE_HZ = 48000


def _as_2d(audio: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(audio, dtype=np.float64))


def align(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    *,
    max_lag_s: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Delay- and gain-match ``estimate`` to ``reference``; returns both trimmed to their
    overlap as float64 ``(channels, samples)``.

    The lag is the peak of the cross-correlation of the mono downmixes within
    ``max_lag_s``; the gain is the least-squares scalar ``<ref, est> / <est, est>``.
    """
    ref, est = _as_2d(reference), _as_2d(estimate)
    if ref.shape[0] != est.shape[0]:
        ref, est = ref.mean(axis=0, keepdims=True), est.mean(axis=0, keepdims=True)
    a, b = ref.mean(axis=0), est.mean(axis=0)
    max_lag = round(max_lag_s * sample_rate)
    n = sfft.next_fast_len(a.size + b.size)
    xcorr = sfft.irfft(sfft.rfft(a, n) * np.conj(sfft.rfft(b, n)), n)
    # xcorr[k] = sum a[t + k] b[t]: positive k means the estimate leads the reference.
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([xcorr[: max_lag + 1], xcorr[n - max_lag :]])
    lag = int(lags[int(np.argmax(values))])
    if lag > 0:
        ref = ref[:, lag:]
    elif lag < 0:
        est = est[:, -lag:]
    length = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[:, :length], est[:, :length]
    energy = float(np.sum(est * est))
    gain = float(np.sum(ref * est)) / energy if energy > 0 else 1.0
    return ref, est * gain


def _power_spectrogram(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``(channels, frames, bins)`` power of a Hann STFT (frames centred, zero padded)."""
    padded = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop]
    window = signal.get_window("hann", n_fft)
    spec = sfft.rfft(frames * window, axis=-1)
    return spec.real**2 + spec.imag**2


def _band(sample_rate: int, n_fft: int, low_hz: float, high_hz: float | None) -> slice:
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    top = sample_rate / 2.0 if high_hz is None else high_hz
    chosen = np.flatnonzero((freqs >= low_hz) & (freqs <= top))
    if chosen.size == 0:
        raise ParameterError(f"no STFT bins between {low_hz:g} and {top:g} Hz")
    return slice(int(chosen[0]), int(chosen[-1]) + 1)


def _lsd_aligned(ref: np.ndarray, est: np.ndarray, sample_rate: int,
                 bands: dict[str, tuple[float, float | None]]) -> dict[str, float]:
    p_ref = np.log10(_power_spectrogram(ref, LSD_N_FFT, LSD_HOP) + _LSD_EPS)
    p_est = np.log10(_power_spectrogram(est, LSD_N_FFT, LSD_HOP) + _LSD_EPS)
    diff = (p_ref - p_est) ** 2
    out = {}
    for name, (low, high) in bands.items():
        part = diff[..., _band(sample_rate, LSD_N_FFT, low, high)]
        out[name] = float(np.mean(np.sqrt(part.mean(axis=-1))))
    return out


def lsd(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    *,
    low_hz: float = 0.0,
    high_hz: float | None = None,
    max_lag_s: float = 0.05,
) -> float:
    """Log-spectral distance (NU-Wave/AudioSR definition, log10 power, see module docs)
    over the bins from ``low_hz`` to ``high_hz`` (default: Nyquist), after :func:`align`."""
    ref, est = align(reference, estimate, sample_rate, max_lag_s=max_lag_s)
    return _lsd_aligned(ref, est, sample_rate, {"lsd": (low_hz, high_hz)})["lsd"]


def _mrstft_aligned(ref: np.ndarray, est: np.ndarray) -> float:
    total = 0.0
    for n_fft in MRSTFT_SIZES:
        mag_ref = np.sqrt(_power_spectrogram(ref, n_fft, n_fft // 4))
        mag_est = np.sqrt(_power_spectrogram(est, n_fft, n_fft // 4))
        convergence = np.linalg.norm(mag_ref - mag_est) / max(np.linalg.norm(mag_ref), 1e-12)
        log_l1 = np.mean(np.abs(np.log(mag_ref + 1e-7) - np.log(mag_est + 1e-7)))
        total += float(convergence + log_l1)
    return total / len(MRSTFT_SIZES)


def mrstft_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, *,
                    max_lag_s: float = 0.05) -> float:
    """Multi-resolution STFT distance: spectral convergence plus mean log-magnitude L1
    (natural log), averaged over 512/1024/2048-point Hann STFTs (hop 1/4), after
    :func:`align`.  0 for identical signals."""
    ref, est = align(reference, estimate, sample_rate, max_lag_s=max_lag_s)
    return _mrstft_aligned(ref, est)


def _si_sdr_aligned(ref: np.ndarray, est: np.ndarray) -> float:
    ref, est = ref - ref.mean(axis=-1, keepdims=True), est - est.mean(axis=-1, keepdims=True)
    scale = np.sum(ref * est) / max(float(np.sum(ref * ref)), 1e-30)
    target = scale * ref
    noise = est - target
    return float(10.0 * np.log10(max(float(np.sum(target**2)), 1e-30)
                                 / max(float(np.sum(noise**2)), 1e-30)))


def si_sdr(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, *,
           max_lag_s: float = 0.05) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), after
    :func:`align`; capped at 300 dB for identical signals."""
    ref, est = align(reference, estimate, sample_rate, max_lag_s=max_lag_s)
    return min(_si_sdr_aligned(ref, est), 300.0)


@functools.lru_cache(maxsize=1)
def _visqol_api() -> Any:
    try:
        from visqol import VisqolApi
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ParameterError(
            "ViSQOL needs the optional extra: pip install 'genrestore[bench]'") from exc
    api = VisqolApi()
    api.create(mode="audio")
    return api


def visqol_available() -> bool:
    """Whether the optional ``visqol-python`` package can be imported."""
    try:
        import visqol  # noqa: F401
    except ImportError:
        return False
    return True


def visqol_moslqo(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, *,
                  max_lag_s: float = 0.05) -> float:
    """ViSQOL v3 audio mode MOS-LQO (1-5) through ``visqol-python``, on the mono downmixes
    resampled to 48 kHz, after :func:`align`."""
    from genrestore.stages.resample import resample

    ref, est = align(reference, estimate, sample_rate, max_lag_s=max_lag_s)
    ref, est = ref.mean(axis=0, keepdims=True), est.mean(axis=0, keepdims=True)
    if sample_rate != VISQOL_RATE_HZ:
        ref = resample(ref.astype(np.float32), sample_rate, VISQOL_RATE_HZ)
        est = resample(est.astype(np.float32), sample_rate, VISQOL_RATE_HZ)
    result = _visqol_api().measure_from_arrays(
        np.asarray(ref[0], dtype=np.float64), np.asarray(est[0], dtype=np.float64), VISQOL_RATE_HZ)
    return float(result.moslqo)


def full_reference(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    *,
    split_hz: float = 8000.0,
    visqol: bool = False,
    max_lag_s: float = 0.05,
    max_hz: float | None = None,
) -> dict[str, float]:
    """Every full-reference metric from one alignment: ``lsd``, ``lsd_low`` (below
    ``split_hz``), ``lsd_high`` (above), ``mrstft``, ``si_sdr_db`` and, when ``visqol``,
    ``visqol_moslqo``.

    ``max_hz`` judges only the band a band-limited reference has: both signals are
    low-passed there (zero phase) and the LSD bands end there.
    """
    if reference.ndim > 2 or estimate.ndim > 2:
        raise ParameterError("metrics take (channels, samples) arrays")
    ref, est = align(reference, estimate, sample_rate, max_lag_s=max_lag_s)
    if max_hz is not None and max_hz < 0.95 * sample_rate / 2.0:
        sos = signal.butter(8, max_hz, fs=sample_rate, output="sos")
        ref, est = signal.sosfiltfilt(sos, ref, axis=-1), signal.sosfiltfilt(sos, est, axis=-1)
    top = None if max_hz is None else max(max_hz, split_hz + 1000.0)
    out = _lsd_aligned(ref, est, sample_rate, {
        "lsd": (0.0, top), "lsd_low": (0.0, split_hz), "lsd_high": (split_hz, top)})
    out["mrstft"] = _mrstft_aligned(ref, est)
    out["si_sdr_db"] = min(_si_sdr_aligned(ref, est), 300.0)
    if visqol:
        out["visqol_moslqo"] = visqol_moslqo(ref, est, sample_rate, max_lag_s=0.0)
    return out


def no_reference(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """No-reference figures of one clip: ``integrated_lufs``, ``loudness_range_lu``,
    ``true_peak_dbtp``, ``clipped_fraction``, ``bandwidth_hz`` (60 dB rule),
    ``noise_floor_dbfs``, ``stereo_width_db`` and ``interchannel_correlation``."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    _, clipped = an.clipped_runs(x)
    return {
        "integrated_lufs": an.integrated_lufs(x, sample_rate),
        "loudness_range_lu": an.loudness_range_lu(x, sample_rate),
        "true_peak_dbtp": an.true_peak_dbtp(x),
        "clipped_fraction": clipped / x.size,
        "bandwidth_hz": an.effective_bandwidth_hz(x, sample_rate),
        "noise_floor_dbfs": an.noise_floor_dbfs(x, sample_rate),
        "stereo_width_db": an.stereo_width_db(x),
        "interchannel_correlation": an.interchannel_correlation(x),
    }
