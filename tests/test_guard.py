"""The never-worse guard (issue 9 point 6, review C5): each finding type, blamed only on a
stage that can cause it, with input and output compared on the same footing at 44.1 and
48 kHz output."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from conftest import song
from genrestore import guard
from genrestore.analysis import analyze
from genrestore.degrade import add_noise
from genrestore.errors import ParameterError
from genrestore.pipeline import _back_off, load_preset
from genrestore.stages import StageReport, resample

RATE = 32000


def _acted(*stages: str) -> tuple[StageReport, ...]:
    return tuple(StageReport(s, True, s) for s in stages)


def _input() -> tuple[np.ndarray, guard.Baseline]:
    x = add_noise(song(RATE, 6.0), level_dbfs=-70.0, seed=1)
    return x, guard.baseline(analyze(x, RATE))


@pytest.mark.parametrize("out_rate", [44100, 48000])
def test_resampling_and_gain_alone_find_nothing(out_rate: int) -> None:
    x, base = _input()
    after = resample(x, RATE, out_rate) * np.float32(0.5)
    assert guard.check(base, after, out_rate, _acted("resample", "bwe", "loudness")) == []


@pytest.mark.parametrize("out_rate", [44100, 48000])
def test_a_lost_octave_is_blamed_on_denoise_then_eq_never_on_others(out_rate: int) -> None:
    x, base = _input()
    sos = signal.butter(4, [1000, 2000], "bandstop", fs=RATE, output="sos")
    damaged = resample(signal.sosfiltfilt(sos, x, axis=-1).astype(np.float32), RATE, out_rate)
    every = ("bwe", "dynamics", "stereo", "loudness")
    assert [f.stage for f in guard.check(base, damaged, out_rate, _acted("denoise", "eq", *every))
            ] == ["denoise"]
    assert [f.stage for f in guard.check(base, damaged, out_rate, _acted("eq", *every))] == ["eq"]
    found = guard.check(base, damaged, out_rate, _acted(*every))
    assert [f.stage for f in found] == [""]
    assert "lost" in found[0].problem


@pytest.mark.parametrize("out_rate", [32000, 44100])
def test_a_lost_octave_next_to_a_strong_bass_note_is_found(out_rate: int) -> None:
    """A 100 Hz note 30 dB over a 135-235 Hz band: the octave levels of input and output are
    read with the same bin width and window, so the note leaks alike into both and the band's
    loss (about 14 dB) is found; read with Welch's finer bins on one side only, the note's
    leakage into the output's 125-250 Hz octave hid it."""
    rate, seconds = 32000, 6.0
    n = int(rate * seconds)
    t = np.arange(n) / rate
    rng = np.random.default_rng(0)

    def band(lo: float, hi: float, rms: float) -> np.ndarray:
        sos = signal.butter(8, [lo, hi], "bandpass", fs=rate, output="sos")
        y = signal.sosfiltfilt(sos, rng.standard_normal(n))
        return rms * y / np.std(y)

    bass, rest = 0.5 * np.sin(2 * np.pi * 100 * t), band(260.0, 7500.0, 0.02)
    x = (bass + band(135.0, 235.0, 0.01) + rest)[np.newaxis].astype(np.float32)
    y = (bass + rest)[np.newaxis].astype(np.float32)  # the 125-250 Hz octave's band removed
    base = guard.baseline(analyze(x, rate))
    if out_rate != rate:
        x, y = resample(x, rate, out_rate), resample(y, rate, out_rate)
    assert guard.check(base, x, out_rate, _acted("denoise")) == []
    found = guard.check(base, y, out_rate, _acted("denoise"))
    assert [f.stage for f in found] == ["denoise"]
    assert "lost" in found[0].problem


@pytest.mark.parametrize("out_rate", [44100, 48000])
def test_a_raised_floor_is_blamed_on_compression_then_limiting_never_on_bwe(out_rate: int
                                                                           ) -> None:
    x, base = _input()
    # The hiss 30 dB up (-70 -> -40 dBFS): a floor 26+ dB above the input's against the loudness.
    worse = resample(add_noise(x, level_dbfs=-40.0, seed=2), RATE, out_rate)
    found = guard.check(base, worse, out_rate, _acted("bwe", "dynamics", "loudness"))
    assert [f.stage for f in found] == ["dynamics"]
    assert "noise floor up" in found[0].problem
    assert [f.stage for f in guard.check(base, worse, out_rate, _acted("bwe", "loudness"))
            ] == ["loudness"]
    assert [f.stage for f in guard.check(base, worse, out_rate, _acted("bwe", "stereo"))] == [""]


def test_a_floor_still_60_db_under_the_music_is_not_a_finding() -> None:
    x = add_noise(song(RATE, 6.0), level_dbfs=-100.0, seed=1)
    base = guard.baseline(analyze(x, RATE))
    louder_hiss = add_noise(song(RATE, 6.0), level_dbfs=-85.0, seed=2)  # 15 dB more hiss
    assert guard.check(base, louder_hiss, RATE, _acted("dynamics")) == []
    audible = add_noise(song(RATE, 6.0), level_dbfs=-70.0, seed=2)
    assert [f.stage for f in guard.check(base, audible, RATE, _acted("dynamics"))] == ["dynamics"]


def test_new_flat_tops_are_reported_and_blamed_on_no_stage() -> None:
    x, base = _input()
    assert base.analysis.clipped_runs == 0
    after = resample(x, RATE, 48000)
    clipped = np.clip(after, -0.5 * np.abs(after).max(), 0.5 * np.abs(after).max())
    found = guard.check(base, clipped, 48000, _acted("loudness"))
    assert [f.stage for f in found] == [""]
    assert "new clipped runs" in found[0].problem


def test_a_widened_mono_clip_is_compared_through_its_mid() -> None:
    mono = song(RATE, 6.0)[:1]
    base = guard.baseline(analyze(mono, RATE))
    widened = load_preset("auto", {"stereo": {"enabled": True}})
    from genrestore.pipeline import run_pipeline

    result = run_pipeline(mono, RATE, widened, output_rate_hz=48000)
    assert result.audio.shape[0] == 2
    assert result.reports[-1].summary == "guard: nothing got worse"
    by_stage = {r.stage: r for r in result.reports}
    assert by_stage["stereo"].acted
    assert guard.check(base, result.audio, 48000, result.reports[:-1]) == []


def test_backing_off_removes_a_stage_but_only_halves_the_loudness_limiting() -> None:
    stages = load_preset("auto").stages
    names = [s.name for s in stages]
    assert [s.name for s in _back_off(stages, "denoise")] == [n for n in names if n != "denoise"]
    softer = {s.name: s for s in _back_off(stages, "loudness")}
    assert [s.name for s in _back_off(stages, "loudness")] == names
    assert softer["loudness"].max_limiting_db == pytest.approx(4.0)  # auto caps at 8 dB
    uncapped = {s.name: s for s in _back_off(load_preset("full").stages, "loudness")}
    assert uncapped["loudness"].max_limiting_db == pytest.approx(6.0)


def test_a_stage_after_loudness_is_refused(tmp_path) -> None:
    preset = tmp_path / "late.toml"
    preset.write_text('[[stages]]\nstage = "resample"\n[[stages]]\nstage = "loudness"\n'
                      '[[stages]]\nstage = "eq"\n')
    with pytest.raises(ParameterError, match="last stage"):
        load_preset(preset)


@pytest.mark.parametrize("out_rate", [44100, 48000])
@pytest.mark.parametrize("cutoff_hz", [600.0, 1000.0, 4000.0])
def test_resampling_a_narrow_band_clip_does_not_raise_its_floor(out_rate: int,
                                                                 cutoff_hz: float) -> None:
    # The floor of a band-limited clip is read between its partials, whose depth depends on
    # the bin width: the output is read with the input's Hz per bin (a resample-only run read
    # "noise floor up 12.4 dB" at a 0.6 kHz cutoff before).
    from genrestore.degrade import lowpass

    x = add_noise(lowpass(song(RATE, 6.0), RATE, cutoff_hz), level_dbfs=-90.0, seed=3)
    base = guard.baseline(analyze(x, RATE))
    after = resample(x, RATE, out_rate)
    assert guard.check(base, after, out_rate, _acted("resample", "dynamics")) == []


def test_a_plain_gain_loudness_stage_is_not_blamed_for_a_floor() -> None:
    x, base = _input()
    worse = add_noise(x, level_dbfs=-40.0, seed=2)
    plain = (StageReport("loudness", True, "loudness", {"limiter_passes": 0}),)
    limited = (StageReport("loudness", True, "loudness", {"limiter_passes": 2}),)
    assert [f.stage for f in guard.check(base, worse, RATE, plain)] == [""]
    assert [f.stage for f in guard.check(base, worse, RATE, limited)] == ["loudness"]
