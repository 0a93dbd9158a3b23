"""Delivery targets: the integrated loudness and true-peak ceiling of each platform or standard,
in one frozen table (``--target NAME``; ``load_preset(..., target=NAME)``).

A target only sets the loudness stage's ``target_lufs`` and ``ceiling_dbtp``; ``--set
loudness.target_lufs=...`` (an override) still wins.  Light to import (no numpy): the CLI lists
the names in its help.

Where each figure comes from (``Target.source``).  Only the standards (EBU R 128, AES TD1004 and
Apple's podcast requirements) and Spotify publish both figures as a specification.  For the
other music services the loudness is the *normalisation reference* their players turn tracks
to, as reported from measurements or by the service to the press, not a delivery requirement:
a file at that loudness is played back without a gain change.  Where a service states no
true-peak ceiling, the ceiling is AES TD1008's -1 dBTP (headroom for the lossy encoders every
one of them streams through), except Amazon Music, for which -2 dBTP is the figure mastering
guides give.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from genrestore.errors import ParameterError


@dataclass(frozen=True)
class Target:
    """One delivery target: integrated loudness (BS.1770), true-peak ceiling, and the source
    of both figures."""

    name: str
    integrated_lufs: float
    true_peak_dbtp: float
    source: str

    def overrides(self) -> dict[str, dict[str, float]]:
        """The loudness stage parameters this target sets (``load_preset`` overrides)."""
        return {"loudness": {"target_lufs": self.integrated_lufs,
                             "ceiling_dbtp": self.true_peak_dbtp}}


_TD1008_PEAK = "; ceiling: AES TD1008's -1 dBTP (none published by the service)"

_ROWS = (
    Target("spotify", -14.0, -1.0,
           "Spotify for Artists, 'Loudness normalization': tracks are played at -14 LUFS "
           "(ITU BS.1770); masters should stay below -1 dBTP (-2 dBTP when louder than -14 LUFS)"),
    Target("apple", -16.0, -1.0,
           "Apple Music Sound Check: no figure published; -16 LUFS is its normalisation "
           "reference as measured by third parties" + _TD1008_PEAK),
    Target("youtube", -14.0, -1.0,
           "YouTube: no figure published; -14 LUFS is the reference its 'Stats for nerds' "
           "content loudness is reported against (a normalisation reference, loud uploads "
           "are turned down only)" + _TD1008_PEAK),
    Target("amazon", -14.0, -2.0,
           "Amazon Music: no figure published; -14 LUFS is its normalisation reference as "
           "measured by third parties; -2 dBTP is the ceiling mastering guides give for it"),
    Target("deezer", -15.0, -1.0,
           "Deezer: no figure published; -15 LUFS is its normalisation reference as measured "
           "by third parties" + _TD1008_PEAK),
    Target("tidal", -14.0, -1.0,
           "TIDAL: normalises to -14 LUFS by ITU BS.1770, as TIDAL told Meterplugs (2016)"
           + _TD1008_PEAK),
    Target("soundcloud", -14.0, -1.0,
           "SoundCloud: no normalisation level published (it long did not normalise); "
           "-14 LUFS is the common streaming reference (Spotify's, TIDAL's), so a file is as "
           "loud there as on them" + _TD1008_PEAK),
    Target("ebu-r128", -23.0, -1.0,
           "EBU R 128 (v4.0, 2020): programme loudness -23 LUFS, maximum true-peak level "
           "-1 dBTP (broadcast)"),
    Target("podcast", -16.0, -1.0,
           "AES TD1004.1.15-10 (streaming, network file playback: at most -16 LUFS) and "
           "Apple Podcasts' requirements (-16 LUFS +-1 dB, true peak at most -1 dBFS)"),
)

#: Every target by name (read-only).
TARGETS = MappingProxyType({t.name: t for t in _ROWS})


def target_names() -> list[str]:
    """The names ``--target`` accepts, in table order."""
    return list(TARGETS)


def get_target(name: str) -> Target:
    """The target called ``name`` (:class:`ParameterError` naming the choices otherwise)."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ParameterError(f"unknown target {name!r}: use one of "
                             f"{', '.join(TARGETS)}") from None
