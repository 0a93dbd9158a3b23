"""Album mode (issue 13, part 2): one gain and one limiter ceiling for a set of tracks; the
album's loudness (all tracks' gating blocks gated together) reaches the target and a quiet
track stays as much quieter as it was."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrestore.album import (
    TOLERANCE_LU,
    album_lufs,
    measure_track,
    plan_album,
    restore_album,
    restore_album_files,
)
from genrestore.analysis import gating_blocks, integrated_lufs, true_peak_dbtp
from genrestore.cli import main
from genrestore.errors import ParameterError
from genrestore.manifest import MANIFEST_NAME
from genrestore.pipeline import load_preset, restore
from genrestore.stages.loudness import Loudness, gain_and_limit
from genrestore.synth import render_song

RATE = 44100


@functools.lru_cache(maxsize=4)
def _track(seed: int, seconds: float = 6.0) -> np.ndarray:
    return render_song(RATE, seconds, seed=seed)


def album(level_db: float = -6.0, interlude_db: float = -10.0) -> list[tuple[np.ndarray, int]]:
    """A loud track and an interlude ``interlude_db`` quieter (another song, same style)."""
    loud = _track(1) * np.float32(10 ** (level_db / 20))
    quiet = _track(2) * np.float32(10 ** ((level_db + interlude_db) / 20))
    quiet *= np.float32(10 ** ((integrated_lufs(loud, RATE) + interlude_db
                                - integrated_lufs(quiet, RATE)) / 20))  # exactly 10 LU under
    return [(loud, RATE), (quiet, RATE)]


def pre_loudness_lufs(clip: tuple[np.ndarray, int], preset) -> float:
    return album_lufs([measure_track(*clip, preset).blocks])


def test_album_loudness_is_that_of_the_tracks_played_in_a_row() -> None:
    a, b = (x for x, _ in album())
    joined = integrated_lufs(np.concatenate([a, b], axis=-1), RATE)
    # Only the three gating blocks that would straddle the join are missing.
    assert album_lufs([gating_blocks(a, RATE), gating_blocks(b, RATE)]) == pytest.approx(
        joined, abs=0.05)
    assert album_lufs([]) == float("-inf")


def test_a_quiet_track_keeps_its_distance_when_nothing_is_limited() -> None:
    clips = album()
    ins = [integrated_lufs(x, r) for x, r in clips]
    result = restore_album(clips, "auto", overrides={"loudness": {"target_lufs": -18.0}})
    outs = [integrated_lufs(r.audio, r.sample_rate) for r in result.results]
    assert result.output_lufs == pytest.approx(-18.0, abs=TOLERANCE_LU)
    assert result.plan.predicted_lufs == pytest.approx(result.output_lufs, abs=TOLERANCE_LU)
    # 10 LU apart before, 10 LU apart after (the loud track's peaks just touch the limiter).
    assert ins[1] - ins[0] == pytest.approx(-10.0, abs=0.01)
    assert outs[1] - outs[0] == pytest.approx(ins[1] - ins[0], abs=0.3)
    # The interlude gets exactly the album's gain on what the stages before the loudness
    # stage made of it (the high-pass takes a little of its bass): a plain gain, no limiting.
    assert outs[1] - pre_loudness_lufs(clips[1], load_preset("auto")) == pytest.approx(
        result.plan.gain_db, abs=0.01)
    # Per track, the same preset would have put both at -18: the distance would be gone.
    single = [restore(x, r, "auto", loudness={"target_lufs": -18.0})[0] for x, r in clips]
    assert abs(integrated_lufs(single[1], RATE) - integrated_lufs(single[0], RATE)) < 0.5


def test_when_the_limiter_works_the_album_still_lands_on_target_under_the_ceiling() -> None:
    clips = album()
    result = restore_album(clips, "auto", target="spotify")  # -14 LUFS, -1 dBTP
    outs = [integrated_lufs(r.audio, r.sample_rate) for r in result.results]
    assert result.plan.limited
    assert result.output_lufs == pytest.approx(-14.0, abs=TOLERANCE_LU)
    assert all(true_peak_dbtp(r.audio) <= -1.0 + 0.01 for r in result.results)
    # The quiet track is not limited: it moves by the album gain exactly; the loud one by
    # less (the limiter only takes away), so the distance shrinks by the limiting alone.
    preset = load_preset("auto", target="spotify")
    assert outs[1] - pre_loudness_lufs(clips[1], preset) == pytest.approx(
        result.plan.gain_db, abs=0.01)
    assert outs[0] - pre_loudness_lufs(clips[0], preset) < result.plan.gain_db - 0.5
    assert outs[1] < outs[0] - 5.0


def test_plan_edge_cases() -> None:
    preset = load_preset("auto")
    silent = measure_track(np.zeros((1, RATE), np.float32), RATE, preset)
    plan = plan_album([silent, silent], preset)
    assert (plan.gain_db, plan.not_reached_because) == (0.0, "silent")
    with pytest.raises(ParameterError, match="no loudness stage"):
        measure_track(album()[0][0], RATE, load_preset("none"))


def test_the_fixed_gain_loudness_stage() -> None:
    t = np.arange(RATE) / RATE
    tone = (0.1 * np.sin(2 * np.pi * 1000 * t))[np.newaxis].astype(np.float32)
    quiet = gain_and_limit(tone, RATE, gain_db=6.0, ceiling_dbtp=-1.0)
    assert quiet.limiter_passes == 0
    np.testing.assert_allclose(quiet.audio, tone * 10 ** (6 / 20), rtol=1e-6)
    assert quiet.lufs - quiet.input_lufs == pytest.approx(6.0, abs=1e-6)
    loud = gain_and_limit(tone, RATE, gain_db=24.0, ceiling_dbtp=-1.0)  # peak +4 dBFS: limited
    assert loud.limiter_passes == 1
    assert true_peak_dbtp(loud.audio) <= -1.0 + 0.01
    with pytest.raises(ParameterError, match="gain_db"):
        Loudness(fixed_gain=True, gain_db=100.0)


def test_the_file_api_and_the_cli_agree(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name, (audio, rate) in zip(("01_song.wav", "02_interlude.wav"), album(), strict=True):
        sf.write(src / name, audio.T, rate, subtype="FLOAT")
    api = restore_album_files([(src / n, tmp_path / "api" / n) for n in
                               ("01_song.wav", "02_interlude.wav")], "auto", target="podcast")
    assert api.output_lufs == pytest.approx(-16.0, abs=TOLERANCE_LU)

    out = tmp_path / "out"
    args = ["restore", str(src), "-o", f"{out}/", "--album", "--target", "podcast",
            "--jobs", "2", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == 2
    assert all("album gain" in r["stages_acted"]["loudness"] for r in records)
    line = next(x for x in captured.err.splitlines() if "album: 2 tracks" in x
                and "predicted" not in x)
    measured = float(line.split("-> ")[1].split(" LUFS")[0])
    assert measured == pytest.approx(-16.0, abs=TOLERANCE_LU)
    # The same bytes as the library's two passes, file for file.
    for name in ("01_song.wav", "02_interlude.wav"):
        assert (out / name).read_bytes() == (tmp_path / "api" / name).read_bytes()
    # A re-run measures again, finds the same gain, and so the same settings: nothing redone.
    args[args.index("--jobs") + 1] = "1"  # (the pool's start-up is the slow part here)
    assert main(args) == 0
    assert "2 file(s) already done" in capsys.readouterr().err
    # A new track changes the album's gain: every file is redone.
    sf.write(src / "03_loud.wav", (_track(4) * np.float32(0.9)).T, RATE, subtype="FLOAT")
    assert main([*args, "--report"]) == 0
    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert len(records) == 2 + 3
    assert "album: 3 tracks" in (out / "report.html").read_text()


def test_album_needs_a_loudness_stage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sf.write(tmp_path / "a.wav", album()[0][0].T, RATE)
    assert main(["restore", str(tmp_path / "a.wav"), "--album", "--preset", "none"]) == 2
    assert "no loudness stage" in capsys.readouterr().err
    assert not (tmp_path / "a_restored.wav").exists()


def test_a_sting_shorter_than_a_gating_block_does_not_bias_the_plan() -> None:
    """A 0.15 s sting has no 400 ms gating block (BS.1770 cannot measure it alone), so it
    adds nothing to the album figure; its limiter model, which keeps one block for the
    loudness stage's sake, must not bias the prediction either."""
    clips = album()
    sting = (_track(3)[:, : int(0.15 * RATE)] * np.float32(4.0), RATE)  # loud, peaks far over
    with_sting = restore_album([*clips, sting], "auto", target="spotify")
    assert with_sting.plan.limited
    assert with_sting.plan.predicted_lufs == pytest.approx(with_sting.output_lufs,
                                                           abs=TOLERANCE_LU)
