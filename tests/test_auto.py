"""Issue 4: analysis of clips whose properties are known by construction, the adaptive
`auto` preset, the never-worse guard and the `analyze` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import song, white
from genrestore import guard
from genrestore.analysis import analyze
from genrestore.cli import main
from genrestore.degrade import add_noise, lowpass
from genrestore.io import write_audio
from genrestore.pipeline import load_preset, run_pipeline
from genrestore.stages import StageReport

RATE = 44100


@pytest.mark.parametrize("cutoff_hz", [6000.0, 9000.0, 12000.0])
def test_lowpassed_clip_reports_its_cutoff(cutoff_hz: float) -> None:
    a = analyze(lowpass(song(RATE, 6.0), RATE, cutoff_hz), RATE)
    assert a.cutoff_hz == pytest.approx(cutoff_hz, abs=500.0)
    assert not a.is_full_band


@pytest.mark.parametrize("hiss_dbfs", [-50.0, -60.0])
def test_hiss_floor_is_reported_within_3_db(hiss_dbfs: float) -> None:
    clean = song(RATE, 6.0)
    noisy = add_noise(clean, level_dbfs=hiss_dbfs, seed=4)
    assert analyze(noisy, RATE).noise_floor_dbfs == pytest.approx(hiss_dbfs, abs=3.0)
    assert analyze(white(RATE, 4.0, hiss_dbfs), RATE).noise_floor_dbfs == pytest.approx(
        hiss_dbfs, abs=3.0)


def test_dual_mono_is_reported_as_mono() -> None:
    x = song(RATE, 4.0)
    dual = np.concatenate([x[:1], x[:1]])
    assert analyze(dual, RATE).is_mono
    assert analyze(x[:1], RATE).is_mono
    assert not analyze(x, RATE).is_mono
    assert analyze(dual, RATE).interchannel_correlation == pytest.approx(1.0)


def test_overs_clipping_and_dc_are_counted() -> None:
    x = song(RATE, 4.0)
    a = analyze(x * 3.0, RATE)
    assert a.overs > 0
    assert a.sample_peak_dbfs > 0
    clipped = np.clip(x * 3.0, -1.0, 1.0)
    b = analyze(clipped, RATE)
    assert b.clipped_runs > 10
    assert b.overs == 0
    assert analyze(x + 0.01, RATE).dc_offset == pytest.approx(0.01 + float(x.mean(axis=-1).max()),
                                                              abs=2e-3)


def test_auto_treats_only_what_the_clip_needs() -> None:
    auto = load_preset("auto")
    full_band = song(44100, 6.0)  # no hiss, no clipping, even dynamics, content to 22 kHz
    acted = {r.stage for r in run_pipeline(full_band, 44100, auto).reports if r.acted}
    assert "denoise" not in acted
    assert "declip" not in acted
    assert "dynamics" not in acted
    assert "bwe" not in acted  # full band: nothing was cut
    clean = song(32000, 6.0)
    noisy_clipped = np.clip(add_noise(lowpass(clean, 32000, 9000.0), level_dbfs=-50.0) * 2.5,
                            -1.0, 1.0)
    result = run_pipeline(noisy_clipped, 32000, auto)
    acted = {r.stage: r for r in result.reports if r.acted}
    assert {"declip", "denoise", "bwe", "loudness"} <= set(acted)
    assert acted["bwe"].details["cutoff_hz"] == pytest.approx(9000.0, abs=500.0)
    assert result.reports[-1].summary == "guard: nothing got worse"


def test_bwe_adaptive_leaves_full_band_input_alone() -> None:
    x = song(32000, 4.0)
    extend = load_preset("auto")
    keep = load_preset("auto", {"bwe": {"adaptive": True}})
    assert "bwe" in {r.stage for r in run_pipeline(x, 32000, extend).reports if r.acted}
    assert "bwe" not in {r.stage for r in run_pipeline(x, 32000, keep).reports if r.acted}


def test_auto_stereo_only_when_asked_and_only_for_mono() -> None:
    mono = song(32000, 4.0)[:1]
    assert run_pipeline(mono, 32000, load_preset("auto")).audio.shape[0] == 1
    widened = run_pipeline(mono, 32000, load_preset("auto", {"stereo": {"enabled": True}}))
    assert widened.audio.shape[0] == 2


def _reports(*stages: str) -> tuple[StageReport, ...]:
    return tuple(StageReport(s, True, s) for s in stages)


def test_guard_blames_denoise_for_a_lost_octave() -> None:
    from scipy import signal

    x = song(RATE, 6.0)
    a = analyze(x, RATE)
    sos = signal.butter(4, [1000, 2000], "bandstop", fs=RATE, output="sos")
    damaged = signal.sosfiltfilt(sos, x, axis=-1).astype(np.float32)
    found = guard.check(guard.baseline(a), damaged, RATE, _reports("denoise", "bwe"))
    assert [f.stage for f in found] == ["denoise"]
    assert guard.check(guard.baseline(a), x * 0.5, RATE, _reports("denoise")) == []


def test_guard_blames_compression_for_a_raised_floor() -> None:
    x = song(RATE, 6.0)
    a = analyze(x, RATE)
    worse = add_noise(x, level_dbfs=-40.0, seed=9)
    found = guard.check(guard.baseline(a), worse, RATE, _reports("dynamics", "bwe"))
    assert [f.stage for f in found] == ["dynamics"]


def test_guarded_pipeline_backs_off_and_says_so(tmp_path: Path) -> None:
    preset = tmp_path / "harsh.toml"
    preset.write_text('guard = true\n[[stages]]\nstage = "resample"\n'
                      '[[stages]]\nstage = "eq"\nhighpass_hz = 500.0\n'
                      '[[stages]]\nstage = "loudness"\n')
    x = song(32000, 6.0)
    result = run_pipeline(x, 32000, load_preset(str(preset)))
    last = result.reports[-1]
    assert last.stage == "guard"
    assert last.acted
    assert last.details["backed_off"] == ["eq"]
    assert "eq" not in {r.stage for r in result.reports[:-1]}


def test_analyze_cli_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = song(RATE, 3.0)
    write_audio(tmp_path / "dual.wav", np.concatenate([x[:1], x[:1]]), RATE, bits="24")
    write_audio(tmp_path / "narrow.wav", lowpass(x, RATE, 9000.0), RATE, bits="24")
    (tmp_path / "broken.wav").write_text("not audio")
    assert main(["analyze", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    records = {Path(r["file"]).name: r for r in json.loads(captured.out)}
    assert records["dual.wav"]["is_mono"] is True
    assert records["narrow.wav"]["cutoff_hz"] == pytest.approx(9000, abs=500)
    assert {"noise_floor_dbfs", "true_peak_dbtp", "integrated_lufs", "sample_rate_hz",
            "clipped_runs", "loudness_range_lu", "crest_factor_db"} <= set(records["dual.wav"])
    assert "broken.wav" in captured.err
    assert main(["analyze", str(tmp_path / "dual.wav")]) == 0
    assert "mono in disguise" in capsys.readouterr().out


def test_restore_explain_prints_every_stage(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = write_audio(tmp_path / "in.wav", song(32000, 3.0)[:1], 32000, bits="24")
    assert main(["restore", str(src), "-o", str(tmp_path / "out.wav"), "--preset", "auto",
                 "--explain", "--stereo"]) == 0
    out = capsys.readouterr().out
    assert "denoise skipped (noise floor" in out
    assert "stereo correlation 0.80" in out
    assert "guard     idle   guard: nothing got worse" in out


def test_auto_does_not_denoise_a_clip_with_no_measurable_floor() -> None:
    silent = np.zeros((1, 3 * 32000), np.float32)
    result = run_pipeline(silent, 32000, load_preset("auto"))
    denoise = next(r for r in result.reports if r.stage == "denoise")
    assert not denoise.acted
    assert "no measurable noise floor" in denoise.summary
