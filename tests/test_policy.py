"""The policy layer (genrestore.policy): which stages act on a clip and why, decided once from
its analysis; the stages and ``restore --dry-run`` read the same decisions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import chord, sine
from genrestore.analysis import analyze
from genrestore.cli import main
from genrestore.pipeline import load_preset, run_pipeline
from genrestore.policy import plan

RATE = 32000


def _noisy_bandlimited(seconds: float = 4.0) -> np.ndarray:
    """A chord low-passed at 8 kHz, then hiss 30 dB under it: denoise and bwe should act."""
    from scipy import signal

    rng = np.random.default_rng(0)
    x = signal.sosfilt(signal.butter(10, 8000, fs=RATE, output="sos"), chord(RATE, seconds)[:1])
    x = x + 10 ** (-30 / 20) * np.std(x) * rng.standard_normal(x.shape)
    return x.astype(np.float32)


def test_the_plan_reads_the_analysis() -> None:
    x = _noisy_bandlimited()
    decisions = {d.name: d for d in plan(load_preset("auto"), analyze(x, RATE),
                                         output_rate_hz=44100)}
    assert decisions["denoise"].acts  # 30 dB SNR is under auto's 40 dB
    assert decisions["bwe"].acts
    assert decisions["bwe"].why.startswith("cutoff ")
    assert decisions["resample"].acts
    assert not decisions["declip"].acts
    assert decisions["declip"].why == "no clipped runs"
    assert not decisions["stereo"].acts
    clean = chord(RATE, 4.0)[:1]
    quiet = {d.name: d for d in plan(load_preset("auto"), analyze(clean, RATE),
                                     output_rate_hz=RATE)}
    assert not quiet["denoise"].acts
    assert "under the music" in quiet["denoise"].why
    assert not quiet["resample"].acts


def test_what_the_plan_says_is_what_the_pipeline_does() -> None:
    x = _noisy_bandlimited()
    preset = load_preset("auto")
    decided = {d.name: d.acts for d in plan(preset, analyze(x, RATE), output_rate_hz=44100)}
    ran = {r.stage: r.acted for r in run_pipeline(x, RATE, preset).reports if r.stage != "guard"}
    for name in ("declip", "resample", "denoise", "bwe", "stereo", "eq", "dynamics"):
        assert ran[name] == decided[name], name


def test_the_high_pass_decision_comes_from_the_input_spectrum() -> None:
    x = chord(44100, 3.0)
    preset = load_preset("auto")

    def eq(y: np.ndarray) -> str:
        (d,) = [d for d in plan(preset, analyze(y, 44100), output_rate_hz=44100)
                if d.name == "eq"]
        return f"{d.acts} {d.why}"

    assert eq(x) == "False no DC offset or rumble"
    assert eq(x + 0.01) == "True DC offset"
    assert eq(x + sine(15, 44100, 3.0, 0.1)) == "True rumble"


def test_dry_run_prints_each_files_plan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", _noisy_bandlimited()[0], RATE)
    clipped = np.clip(chord(RATE, 3.0)[0] * 3.0, -0.5, 0.5)
    sf.write(folder / "b.wav", clipped, RATE)
    assert main(["restore", str(folder), "-o", f"{tmp_path / 'out'}/", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "    denoise   acts  (noise floor" in text
    assert "    declip    acts  (" in text
    assert "clipped runs)" in text
    assert not (tmp_path / "out").exists()
    assert main(["restore", str(folder), "-o", f"{tmp_path / 'out'}/", "--dry-run",
                 "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in records] == ["would restore"] * 2
    stages = {d["stage"]: d["acts"] for d in records[1]["stages"]}
    assert stages["declip"]
    assert stages["loudness"]


@pytest.mark.parametrize(("case", "preset", "overrides"), [
    ("silence", "auto", {}),
    ("silence", "full", {}),
    ("short", "auto", {}),
    ("music", "gentle", {"eq": {"highpass_hz": 0.0}}),
    ("music", "auto", {"stereo": {"enabled": True}}),
    ("clipped", "auto", {}),
])
def test_the_plan_is_what_runs_on_odd_clips(case: str, preset: str, overrides: dict) -> None:
    """Silence, a 0.3 s clip, a flat eq, a mono clip made stereo, clipped music: every stage
    the plan says acts acts, and every one it says skips stays idle (declip excepted where its
    runs are too long to rebuild, which only its own input shows)."""
    x = {"silence": np.zeros((1, 3 * RATE), np.float32),
         "short": chord(RATE, 0.3)[:1],
         "music": _noisy_bandlimited(),
         "clipped": np.clip(chord(RATE, 3.0)[:1] * 3.0, -0.5, 0.5)}[case]
    chosen = load_preset(preset, overrides)
    plain = dataclasses.replace(chosen, guard=False)  # the guard may back off a planned stage
    decided = {d.name: d.acts for d in plan(plain, analyze(x, RATE), output_rate_hz=44100)}
    ran = {r.stage: r.acted for r in run_pipeline(x, RATE, plain).reports}
    assert ran == decided


def test_a_match_with_no_strength_or_no_reference_is_planned_idle(tmp_path: Path) -> None:
    from genrestore.stages.match import resolve_references, with_reference

    ref = tmp_path / "ref.wav"
    sf.write(ref, chord(RATE, 2.0)[0], RATE)
    x = _noisy_bandlimited()
    for strength in (0.0, 0.5):
        chosen = resolve_references(with_reference(load_preset("gentle"), ref, strength=strength))
        decided = {d.name: d.acts for d in plan(chosen, analyze(x, RATE), output_rate_hz=44100)}
        ran = {r.stage: r.acted for r in run_pipeline(x, RATE, chosen).reports}
        assert decided["match"] is (strength > 0)
        assert ran["match"] is decided["match"]


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
def test_a_bass_note_or_silence_is_not_rumble(rate: int) -> None:
    """A 36 Hz bass note leaks no energy under 30 Hz on the fine low-frequency spectrum (the
    main spectrum's 0.1 s segments would), and silence has none to speak of."""
    preset = load_preset("auto")

    def eq(y: np.ndarray) -> bool:
        (d,) = [d for d in plan(preset, analyze(y, rate), output_rate_hz=44100) if d.name == "eq"]
        return d.acts

    bass = chord(rate, 3.0)[:1] + sine(36, rate, 3.0, 0.3)[:1]
    assert not eq(bass)
    assert not eq(np.zeros((1, 3 * rate), np.float32))
    assert eq(bass + sine(15, rate, 3.0, 0.1)[:1])
