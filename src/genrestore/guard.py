"""The "never worse" guard: compare a restoration with its input on cheap no-reference
measures and name the stage to back off.

Checks, in order of how sure the blame is:

* **lost energy below the cutoff**: in octave bands from 125 Hz to the input's cutoff
  (at most 8 kHz), the output's long-term level, after removing the overall gain change,
  may not fall more than ``max_band_loss_db`` under the input's less its noise floor (the
  intended denoising).  Denoising (then the EQ)
  is blamed: music in those bands is not noise.
* **a rise of the noise floor** (under the input's cutoff) relative to the loudness by more
  than ``max_floor_rise_db``, to a floor less than 60 dB under the loudness:
  compression (then bandwidth extension) is blamed.
* **new clipping** or **true peaks above the ceiling**: reported, never expected (the
  limiter holds the ceiling), and no stage is blamed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from genrestore.analysis import (
    Analysis,
    clipped_runs,
    integrated_lufs,
    long_term_spectrum,
    noise_floor_dbfs,
    true_peak_dbtp,
)
from genrestore.stages import StageReport

MAX_BAND_LOSS_DB = 6.0
MAX_FLOOR_RISE_DB = 6.0
INAUDIBLE_FLOOR_DB = 60.0


@dataclass(frozen=True)
class Finding:
    """One thing the guard found; ``stage`` is the stage to back off, or ``""``."""

    stage: str
    problem: str


def _octave_levels(audio: np.ndarray, sample_rate: int, top_hz: float,
                   noise_dbfs: float = -np.inf) -> np.ndarray:
    """Octave-band levels (dB) from 125 Hz to ``top_hz``, less a white noise floor of
    ``noise_dbfs`` (what denoising is meant to remove)."""
    freqs, level = long_term_spectrum(audio, sample_rate)
    density = 10.0 ** (level / 10.0) * (freqs[1] - freqs[0])  # power per bin
    noise_per_hz = 10.0 ** (noise_dbfs / 10.0) / (sample_rate / 2.0)
    edges = 125.0 * 2.0 ** np.arange(0, 7)  # 125 Hz .. 8 kHz
    edges = edges[edges <= top_hz]
    bands = [max(float(density[(freqs >= lo) & (freqs < hi)].sum()) - noise_per_hz * (hi - lo),
                 0.0) for lo, hi in itertools.pairwise(edges)]
    return 10.0 * np.log10(np.maximum(bands, 1e-30))


@dataclass(frozen=True)
class Baseline:
    """The input's side of the comparison, measured once however often the guard checks."""

    analysis: Analysis
    octave_levels_db: np.ndarray | None  # less the noise floor; None if the band is too narrow
    floor_to_loudness_db: float | None  # noise floor under the cutoff minus the loudness


def baseline(before: np.ndarray, before_rate: int, analysis: Analysis) -> Baseline:
    """Measure the input for :func:`check`."""
    top = min(analysis.cutoff_hz, 8000.0)
    levels = (_octave_levels(before, before_rate, top, analysis.noise_floor_dbfs)
              if top >= 500.0 else None)
    floor = None
    if np.isfinite(analysis.integrated_lufs):
        floor = (noise_floor_dbfs(before, before_rate, max_hz=analysis.cutoff_hz)
                 - analysis.integrated_lufs)
    return Baseline(analysis, levels, floor)


def check(
    base: Baseline,
    after: np.ndarray,
    after_rate: int,
    reports: tuple[StageReport, ...],
    *,
    ceiling_dbtp: float | None = None,
    max_band_loss_db: float = MAX_BAND_LOSS_DB,
    max_floor_rise_db: float = MAX_FLOOR_RISE_DB,
) -> list[Finding]:
    """What got worse from the input (``base``) to ``after``; empty when nothing did."""
    analysis = base.analysis
    acted = {r.stage for r in reports if r.acted}
    findings: list[Finding] = []
    if base.octave_levels_db is not None:
        top = min(analysis.cutoff_hz, 8000.0)
        change = _octave_levels(after, after_rate, top) - base.octave_levels_db
        loss = float(np.max(np.median(change) - change, initial=0.0))
        if loss > max_band_loss_db:
            blame = next((s for s in ("denoise", "eq") if s in acted), "")
            findings.append(Finding(blame, f"lost {loss:.1f} dB in an octave under the cutoff"))
    lufs_out = integrated_lufs(after, after_rate)
    if base.floor_to_loudness_db is not None and np.isfinite(lufs_out):
        # Over the input's own band: bandwidth extension fills empty bins on purpose.
        floor_out = noise_floor_dbfs(after, after_rate, max_hz=analysis.cutoff_hz) - lufs_out
        rise = floor_out - base.floor_to_loudness_db
        # A floor still 60 dB under the loudness is inaudible, however much it rose.
        if rise > max_floor_rise_db and floor_out > -INAUDIBLE_FLOOR_DB:
            blame = next((s for s in ("dynamics", "bwe") if s in acted), "")
            findings.append(Finding(blame, f"noise floor up {rise:.1f} dB against the loudness"))
    if clipped_runs(after)[0] > analysis.clipped_runs:
        findings.append(Finding("", "new clipped runs"))
    if ceiling_dbtp is not None:
        peak = true_peak_dbtp(after)
        if peak > ceiling_dbtp + 0.05:
            findings.append(Finding("", f"true peak {peak:+.2f} dBTP above the ceiling"))
    return findings
