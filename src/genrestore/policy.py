"""Which stages act on a clip, and why: the one place that decides, from the clip's analysis.

A preset says what may be done (its stages and their parameters, ``adaptive`` among them); the
policy reads the input's :class:`~genrestore.analysis.Analysis` and says, for each stage,
whether it acts, with which parameters, and why.  The stages ask it (:func:`decide`) before
they work, and ``genrestore restore --dry-run`` prints it for every file
(:func:`plan`) without restoring anything.  Nothing here touches audio: every rule reads
figures measured once, on the input, so a plan is the same whether the clip is restored at once
or a block at a time.

The rules, stage by stage:

* ``declip``: acts when the analysis found clipped runs.
* ``resample``: acts when the rate differs from the output rate.
* ``denoise``: off at strength 0 or no attenuation; with ``adaptive``, skips a clip with no
  measurable noise floor, or whose floor lies ``min_snr_db`` or more under its level.
* ``bwe``: off at strength 0; with ``adaptive``, skips a full-band input; skips a cutoff under
  :data:`~genrestore.stages.bwe.MIN_CUTOFF_HZ` or within 8 % of the band's top.
* ``stereo``: acts only when enabled and the input is mono (or two identical channels).
* ``eq``: flat (no high-pass, no shelf) does nothing; with ``adaptive``, high-passes only a
  clip with a DC offset or rumble (energy under the corner within 30 dB of the whole clip's,
  read from the input's fine low-frequency spectrum); the shelves act whenever they are set.
* ``dynamics``: off at ratio 1 and on silence; with ``adaptive``, skips a clip whose loudness
  range is already ``min_range_lu`` or less.
* ``loudness``: acts, except on silence or a clip under 0.4 s (no integrated loudness:
  its peaks are only limited).
* ``match``: acts when it has a reference and a strength above 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from genrestore.analysis import Analysis
    from genrestore.preset import Preset
    from genrestore.stages import Stage

#: ``eq``'s adaptive high-pass acts on a DC offset beyond this (fraction of full scale)...
DC_LIMIT = 1e-3
#: ... or on energy under its corner within this many dB of the clip's total.
RUMBLE_DB = -30.0


@dataclass(frozen=True)
class Decision:
    """What the policy says about one stage: whether it ``acts``, ``why`` (a short phrase,
    empty when it simply acts), the stage with the parameters it runs with (``stage``), and
    figures behind the decision (``details``)."""

    stage: Stage
    acts: bool
    why: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.stage.name

    def line(self) -> str:
        """``bwe      acts  (cutoff 9.8 kHz)`` / ``denoise  skip  (noise floor 62 dB under
        the music)``: one line of a plan."""
        return f"{self.name:<9} {'acts' if self.acts else 'skip'}" + (
            f"  ({self.why})" if self.why else "")


def rumble(analysis: Analysis, corner_hz: float) -> bool:
    """Whether the input carries energy under ``corner_hz`` within :data:`RUMBLE_DB` of its
    total, on the analysis's fine low-frequency spectrum (Welch segments of 0.2 s or more,
    mean of each removed, so DC does not count, and a bass note at 36-40 Hz does not leak
    under 30 Hz); silence has none."""
    low_band = analysis.low_spectrum
    if low_band is None or not analysis.low_spectrum_total > 0.0:
        return False
    freqs, psd = low_band.freqs_hz, 10.0 ** (low_band.level_db / 10.0)
    low = float(psd[(freqs > 0) & (freqs < corner_hz)].sum())
    return low > analysis.low_spectrum_total * 10.0 ** (RUMBLE_DB / 10.0)


def highpass_reason(analysis: Analysis, corner_hz: float) -> str:
    """Why a clip needs ``eq``'s high-pass: ``"DC offset"``, ``"rumble"`` or ``""``."""
    if abs(analysis.dc_offset) > DC_LIMIT:
        return "DC offset"
    return "rumble" if rumble(analysis, corner_hz) else ""


def decide(stage: Stage, analysis: Analysis, *, output_rate_hz: int,
           rate_hz: int | None = None) -> Decision:
    """The decision for ``stage`` on a clip with this ``analysis``; ``rate_hz`` is the rate
    the stage will run at (the input's, or the output rate after ``resample``)."""
    from genrestore.stages.bwe import MIN_CUTOFF_HZ

    rate = rate_hz or analysis.sample_rate
    name = stage.name
    get = stage.__getattribute__
    if name == "declip":
        if analysis.clipped_runs == 0:
            return Decision(stage, False, "no clipped runs")
        return Decision(stage, True, f"{analysis.clipped_runs} clipped runs",
                        {"runs_found": analysis.clipped_runs})
    if name == "resample":
        if rate == output_rate_hz:
            return Decision(stage, False, f"{rate} Hz kept")
        return Decision(stage, True, f"{rate / 1000:g}->{output_rate_hz / 1000:g} kHz")
    if name == "denoise":
        if get("strength") == 0.0 or get("max_attenuation_db") == 0.0:
            return Decision(stage, False, "denoise off")
        snr = analysis.snr_db
        if get("adaptive") and not np.isfinite(analysis.noise_floor_dbfs):
            return Decision(stage, False, "no measurable noise floor (silence or pure tones)")
        if get("adaptive") and snr >= get("min_snr_db"):
            return Decision(stage, False, f"noise floor {snr:.0f} dB under the music",
                            {"snr_db": round(snr, 1)})
        return Decision(stage, True, f"noise floor {snr:.0f} dB under the music",
                        {"snr_db": round(snr, 1)})
    if name == "bwe":
        cutoff = get("cutoff_hz") or analysis.cutoff_hz
        if get("strength") == 0.0:
            return Decision(stage, False, "strength 0")
        if get("adaptive") and not get("cutoff_hz") and analysis.is_full_band:
            return Decision(stage, False, "input is full band", {"cutoff_hz": cutoff})
        top = min(get("max_freq_hz"), 0.96 * rate / 2.0)
        if cutoff < MIN_CUTOFF_HZ:
            return Decision(stage, False, f"no usable band below {MIN_CUTOFF_HZ / 1000:g} kHz",
                            {"cutoff_hz": cutoff})
        if cutoff >= 0.92 * top:
            return Decision(stage, False, f"cutoff {cutoff / 1000:.1f} kHz is full band",
                            {"cutoff_hz": cutoff})
        return Decision(stage, True, f"cutoff {cutoff / 1000:.1f} kHz", {"cutoff_hz": cutoff})
    if name == "stereo":
        if not get("enabled"):
            return Decision(stage, False, "not enabled")
        if not analysis.is_mono:
            return Decision(stage, False, "input is already stereo")
        return Decision(stage, True, "mono input")
    if name == "eq":
        shelves = any(get(k) for k in ("low_shelf_db", "high_shelf_db", "tilt_db"))
        if not get("highpass_hz") and not shelves:
            return Decision(stage, False, "eq flat")
        if get("adaptive") and get("highpass_hz"):
            why = highpass_reason(analysis, get("highpass_hz"))
            if not why:
                if not shelves:
                    return Decision(stage, False, "no DC offset or rumble")
                return Decision(dataclasses.replace(stage, highpass_hz=0.0), True,
                                "shelves only: no DC offset or rumble")
            return Decision(stage, True, why, {"highpass_reason": why})
        return Decision(stage, True)
    if name == "dynamics":
        if get("ratio") == 1.0:
            return Decision(stage, False, "ratio 1")
        if not np.isfinite(analysis.sample_peak_dbfs):
            return Decision(stage, False, "silent")
        lra = analysis.loudness_range_lu
        if get("adaptive") and lra <= get("min_range_lu"):
            return Decision(stage, False, f"loudness range {lra:.1f} LU is already even",
                            {"loudness_range_lu": round(lra, 1)})
        return Decision(stage, True, f"loudness range {lra:.1f} LU",
                        {"loudness_range_lu": round(lra, 1)})
    if name == "loudness" and not np.isfinite(analysis.integrated_lufs):
        return Decision(stage, False, "silent or shorter than 0.4 s; peaks limited only")
    if name == "match":
        if not get("reference"):
            return Decision(stage, False, "no reference")
        if get("strength") == 0.0:
            return Decision(stage, False, "strength 0")
    return Decision(stage, True)


def plan(preset: Preset, analysis: Analysis, *, output_rate_hz: int) -> tuple[Decision, ...]:
    """The decision for every stage of ``preset`` on a clip with this ``analysis``, in order
    (the rate each stage runs at follows the ``resample`` stage)."""
    rate = analysis.sample_rate
    decisions = []
    for stage in preset.stages:
        decision = decide(stage, analysis, output_rate_hz=output_rate_hz, rate_hz=rate)
        decisions.append(decision)
        if stage.name == "resample":
            rate = output_rate_hz
    return tuple(decisions)
