"""Album mode: one gain and one limiter ceiling for a whole set of tracks, so that the album's
integrated loudness reaches the target while the tracks keep their loudness relative to one
another (a quiet interlude stays as much quieter than the loud tracks as it was).

Two passes.  :func:`measure_track` runs a track through the preset's stages up to the loudness
stage (the guard, which judges a finished output, is left to the second pass) and keeps what
the album's gain depends on: the 400 ms gating-block energies of that pre-loudness audio, its
true peak, and the loudness stage's model of its limiter.  :func:`plan_album` gates all
tracks' blocks together, as BS.1770 measures a concatenation, and picks the one gain that brings
that album loudness to the target: a plain gain when the loudest true peak of the album stays
under the ceiling with it, else the gain that the limiter models of all the tracks together
predict to reach the target, never driving the album's loudest peak more than
``max_limiting_db`` into the limiter.  Then every track is restored again with the loudness
stage set to that fixed gain (``fixed_gain = true``, ``gain_db``) and the same ceiling.
:func:`album_lufs` measures the result; restoring is deterministic, so the second pass's audio
before its loudness stage is the first pass's, unless the guard backs a stage off.

Works on arrays (:func:`restore_album`) and files (:func:`restore_album_files`); the CLI's
``restore --album`` runs the same functions over its worker pool.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrestore.analysis import gated_lufs, gating_blocks, true_peak
from genrestore.errors import ParameterError
from genrestore.io import read_audio, validate_audio
from genrestore.parallel import one_blas_thread
from genrestore.pipeline import (
    FileResult,
    RestoreResult,
    _chosen_preset,
    restore_file,
    run_pipeline,
)
from genrestore.preset import DEFAULT_PRESET, Overrides, Preset
from genrestore.stages.loudness import LimiterModel, Loudness, limiter_model, solve_gain
from genrestore.stages.match import resolve_references

log = logging.getLogger(__name__)

#: Without a ``max_limiting_db`` cap, no gain drives the album's loudest true peak more than this
#: far over the ceiling (the loudness stage's own bound).
MAX_DRIVE_DB = 24.0
#: The album figure lands within this of the target (the loudness stage's tolerance).
TOLERANCE_LU = 0.2


@dataclass(frozen=True)
class AlbumTrack:
    """What the album's gain depends on, for one track (from :func:`measure_track`)."""

    input_blocks: np.ndarray  # gating-block energies of the input as read
    blocks: np.ndarray  # gating-block energies of the audio the loudness stage would get
    true_peak: float  # linear true peak of that audio
    model: LimiterModel  # the loudness stage's limiter model of that audio


@dataclass(frozen=True)
class AlbumPlan:
    """The album's one gain and what it is expected to do (:func:`plan_album`)."""

    tracks: int
    gain_db: float
    input_lufs: float  # the album's loudness as read
    pre_loudness_lufs: float  # before the loudness stage
    predicted_lufs: float  # after the gain and the limiter (exact when nothing is limited)
    target_lufs: float
    ceiling_dbtp: float
    limited: bool  # the gain drives the album's loudest true peak over the ceiling
    max_limiting_db: float  # the loudness stage's cap on the drive (0: MAX_DRIVE_DB)
    #: "" when the target is expected to be reached; else "cap" (``max_limiting_db``) or
    #: "limiter" (more gain no longer makes the album louder) or "silent".
    not_reached_because: str = ""

    def summary(self, output_lufs: float | None = None) -> str:
        """One line: ``album: 3 tracks, -19.3 -> -14.0 LUFS (target -14), one gain +5.5 dB,
        ceiling -1 dBTP``; ``output_lufs`` is the measured album figure (else the predicted)."""
        after = self.predicted_lufs if output_lufs is None else output_lufs
        text = (f"album: {self.tracks} track{'s' if self.tracks != 1 else ''}, "
                f"{self.input_lufs:.1f} -> {after:.1f} LUFS (target {self.target_lufs:g}), "
                f"one gain {self.gain_db:+.1f} dB, ceiling {self.ceiling_dbtp:g} dBTP"
                + (", limited" if self.limited else ""))
        if self.not_reached_because == "cap":
            text += (f" (target not reached: limiting capped at "
                     f"{self.max_limiting_db or MAX_DRIVE_DB:g} dB)")
        elif self.not_reached_because == "limiter":
            text += " (target not reached: the limiter is saturated)"
        elif self.not_reached_because == "silent":
            text += " (silent: no gain)"
        return text

    def overrides(self) -> dict[str, dict[str, float | bool]]:
        """The loudness stage parameters that apply this plan (``load_preset`` overrides)."""
        return {"loudness": {"fixed_gain": True, "gain_db": round(self.gain_db, 2)}}


def album_lufs(blocks: Sequence[np.ndarray]) -> float:
    """Integrated loudness of several tracks as one programme: their 400 ms gating-block
    energies (:func:`~genrestore.analysis.gating_blocks`) gated together, as BS.1770 measures
    the tracks played one after the other (the few blocks that would straddle two tracks
    aside).  ``-inf`` when nothing passes the gates."""
    kept = [np.asarray(b, dtype=np.float64) for b in blocks]
    return gated_lufs(np.concatenate(kept)) if kept else float("-inf")


def loudness_stage(preset: Preset) -> Loudness:
    """The preset's loudness stage (:class:`ParameterError` when it has none)."""
    for stage in preset.stages:
        if isinstance(stage, Loudness):
            return stage
    raise ParameterError(f"preset {preset.name} has no loudness stage: album mode sets "
                         "its gain")


def _before_loudness(preset: Preset) -> Preset:
    """The preset's stages up to its loudness stage (the last one), without the guard."""
    return dataclasses.replace(preset, stages=tuple(s for s in preset.stages
                                                    if not isinstance(s, Loudness)),
                               guard=False)


@one_blas_thread
def measure_track(audio: np.ndarray, sample_rate: int, preset: Preset, *,
                  output_rate_hz: int = 44100) -> AlbumTrack:
    """Pass 1 for one track, ``(channels, samples)`` or 1-D audio: run ``preset``'s stages
    before its loudness stage and measure what :func:`plan_album` needs."""
    stage = loudness_stage(preset)
    x = validate_audio(audio, sample_rate)
    run = run_pipeline(x, sample_rate, _before_loudness(preset), output_rate_hz=output_rate_hz)
    model = limiter_model(run.audio, run.sample_rate, ceiling_dbtp=stage.ceiling_dbtp,
                          release_ms=stage.release_ms)
    return AlbumTrack(gating_blocks(x, sample_rate), gating_blocks(run.audio, run.sample_rate),
                      true_peak(run.audio), model)


def measure_track_file(source: str | os.PathLike[str], preset: Preset, *,
                       output_rate_hz: int = 44100) -> AlbumTrack:
    """:func:`measure_track` of a file (errors name it, as :func:`~genrestore.io.read_audio`'s)."""
    audio, rate = read_audio(source)
    return measure_track(audio, rate, preset, output_rate_hz=output_rate_hz)


def plan_album(tracks: Sequence[AlbumTrack], preset: Preset) -> AlbumPlan:
    """The one gain that brings the album of ``tracks`` to ``preset``'s loudness target with
    its ceiling (see the module's text)."""
    stage = loudness_stage(preset)
    target, ceiling = stage.target_lufs, stage.ceiling_dbtp
    input_lufs = album_lufs([t.input_blocks for t in tracks])
    pre = album_lufs([t.blocks for t in tracks])
    plan = AlbumPlan(len(tracks), 0.0, input_lufs, pre, pre, target, ceiling, False,
                     stage.max_limiting_db, "silent")
    peak = max((t.true_peak for t in tracks), default=0.0)
    if not np.isfinite(pre) or peak <= 0.0:
        return plan
    free = ceiling - 20.0 * np.log10(peak)  # the most gain that limits no track
    wanted = target - pre
    if wanted <= free:  # gating is scale-free: the plain gain lands exactly
        return dataclasses.replace(plan, gain_db=wanted, predicted_lufs=target,
                                   not_reached_because="")
    cap = free + (stage.max_limiting_db or MAX_DRIVE_DB)
    # The models read a little loud; anchor them at the free gain, where the truth is known.
    # A track shorter than one 400 ms gating block has none (as gating_blocks measures it),
    # though its model keeps one for the loudness stage's sake: it is left out here too.
    gated = [t for t in tracks if t.blocks.size]
    offset = pre + free - album_lufs([t.model.block_energies(free) for t in gated])

    def predict(gain_db: float) -> float:
        return album_lufs([t.model.block_energies(gain_db) for t in gated]) + offset

    gain, level = solve_gain(predict, target, free, cap)
    why = ""
    if level < target - TOLERANCE_LU:
        why = "cap" if gain >= cap - 0.5 and predict(cap) > predict(cap - 1.0) + 0.1 else "limiter"
    return dataclasses.replace(plan, gain_db=gain, predicted_lufs=level, limited=True,
                               not_reached_because=why)


def album_preset(preset: Preset, plan: AlbumPlan) -> Preset:
    """``preset`` with its loudness stage set to the album's fixed gain (pass 2)."""
    stage = loudness_stage(preset)
    fixed = dataclasses.replace(stage, fixed_gain=True, gain_db=round(plan.gain_db, 2))
    return dataclasses.replace(preset, stages=tuple(fixed if s is stage else s
                                                    for s in preset.stages))


@dataclass(frozen=True)
class AlbumResult:
    """:func:`restore_album`: each track's result, the plan, and the album's loudness after."""

    results: tuple[RestoreResult, ...]
    plan: AlbumPlan
    output_lufs: float


def _chosen(preset: str | os.PathLike[str] | Preset, overrides: Overrides | None,
            target: str | None) -> Preset:
    """The preset as :func:`genrestore.pipeline.restore` chooses it, with its reference
    tracks read (a match stage's reference sets the loudness target the album plan aims at,
    as it does for a single file)."""
    return resolve_references(_chosen_preset(preset, overrides, target))


def restore_album(clips: Sequence[tuple[np.ndarray, int]],
                  preset: str | os.PathLike[str] | Preset = DEFAULT_PRESET, *,
                  output_rate_hz: int = 44100, target: str | None = None,
                  overrides: Overrides | None = None) -> AlbumResult:
    """Restore ``clips`` (``(audio, sample_rate)`` pairs) as one album: both passes in this
    process.  ``preset``, ``target`` and ``overrides`` as for
    :func:`~genrestore.pipeline.restore`."""
    chosen = _chosen(preset, overrides, target)
    tracks = [measure_track(audio, rate, chosen, output_rate_hz=output_rate_hz)
              for audio, rate in clips]
    plan = plan_album(tracks, chosen)
    fixed = album_preset(chosen, plan)
    results = tuple(run_pipeline(audio, rate, fixed, output_rate_hz=output_rate_hz)
                    for audio, rate in clips)
    output = album_lufs([gating_blocks(r.audio, r.sample_rate) for r in results])
    return AlbumResult(results, plan, output)


def output_album_lufs(paths: Sequence[str | os.PathLike[str]]) -> float:
    """:func:`album_lufs` of written files, read back."""
    blocks = []
    for path in paths:
        audio, rate = read_audio(path)
        blocks.append(gating_blocks(audio, rate))
    return album_lufs(blocks)


@dataclass(frozen=True)
class AlbumFilesResult:
    """:func:`restore_album_files`: each file's result, the plan, and the album's loudness
    read back from the written files."""

    results: tuple[FileResult, ...]
    plan: AlbumPlan
    output_lufs: float


def restore_album_files(pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
                        preset: str | os.PathLike[str] | Preset = DEFAULT_PRESET, *,
                        output_rate_hz: int = 44100, bits: str = "24",
                        file_format: str | None = None, overwrite: bool = False,
                        target: str | None = None,
                        overrides: Overrides | None = None) -> AlbumFilesResult:
    """Restore ``(source, destination)`` pairs as one album, one file at a time (the CLI's
    ``restore --album`` runs the same passes on its worker pool); arguments as for
    :func:`~genrestore.pipeline.restore_file`.  Every source is protected from being written."""
    chosen = _chosen(preset, overrides, target)
    sources = [Path(src) for src, _ in pairs]
    tracks = [measure_track_file(src, chosen, output_rate_hz=output_rate_hz) for src in sources]
    plan = plan_album(tracks, chosen)
    fixed = album_preset(chosen, plan)
    results = tuple(restore_file(src, dst, preset=fixed, output_rate_hz=output_rate_hz,
                                 bits=bits, file_format=file_format, overwrite=overwrite,
                                 protect=sources)
                    for src, dst in pairs)
    return AlbumFilesResult(results, plan, output_album_lufs([r.destination for r in results]))
