"""Make clean music sound like a text-to-music generator's output, reproducibly.

Each step is a small function; a :class:`Degradation` chains them in the order a generator's
output differs from a studio master: downmix to mono, resample to 32 kHz, band limit, a lossy
codec at a low bitrate, hiss, a gain that may push float samples above full scale, hard
clipping.  Every step is optional.  Randomness (the drawn cutoff, gain and noise) comes only
from the explicit ``seed``.

The codec steps use PyAV (``pip install 'genrestore[bench]'``), which bundles libmp3lame and
libopus; everything else needs only the core dependencies.  Named chains are in
:data:`DEGRADATIONS`; ``demo`` is the codec-free chain behind ``genrestore demo``.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import numpy as np
from scipy import signal

from genrestore.errors import ParameterError
from genrestore.stages.resample import resample

CODECS = ("", "mp3", "opus")
NOISE_COLOURS = ("white", "pink")


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels: ``(channels, n) -> (1, n)``."""
    return np.asarray(audio, dtype=np.float32).mean(axis=0, keepdims=True)


#: Low-pass shapes: ``butterworth`` (maximally flat, the roll-off set by ``order``),
#: ``elliptic`` (a codec-like steep edge with 0.5 dB ripple and 80 dB stop band) and
#: ``brickwall`` (every FFT bin above the cutoff set to zero, as some resamplers and codecs do).
LOWPASS_KINDS = ("butterworth", "elliptic", "brickwall")


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float, *, order: int = 16,
            kind: str = "butterworth") -> np.ndarray:
    """Zero-phase low-pass (a codec's band limit) of the given ``kind`` (see
    :data:`LOWPASS_KINDS`); ``order`` is the total order of the forward-backward pair."""
    if kind not in LOWPASS_KINDS:
        raise ParameterError(f"low-pass kind must be one of {', '.join(LOWPASS_KINDS)}, not {kind!r}")
    x = np.asarray(audio, dtype=np.float32)
    if kind == "brickwall":
        spectrum = np.fft.rfft(x, axis=-1)
        spectrum[..., np.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate) > cutoff_hz] = 0.0
        return np.fft.irfft(spectrum, n=x.shape[-1], axis=-1).astype(np.float32)
    half = max(1, order // 2)
    if kind == "elliptic":
        sos = signal.ellip(half, 0.25, 80.0, cutoff_hz, fs=sample_rate, output="sos")
    else:
        sos = signal.butter(half, cutoff_hz, fs=sample_rate, output="sos")
    return signal.sosfiltfilt(sos, x, axis=-1).astype(np.float32)


def noise(shape: tuple[int, ...], *, level_dbfs: float, colour: str = "white", seed: int = 0
          ) -> np.ndarray:
    """Gaussian noise with RMS ``level_dbfs``: ``white`` (flat) or ``pink`` (-3 dB/octave)."""
    if colour not in NOISE_COLOURS:
        raise ParameterError(f"noise colour must be one of {', '.join(NOISE_COLOURS)}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if colour == "pink":
        spectrum = np.fft.rfft(x, axis=-1)
        k = np.arange(spectrum.shape[-1], dtype=np.float64)
        k[0] = 1.0
        x = np.fft.irfft(spectrum / np.sqrt(k), n=shape[-1], axis=-1)
    x *= 10.0 ** (level_dbfs / 20.0) / max(float(np.sqrt(np.mean(x * x))), 1e-30)
    return x.astype(np.float32)


def add_noise(audio: np.ndarray, *, level_dbfs: float, colour: str = "white", seed: int = 0
              ) -> np.ndarray:
    """Add noise whose RMS is ``level_dbfs`` (see :func:`noise`)."""
    x = np.asarray(audio, dtype=np.float32)
    return x + noise(x.shape, level_dbfs=level_dbfs, colour=colour, seed=seed)


def set_peak(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale so the sample peak sits at ``peak_dbfs`` (above 0 makes float overs)."""
    x = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(x), initial=0.0))
    return x if peak == 0.0 else (x * (10.0 ** (peak_dbfs / 20.0) / peak)).astype(np.float32)


def hard_clip(audio: np.ndarray, fraction: float) -> np.ndarray:
    """Clip symmetrically at the level that flattens ``fraction`` of the samples, then
    restore the original peak level (clipped runs stay flat, as after a mastering gain)."""
    x = np.asarray(audio, dtype=np.float32)
    if not 0.0 < fraction < 0.5:
        raise ParameterError("clip fraction must be between 0 and 0.5")
    level = float(np.quantile(np.abs(x), 1.0 - fraction))
    peak = float(np.max(np.abs(x)))
    if level <= 0.0:
        return x
    return (np.clip(x, -level, level) * (peak / level)).astype(np.float32)


def codec_roundtrip(audio: np.ndarray, sample_rate: int, codec: str, bitrate_kbps: float
                    ) -> np.ndarray:
    """Encode with a lossy codec at ``bitrate_kbps`` (constant bitrate) and decode again, in
    memory through PyAV.  ``mp3`` (LAME) runs at the clip's rate (32/44.1/48 kHz); ``opus``
    works at 48 kHz, so the clip is resampled there and back.  The encoder delay is removed,
    so the result lines up with the input and has its length."""
    if codec not in CODECS[1:]:
        raise ParameterError(f"codec must be one of {', '.join(CODECS[1:])}, not {codec!r}")
    try:
        import av
    except ImportError as exc:
        raise ParameterError("codec degradations need PyAV: pip install 'genrestore[bench]'") from exc
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if x.shape[0] > 2:
        raise ParameterError("codec degradations take mono or stereo audio")
    rate = 48000 if codec == "opus" else sample_rate
    if rate != sample_rate:
        x = resample(x, sample_rate, rate)
    layout = "mono" if x.shape[0] == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg" if codec == "opus" else "mp3") as container:
        stream = container.add_stream("libopus" if codec == "opus" else "libmp3lame",
                                      rate=rate, layout=layout)
        stream.bit_rate = int(bitrate_kbps * 1000)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=layout)
        frame.rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, "r") as container:
        decoded = [f.to_ndarray() for f in container.decode(audio=0)]
    y = np.concatenate(decoded, axis=-1).astype(np.float32)
    if y.shape[0] != x.shape[0]:  # packed or mismatched layout: keep the channel count
        y = y.reshape(-1, x.shape[0]).T if y.shape[0] == 1 else y[: x.shape[0]]
    y = y[:, : x.shape[-1]]
    if y.shape[-1] < x.shape[-1]:
        y = np.pad(y, ((0, 0), (0, x.shape[-1] - y.shape[-1])))
    return resample(y, rate, sample_rate) if rate != sample_rate else y


@dataclass(frozen=True)
class Degradation:
    """One degradation chain; steps run in field order and each can be switched off.

    Ranges ``(low, high)`` are drawn uniformly from ``seed`` when applied.
    """

    description: str = ""
    mono: bool = False
    rate_hz: int = 32000
    cutoff_hz: tuple[float, float] | None = None  # zero-phase low-pass, see lowpass()
    lowpass_order: int = 16
    lowpass_kind: str = "butterworth"
    codec: str = ""  # "", "mp3" or "opus"
    bitrate_kbps: float = 64.0
    noise_dbfs: float | None = None  # absolute RMS level of the added noise ...
    snr_db: float | None = None  # ... or relative to the clip's RMS
    noise_colour: str = "white"
    peak_dbfs: tuple[float, float] | None = None  # gain to this sample peak (overs allowed)
    clip_fraction: float = 0.0  # hard clipping of this fraction of samples

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ParameterError(f"codec must be one of {', '.join(CODECS[1:])} or empty")
        if self.noise_colour not in NOISE_COLOURS:
            raise ParameterError(f"noise_colour must be one of {', '.join(NOISE_COLOURS)}")
        if self.lowpass_kind not in LOWPASS_KINDS:
            raise ParameterError(f"lowpass_kind must be one of {', '.join(LOWPASS_KINDS)}")
        if self.lowpass_order < 2:
            raise ParameterError("lowpass_order must be at least 2")
        if self.noise_dbfs is not None and self.snr_db is not None:
            raise ParameterError("give noise_dbfs or snr_db, not both")

    def replace(self, **changes: object) -> Degradation:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


DEGRADATIONS: dict[str, Degradation] = {
    "musicgen_like": Degradation(
        "mono, 32 kHz, low-pass drawn in 8-12 kHz, MP3 48 kbit/s, hiss at -60 dBFS, "
        "peak drawn in -3..+3 dBFS",
        mono=True, cutoff_hz=(8000.0, 12000.0), codec="mp3", bitrate_kbps=48.0,
        noise_dbfs=-60.0, peak_dbfs=(-3.0, 3.0)),
    "bandlimited": Degradation("32 kHz, 8 kHz low-pass only", cutoff_hz=(8000.0, 8000.0)),
    "noisy": Degradation("32 kHz, white noise at 25 dB SNR", snr_db=25.0),
    "clipped": Degradation("32 kHz, 2.5 % of samples hard-clipped", clip_fraction=0.025),
    "mp3_stereo": Degradation("stereo, 32 kHz, MP3 64 kbit/s", codec="mp3", bitrate_kbps=64.0),
    "demo": Degradation(
        "genrestore demo: mono, 32 kHz, 10 kHz low-pass, hiss at -60 dBFS, peak +2 dBFS "
        "(no codec, so no optional dependency)",
        mono=True, cutoff_hz=(10000.0, 10000.0), noise_dbfs=-60.0, peak_dbfs=(2.0, 2.0)),
}


def get_degradation(name: str) -> Degradation:
    """The named chain from :data:`DEGRADATIONS` (``ParameterError`` if unknown)."""
    try:
        return DEGRADATIONS[name]
    except KeyError:
        raise ParameterError(
            f"unknown degradation {name!r} (known: {', '.join(DEGRADATIONS)})") from None


def degrade(
    audio: np.ndarray,
    sample_rate: int,
    degradation: str | Degradation,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Apply a named or given :class:`Degradation` to ``(channels, samples)`` clean audio.

    Returns ``(audio, rate)``: float32 at ``degradation.rate_hz``, possibly above full scale.
    """
    d = get_degradation(degradation) if isinstance(degradation, str) else degradation
    rng = np.random.default_rng(seed)
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if d.mono:
        x = to_mono(x)
    rate = d.rate_hz or sample_rate
    if rate != sample_rate:
        x = resample(x, sample_rate, rate)
    if d.cutoff_hz is not None:
        x = lowpass(x, rate, float(rng.uniform(*d.cutoff_hz)), order=d.lowpass_order,
                    kind=d.lowpass_kind)
    if d.codec:
        x = codec_roundtrip(x, rate, d.codec, d.bitrate_kbps)
    if d.peak_dbfs is not None:
        peak = float(rng.uniform(*d.peak_dbfs))
        x = set_peak(x, peak - 0.5)  # the noise below adds a little
    noise_seed = int(rng.integers(2**31))
    if d.noise_dbfs is not None or d.snr_db is not None:
        if d.noise_dbfs is not None:
            level = d.noise_dbfs
        else:
            level = 10.0 * np.log10(max(float(np.mean(x.astype(np.float64) ** 2)), 1e-30)) - d.snr_db
        x = add_noise(x, level_dbfs=level, colour=d.noise_colour, seed=noise_seed)
    if d.peak_dbfs is not None:
        x = set_peak(x, peak)
    if d.clip_fraction > 0.0:
        x = hard_clip(x, d.clip_fraction)
    return x.astype(np.float32), rate
