"""The mono fold-down check (issue 13, part 4): correlation, mid/side balance and the power lost
when a stereo clip is summed to mono, ``(L + R) / 2``, in the analysis, ``analyze`` and the
report.  Expectations are physics: for channels of equal power P and correlation r the mono sum
has power P (1 + r) / 2, so it lies 10 log10(2 / (1 + r)) dB under the stereo power."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import white
from genrestore.analysis import (
    FOLD_DOWN_LIMIT_DB,
    analyze,
    mono_fold_down,
    stereo_sums,
)
from genrestore.cli import main

RATE = 44100


def noise_pair(correlation: float, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Two channels of white noise of equal power with the given correlation."""
    a, b = white(RATE, seconds, -20.0, seed=seed, channels=2).astype(np.float64)
    right = correlation * a + math.sqrt(1.0 - correlation**2) * b
    return np.stack([a, right]).astype(np.float32)


def test_identical_channels_lose_nothing() -> None:
    x = white(RATE, 2.0, -20.0, seed=1)
    fold = mono_fold_down(stereo_sums(np.concatenate([x, x])))
    assert fold.correlation == pytest.approx(1.0, abs=1e-9)
    assert fold.loss_db == pytest.approx(0.0, abs=1e-9)
    assert fold.mid_side_db == FOLD_DOWN_LIMIT_DB  # no side at all


def test_antiphase_channels_cancel_to_silence() -> None:
    x = white(RATE, 2.0, -20.0, seed=2)
    fold = mono_fold_down(stereo_sums(np.concatenate([x, -x])))
    assert fold.correlation == pytest.approx(-1.0, abs=1e-9)
    assert fold.loss_db == FOLD_DOWN_LIMIT_DB  # the mono sum is silent: the largest loss
    assert fold.mid_side_db == -FOLD_DOWN_LIMIT_DB


@pytest.mark.parametrize("correlation", [0.0, 0.5, 0.9, -0.5])
def test_partly_correlated_noise_loses_what_physics_says(correlation: float) -> None:
    fold = mono_fold_down(stereo_sums(noise_pair(correlation)))
    # 441 000 samples: the measured correlation scatters by about 1 / sqrt(n) = 0.0015.
    assert fold.correlation == pytest.approx(correlation, abs=0.01)
    assert fold.loss_db == pytest.approx(10 * math.log10(2 / (1 + correlation)), abs=0.05)
    # Mid (1 + r) / 2 over side (1 - r) / 2, times P.
    assert fold.mid_side_db == pytest.approx(10 * math.log10((1 + correlation) / (1 - correlation)),
                                             abs=0.08)
    if correlation == 0.0:
        assert fold.loss_db == pytest.approx(3.01, abs=0.05)


def test_a_hard_panned_source_loses_3_db_in_mono() -> None:
    x = white(RATE, 2.0, -20.0, seed=3)
    fold = mono_fold_down(stereo_sums(np.concatenate([x, np.zeros_like(x)])))
    assert fold.correlation == 0.0
    assert fold.loss_db == pytest.approx(10 * math.log10(2), abs=1e-6)
    assert fold.mid_side_db == pytest.approx(0.0, abs=1e-6)


def test_sums_accumulate_block_by_block() -> None:
    x = noise_pair(0.3, seconds=2.0)
    blocks = sum(stereo_sums(x[:, k:k + 4096]) for k in range(0, x.shape[-1], 4096))
    whole, parts = mono_fold_down(stereo_sums(x)), mono_fold_down(blocks)
    assert parts.correlation == pytest.approx(whole.correlation, abs=1e-9)
    assert parts.loss_db == pytest.approx(whole.loss_db, abs=1e-9)
    assert parts.mid_side_db == pytest.approx(whole.mid_side_db, abs=1e-9)


def test_the_analysis_carries_the_fold_down_and_mono_says_not_applicable() -> None:
    stereo = analyze(noise_pair(0.5, seconds=3.0), RATE)
    assert stereo.mono_fold_down_loss_db == pytest.approx(10 * math.log10(2 / 1.5), abs=0.08)
    assert stereo.mid_side_db == pytest.approx(10 * math.log10(3), abs=0.1)
    mono = analyze(white(RATE, 3.0, -20.0), RATE)
    assert math.isnan(mono.mono_fold_down_loss_db)
    assert math.isnan(mono.mid_side_db)
    silent = mono_fold_down(stereo_sums(np.zeros((2, 1000))))
    assert math.isnan(silent.loss_db)


def test_analyze_shows_the_fold_down_in_text_and_json(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    sf.write(tmp_path / "wide.wav", noise_pair(0.0, seconds=3.0).T, RATE, subtype="FLOAT")
    x = white(RATE, 3.0, -20.0, seed=5)
    sf.write(tmp_path / "phase.wav", np.concatenate([x, -x]).T, RATE, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", white(RATE, 3.0, -20.0).T, RATE, subtype="FLOAT")
    assert main(["analyze", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"wide\.wav\n(.*\n)*  stereo     stereo, correlation -?0\.0\d, "
                     r"mid/side [+-]0\.\d dB, mono sum 3\.0 dB down", text)
    assert "mono sum silent (the channels cancel)" in text
    assert main(["analyze", "--json", str(tmp_path)]) == 0
    records = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert records["wide.wav"]["mono_fold_down_loss_db"] == pytest.approx(3.01, abs=0.05)
    assert records["phase.wav"]["mono_fold_down_loss_db"] == FOLD_DOWN_LIMIT_DB
    assert records["mono.wav"]["mono_fold_down_loss_db"] is None  # NaN: not applicable
    assert records["mono.wav"]["mid_side_db"] is None


def test_the_report_shows_the_fold_down_of_a_stereo_output(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from genrestore.report import ReportEntry, build_report

    original, restored = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(original, white(RATE, 2.0, -20.0).T, RATE)
    sf.write(restored, noise_pair(0.0, seconds=2.0).T, RATE)
    page = build_report([ReportEntry(original, restored)], tmp_path / "r.html").read_text()
    row = re.search(r"<tr><th>mono fold-down</th><td>(.*?)</td><td>(.*?)</td></tr>", page)
    assert row is not None
    assert row.group(1) == "n/a (mono)"
    assert re.fullmatch(r"correlation -?0\.0\d, mid/side [+-]0\.\d dB, mono sum 3\.0 dB down",
                        row.group(2))
