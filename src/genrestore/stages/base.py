"""What every stage shares: the context it runs in, the report it returns, the protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from genrestore.analysis import Analysis
from genrestore.spectral import Spectrogram, istft, stft


@dataclass(frozen=True)
class Context:
    """Read-only facts a stage may use: the input's analysis and the output rate, and, for a
    file restored in segments (:mod:`genrestore.stream`), what a stage would measure on its
    whole input (``long_term_power``: ``bwe``'s input's mean power per STFT bin;
    ``input_levels_db``: ``dynamics``' input's 100 ms RMS levels; ``side_sums``: the sums
    ``stereo`` solves its side gain from)."""

    analysis: Analysis
    output_rate_hz: int
    long_term_power: np.ndarray | None = field(default=None, repr=False, compare=False)
    input_levels_db: np.ndarray | None = field(default=None, repr=False, compare=False)
    side_sums: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: The index, in the whole file's STFT, of the first frame of the audio a stage is given
    #: (0 unless the file is restored in segments): frame-numbered phases follow the file.
    frame_offset: int = 0


@dataclass(frozen=True)
class StageReport:
    """What a stage did, in one short phrase (``summary``) and in numbers (``details``)."""

    stage: str
    acted: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Stage(Protocol):
    """A stage maps ``(audio, sample_rate)`` to new audio and rate, plus a report."""

    name: ClassVar[str]

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]: ...


class SpectralStage:
    """Mixin for stages that work on the shared STFT.

    Subclasses implement :meth:`apply_spectrum`; the pipeline runs consecutive spectral
    stages inside one analysis/synthesis, and :meth:`apply` runs a stage on its own.
    """

    name: ClassVar[str]

    def apply_spectrum(self, spec: Spectrogram, context: Context) -> tuple[Spectrogram, StageReport]:
        raise NotImplementedError

    def apply(
        self, audio: np.ndarray, sample_rate: int, context: Context
    ) -> tuple[np.ndarray, int, StageReport]:
        spec, report = self.apply_spectrum(stft(audio, sample_rate), context)
        if not report.acted:
            return audio, sample_rate, report
        return istft(spec), sample_rate, report


def skipped(name: str, why: str, **details: Any) -> StageReport:
    """A report for a stage that decided not to act."""
    return StageReport(name, False, f"{name} skipped ({why})", dict(details))


#: Decisions that switch a stage off by its own parameters, reported as they are (the
#: others read "STAGE skipped (why)").
_OFF = ("denoise off", "eq flat")


def decision(stage: Any, context: Context, sample_rate: int) -> tuple[Any, StageReport | None]:
    """Ask :mod:`genrestore.policy` whether ``stage`` acts on this clip: ``(its Decision, None)``
    when it does (the decision carries the stage with the parameters it runs with, and the
    figures behind it), ``(its Decision, the skip report)`` when not."""
    from genrestore.policy import decide

    said = decide(stage, context.analysis, output_rate_hz=context.output_rate_hz,
                  rate_hz=sample_rate)
    if said.acts:
        return said, None
    if said.why in _OFF or said.why.endswith(" Hz kept"):
        return said, StageReport(stage.name, False, said.why, dict(said.details))
    return said, skipped(stage.name, said.why, **said.details)
