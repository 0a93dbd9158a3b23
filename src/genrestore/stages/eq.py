"""Spectral shaping: a high-pass against rumble and DC, plus optional shelves and tilt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genrestore.errors import ParameterError
from genrestore.filters import butter2_highpass, sosfiltfilt
from genrestore.io import as_channels
from genrestore.stages.base import Context, StageReport, decision

TILT_PIVOT_HZ = 1000.0
#: A 2nd-order Butterworth designed at this fraction of the wanted corner and run forwards
#: and backwards is -3.01 dB at the corner: its squared power response
#: ``(w^4 / (1 + w^4))^2`` is 1/2 where ``w^4 = 1 / (sqrt(2) - 1)``.
HIGHPASS_DESIGN_RATIO = float((np.sqrt(2.0) - 1.0) ** 0.25)


def shape_spectrum(
    audio: np.ndarray,
    sample_rate: int,
    *,
    highpass_hz: float = 30.0,
    low_shelf_hz: float = 120.0,
    low_shelf_db: float = 0.0,
    high_shelf_hz: float = 8000.0,
    high_shelf_db: float = 0.0,
    tilt_db: float = 0.0,
) -> np.ndarray:
    """Filter ``(channels, samples)`` or 1-D (mono) audio; returns ``(channels, samples)``.

    ``highpass_hz`` (0 = off) is a zero-phase high-pass, -3.0 dB at ``highpass_hz``: a
    2nd-order Butterworth run forwards and backwards (genrestore.filters), which squares its
    magnitude (a 4th-order Linkwitz-Riley response: 24 dB/octave below the corner, -0.2 dB
    an octave above it), so it is designed at ``highpass_hz * (sqrt(2) - 1) ** 0.25`` to
    put the -3 dB point where asked.  It removes DC and rumble without the phase shift a
    minimum-phase filter puts on the bass (pedalboard's high-pass is first order, too
    gentle against rumble).  The shelves are pedalboard's biquads; ``tilt_db`` adds a low
    shelf of ``-tilt_db/2`` and a high shelf of ``+tilt_db/2`` around 1 kHz (positive
    brightens).  The parameters follow :class:`Equalizer`'s rules.
    """
    Equalizer(highpass_hz=highpass_hz, low_shelf_hz=low_shelf_hz, low_shelf_db=low_shelf_db,
              high_shelf_hz=high_shelf_hz, high_shelf_db=high_shelf_db, tilt_db=tilt_db)
    x = as_channels(audio)
    if highpass_hz > 0:
        sos = butter2_highpass(highpass_hz * HIGHPASS_DESIGN_RATIO, sample_rate)
        x = sosfiltfilt(sos, x, axis=-1).astype(np.float32)
    if not (low_shelf_db or high_shelf_db or tilt_db):
        return x
    import pedalboard  # where it is used: a high-pass alone does not load it

    plugins: list[pedalboard.Plugin] = []
    if low_shelf_db:
        plugins.append(pedalboard.LowShelfFilter(cutoff_frequency_hz=low_shelf_hz,
                                                 gain_db=low_shelf_db))
    if high_shelf_db:
        plugins.append(pedalboard.HighShelfFilter(cutoff_frequency_hz=high_shelf_hz,
                                                  gain_db=high_shelf_db))
    if tilt_db:
        plugins.append(pedalboard.LowShelfFilter(cutoff_frequency_hz=TILT_PIVOT_HZ,
                                                 gain_db=-tilt_db / 2, q=0.5))
        plugins.append(pedalboard.HighShelfFilter(cutoff_frequency_hz=TILT_PIVOT_HZ,
                                                  gain_db=tilt_db / 2, q=0.5))
    return pedalboard.Pedalboard(plugins)(np.ascontiguousarray(x), sample_rate)


@dataclass(frozen=True)
class Equalizer:
    """Stage form of :func:`shape_spectrum`."""

    name: ClassVar[str] = "eq"
    highpass_hz: float = 30.0
    low_shelf_hz: float = 120.0
    low_shelf_db: float = 0.0
    high_shelf_hz: float = 8000.0
    high_shelf_db: float = 0.0
    tilt_db: float = 0.0
    #: When true, high-pass only clips with a DC offset or rumble (energy under
    #: ``highpass_hz`` within 30 dB of the whole clip's).
    adaptive: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.highpass_hz <= 500.0:
            raise ParameterError("eq.highpass_hz must be between 0 and 500")
        for key in ("low_shelf_db", "high_shelf_db", "tilt_db"):
            if not -12.0 <= getattr(self, key) <= 12.0:
                raise ParameterError(f"eq.{key} must be between -12 and 12")
        if not 20.0 <= self.low_shelf_hz <= 2000.0 or not 1000.0 <= self.high_shelf_hz <= 20000.0:
            raise ParameterError("eq shelf frequencies are out of range")

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        said, declined = decision(self, context, sample_rate)
        if declined is not None:
            return audio, sample_rate, declined
        params = {k: getattr(said.stage, k) for k in ("highpass_hz", "low_shelf_hz",
                                                      "low_shelf_db", "high_shelf_hz",
                                                      "high_shelf_db", "tilt_db")}
        why = said.details.get("highpass_reason", "")
        out = shape_spectrum(audio, sample_rate, **params)
        parts = [f"hp {params['highpass_hz']:g} Hz" + (f" ({why})" if why else "")
                 ] if params["highpass_hz"] else []
        parts += [f"{k.removesuffix('_db').replace('_', ' ')} {params[k]:+g} dB"
                  for k in ("low_shelf_db", "high_shelf_db", "tilt_db") if params[k]]
        acted = bool(parts)
        summary = "eq " + ", ".join(parts) if acted else "eq flat"
        return out, sample_rate, StageReport(self.name, acted, summary, params)
