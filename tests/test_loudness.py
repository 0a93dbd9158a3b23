"""The loudness stage lands on its target or says why, in at most three limiter passes (issue 9, C3).

"Closest" is checked by brute force: the limiter is run on a grid of gains over the whole range the
stage may use (up to ``max_limiting_db`` of drive when capped, the built-in drive bound when not),
and a target the stage does not reach must not be reachable, nor come closer, anywhere on that grid.
Every pass is counted and its gain recorded by wrapping ``limit_true_peak``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from conftest import song
from genrestore.analysis import analyze, integrated_lufs, true_peak, true_peak_dbtp
from genrestore.stages import Context, Loudness, normalize_loudness
from genrestore.stages import loudness as loudness_module
from genrestore.stages.loudness import loudness_to_target

RATE = 44100
CEILING = -1.0
TOLERANCE = 0.2
DRIVE_BOUND = loudness_module._MAX_DRIVE_DB
_real_limiter = loudness_module.limit_true_peak
_real_pass = loudness_module._limit  # what the stage calls: returns the output's true peak too


def pink(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Dense material: pink (1/f power) noise at about -20 LUFS, crest factor ~14 dB."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:] / 100.0)
    spectrum[0] = 0.0
    x = np.fft.irfft(spectrum, n)
    return (x * 0.1 / np.sqrt(np.mean(x**2)))[np.newaxis].astype(np.float32)


def peaky(seconds: float = 4.0, seed: int = 1) -> np.ndarray:
    """Peaky material: the synthetic song at -30 LUFS with sparse transients (decaying noise
    bursts, 3 ms) whose peaks stand about 12 dB over the song's."""
    x = song(RATE, 6.0)[:1, :int(RATE * seconds)] * 0.2
    rng = np.random.default_rng(seed)
    burst = np.exp(-np.arange(1024) / (0.003 * RATE)) * rng.standard_normal(1024)
    burst *= 4.0 * np.abs(x).max() / np.abs(burst).max()
    for start in rng.integers(0, x.shape[-1] - 1024, 6):
        x[0, start:start + 1024] += burst
    return x.astype(np.float32)


MATERIALS = {"dense": pink, "peaky": peaky}


@functools.cache
def material(name: str) -> np.ndarray:
    return MATERIALS[name]()


@functools.cache
def grid(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(drive_db, lufs)``: the real limiter's output loudness for drives 0..DRIVE_BOUND dB (the
    input's true peak that far over the ceiling), every 1 dB."""
    x = material(name)
    drives = np.arange(0.0, DRIVE_BOUND + 0.5, 1.0)
    free = CEILING - true_peak_dbtp(x)
    levels = [integrated_lufs(_real_limiter(x * np.float32(10 ** ((free + d) / 20)), RATE), RATE)
              for d in drives]
    return drives, np.array(levels)


class Recorder:
    """Wraps the stage's limiter pass (``_limit``): the true peak fed to it (dBTP) and the
    loudness it returned; checks the peak it says it returned."""

    def __init__(self) -> None:
        self.fed: list[float] = []
        self.returned: list[float] = []

    def __call__(self, audio: np.ndarray, sample_rate: int, *args: float,
                 peaks: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        out, peak = _real_pass(audio, sample_rate, *args, peaks=peaks)
        assert peak == pytest.approx(true_peak(out), rel=1e-6)
        self.fed.append(true_peak_dbtp(audio))
        self.returned.append(integrated_lufs(out, sample_rate))
        return out, peak


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(loudness_module, "_limit", recorder)
    return recorder


def check_passes(passes: Recorder, target: float, drive_bound: float) -> None:
    assert len(passes.fed) <= 3
    # No pass drives the limiter past the bound (the cap, or the built-in one without a cap) ...
    assert max(passes.fed, default=-np.inf) <= CEILING + drive_bound + 0.01
    # ... nor above a gain already found too loud (the bracket).
    for i, (fed, level) in enumerate(zip(passes.fed, passes.returned, strict=True)):
        if level > target:
            assert all(later < fed for later in passes.fed[i + 1:])


@pytest.mark.parametrize("cap", [None, 8.0])
@pytest.mark.parametrize("target", [-6.0, -10.0, -14.0, -23.0])
@pytest.mark.parametrize("name", ["dense", "peaky"])
def test_lands_on_target_or_ends_at_the_closest_try(name: str, target: float, cap: float | None,
                                                    passes: Recorder) -> None:
    # Replaces test_stages.py's test_unreachable_target_ends_at_the_closest_try (review 2a).
    x = material(name)
    result = loudness_to_target(x, RATE, target_lufs=target, ceiling_dbtp=CEILING,
                                tolerance_lu=TOLERANCE, max_limiting_db=cap)
    bound = DRIVE_BOUND if cap is None else cap
    check_passes(passes, target, bound)
    assert result.limiter_passes == len(passes.fed)
    assert true_peak_dbtp(result.audio) <= CEILING + 0.01
    assert result.lufs == pytest.approx(integrated_lufs(result.audio, RATE), abs=1e-6)

    # A plain gain reaches the target when it keeps the peaks under the ceiling; otherwise any
    # gain on the grid whose limited output is at least as loud reaches it by a gain down.  What
    # is left is the shortfall of the loudest gain the stage may use.
    drives, levels = grid(name)
    plain = target - integrated_lufs(x, RATE) <= CEILING - true_peak_dbtp(x)
    best_shortfall = 0.0 if plain else max(0.0, target - levels[drives <= bound + 1e-9].max())
    if best_shortfall == 0.0:
        assert result.reached
        assert abs(result.lufs - target) <= TOLERANCE
        assert result.limited_by == ""
    else:
        assert not result.reached
        assert result.limited_by in ("cap", "limiter")
        assert target - result.lufs <= best_shortfall + 0.15


def test_the_review_case_never_feeds_the_limiter_absurd_gains(passes: Recorder) -> None:
    # C3: song x 0.2, target -6 drove the limiter at +116 dBFS and returned pass 1.
    music = song(RATE, 6.0) * 0.2
    out, measured, _ = normalize_loudness(music, RATE, target_lufs=-6.0)
    check_passes(passes, -6.0, DRIVE_BOUND)
    assert true_peak_dbtp(out) <= CEILING + 0.01
    # The loudest the limiter gets on this clip, every 3 dB of drive up to the bound.
    free = CEILING - true_peak_dbtp(music)
    best = max(integrated_lufs(_real_limiter(music * np.float32(10 ** ((free + d) / 20)), RATE), RATE)
               for d in np.arange(0.0, DRIVE_BOUND + 0.5, 3.0))
    assert best < -6.0 - TOLERANCE  # the target really is out of reach
    assert measured >= best - 0.15


@pytest.mark.parametrize("target", [-14.0, -12.0])
@pytest.mark.parametrize("kind", ["song", "song+pink"])
def test_typical_material_reaches_the_target_in_two_passes(kind: str, target: float,
                                                          passes: Recorder) -> None:
    # Dense music needing a few dB of limiting (the synthetic song peaks at about -1 dBTP).
    x = song(RATE, 6.0)
    if kind == "song+pink":
        x = x + 0.5 * np.concatenate([pink(6.0, seed=2), pink(6.0, seed=3)])
    result = loudness_to_target(x, RATE, target_lufs=target)
    assert 1 <= len(passes.fed) <= 2
    assert result.reached
    assert abs(result.lufs - target) <= TOLERANCE
    assert true_peak_dbtp(result.audio) <= CEILING + 0.01


def test_a_plain_gain_when_the_peaks_stay_under_the_ceiling(passes: Recorder) -> None:
    x = song(RATE, 6.0) * 0.2  # true peak about -15 dBTP: -23 LUFS needs no limiting
    result = loudness_to_target(x, RATE, target_lufs=-23.0)
    assert passes.fed == []
    assert result.lufs == pytest.approx(-23.0, abs=0.01)
    np.testing.assert_allclose(result.audio, x * 10 ** (result.gain_db / 20), rtol=1e-5, atol=1e-9)


def test_max_limiting_db_caps_the_drive_and_the_report_says_so(passes: Recorder) -> None:
    music = song(RATE, 6.0) * 0.2  # the limiter's loudness still rises at 8 dB of drive
    stage = Loudness(target_lufs=-6.0, max_limiting_db=8.0)
    out, _, report = stage.apply(music, RATE, Context(analyze(music, RATE), RATE))
    check_passes(passes, -6.0, 8.0)
    assert max(passes.fed) == pytest.approx(CEILING + 8.0, abs=0.05)  # it used the cap
    assert report.details["target_reached"] is False
    assert report.details["not_reached_because"] == "cap"
    assert "target -6 not reached: limiting capped at 8 dB" in report.summary
    assert report.details["limiter_passes"] == len(passes.fed)
    assert true_peak_dbtp(out) <= CEILING + 0.01
    # Uncapped, the same clip gets louder: the cap, not the limiter, stopped it.
    uncapped = loudness_to_target(music, RATE, target_lufs=-6.0)
    assert uncapped.lufs > report.details["output_lufs"] + TOLERANCE


def test_a_saturated_limiter_is_reported_as_such(passes: Recorder) -> None:
    x = pink()  # dense: the limiter's output is loudest at a few dB of drive, well under 8 dB
    stage = Loudness(target_lufs=-6.0, max_limiting_db=8.0)
    _, _, report = stage.apply(x, RATE, Context(analyze(x, RATE), RATE))
    assert report.details["not_reached_because"] == "limiter"
    assert "the limiter is saturated" in report.summary
    assert max(passes.fed) < CEILING + 8.0 - 1.0  # it did not push on to the cap
    assert len(passes.fed) <= 2  # once more gain stops paying, it stops: no pass is wasted


def test_a_reached_target_says_nothing_more() -> None:
    music = song(RATE, 6.0)
    _, _, report = Loudness(target_lufs=-14.0, max_limiting_db=8.0).apply(
        music, RATE, Context(analyze(music, RATE), RATE))
    assert report.details["target_reached"] is True
    assert report.details["not_reached_because"] is None
    assert "not reached" not in report.summary
    assert report.details["output_lufs"] == pytest.approx(-14.0, abs=TOLERANCE)


@pytest.mark.parametrize("error_per_db", [-0.5, 0.6])
@pytest.mark.parametrize(("name", "target"), [("song", -14.0), ("song", -11.5), ("peaky", -19.0)])
def test_a_wrong_limiter_model_still_lands_within_three_passes(
        name: str, target: float, error_per_db: float, passes: Recorder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The model predicts the limiter's loudness; make it wrong by error_per_db LU per dB of drive
    # (too pessimistic or too optimistic) so that the first pass misses: the bracket and the
    # measured corrections must still bring it onto the target, from above or from below.
    x = song(RATE, 6.0) if name == "song" else material(name)
    free = CEILING - true_peak_dbtp(x)
    predict = loudness_module._LimiterModel.lufs
    monkeypatch.setattr(loudness_module._LimiterModel, "lufs",
                        lambda self, g: predict(self, g) + error_per_db * max(0.0, g - free))
    result = loudness_to_target(x, RATE, target_lufs=target)
    check_passes(passes, target, DRIVE_BOUND)
    assert abs(passes.returned[0] - target) > TOLERANCE  # the first pass did miss
    assert result.reached
    assert abs(result.lufs - target) <= TOLERANCE
    assert true_peak_dbtp(result.audio) <= CEILING + 0.01


@pytest.mark.parametrize(("name", "target"), [("dense", -23.0), ("dense", -8.0), ("peaky", -14.0)])
def test_the_figures_it_returns_are_those_of_its_output(name: str, target: float) -> None:
    """The stage reads its input's loudness, and its output's loudness and true peak, from
    measurements it already made (gating blocks scaled by a gain, the limiter's own peak):
    they must equal measuring the audio again, for a plain gain and after limiting."""
    x = material(name)
    result = loudness_to_target(x, RATE, target_lufs=target, ceiling_dbtp=CEILING)
    assert result.input_lufs == pytest.approx(integrated_lufs(x, RATE), abs=1e-6)
    assert result.lufs == pytest.approx(integrated_lufs(result.audio, RATE), abs=1e-3)
    assert result.true_peak_dbtp == pytest.approx(true_peak_dbtp(result.audio), abs=1e-3)
