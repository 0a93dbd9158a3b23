"""The restoration stages: each a documented function plus a frozen-dataclass stage.

=========  ==============================================  ==============================
name       stage class                                      function
=========  ==============================================  ==============================
declip     :class:`~genrestore.stages.declip.Declip`        :func:`declip`
denoise    :class:`~genrestore.stages.denoise.Denoise`      :func:`denoise`
resample   :class:`~genrestore.stages.resample.Resample`    :func:`resample`
bwe        :class:`~.bwe.BandwidthExtension`                :func:`extend_bandwidth`
dynamics   :class:`~.dynamics.Dynamics`                     :func:`compress`
eq         :class:`~.eq.Equalizer`                          :func:`shape_spectrum`
loudness   :class:`~.loudness.Loudness`                     :func:`normalize_loudness`
stereo     :class:`~.stereo.Stereo`                         :func:`widen`
match      :class:`~.match.Match`                           :func:`match_reference`
=========  ==============================================  ==============================

Dither (:func:`~genrestore.stages.dither.dither`) is applied when writing integer PCM.
"""

from __future__ import annotations

from genrestore.stages.base import Context, SpectralStage, Stage, StageReport
from genrestore.stages.bwe import BandwidthExtension, extend_bandwidth
from genrestore.stages.declip import Declip, declip
from genrestore.stages.denoise import Denoise, denoise
from genrestore.stages.dither import dither
from genrestore.stages.dynamics import Dynamics, compress
from genrestore.stages.eq import Equalizer, shape_spectrum
from genrestore.stages.loudness import Loudness, limit_true_peak, normalize_loudness
from genrestore.stages.match import Match, match_reference
from genrestore.stages.resample import Resample, resample
from genrestore.stages.stereo import Stereo, widen

#: Stage classes by the name a preset uses.
STAGES: dict[str, type] = {
    cls.name: cls
    for cls in (Declip, Denoise, Resample, BandwidthExtension, Stereo, Dynamics, Equalizer,
                Match, Loudness)
}

__all__ = [
    "STAGES",
    "BandwidthExtension",
    "Context",
    "Declip",
    "Denoise",
    "Dynamics",
    "Equalizer",
    "Loudness",
    "Match",
    "Resample",
    "SpectralStage",
    "Stage",
    "StageReport",
    "Stereo",
    "compress",
    "declip",
    "denoise",
    "dither",
    "extend_bandwidth",
    "limit_true_peak",
    "match_reference",
    "normalize_loudness",
    "resample",
    "shape_spectrum",
    "widen",
]
