"""Reference matching (issue 13, part 3): the match stage, its preset and CLI plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import song
from genrestore.analysis import integrated_lufs, welch_psd
from genrestore.cli import main
from genrestore.errors import ParameterError
from genrestore.pipeline import load_preset, run_pipeline
from genrestore.stages import Context, Match, match_reference, resample
from genrestore.stages.match import (
    BAND_CENTRES_HZ,
    band_levels_db,
    design_fir,
    load_reference,
    matched_bands,
    plan_match,
    reference_profile,
    resolve_references,
    spectrum_distance_db,
    with_reference,
)

RATE = 44100


def shaped_noise(seed: int, rate: int = RATE, seconds: float = 10.0, *,
                 tilt_db_per_octave: float = 0.0, lowpass_hz: float | None = None
                 ) -> np.ndarray:
    """Pink noise (-3 dB per octave), tilted by a further ``tilt_db_per_octave`` around
    1 kHz, optionally cut off (a brick wall in the FFT) above ``lowpass_hz``."""
    n = int(rate * seconds)
    rng = np.random.default_rng(seed)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    f = np.maximum(freqs, 20.0)
    gain = f ** -0.5 * (f / 1000.0) ** (tilt_db_per_octave / (20.0 * np.log10(2.0)))
    if lowpass_hz is not None:
        gain[freqs > lowpass_hz] = 0.0
    y = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * gain, n)
    return (0.1 * y / np.std(y)).astype(np.float32)[np.newaxis]


def relative_levels(levels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Band levels over ``mask`` with their mean removed (the level is not the match's)."""
    values = levels[mask]
    return values - values.mean()


# --- the function -------------------------------------------------------------------------

def test_a_clip_matched_to_itself_is_returned_unchanged() -> None:
    clip = song(RATE, 6.0)
    out = match_reference(clip, RATE, reference_profile(clip, RATE))
    assert np.array_equal(out, clip)


@pytest.mark.parametrize("variant", ["48 kHz", "stereo", "16-bit file"])
def test_self_match_changes_no_band_by_a_tenth_of_a_db(variant: str, tmp_path: Path) -> None:
    # The same music read another way (resampled, as two channels, quantised to 16 bits
    # in a file) is the same reference: no band may move by 0.1 dB.  The band levels use
    # the same half-second Welch segments at every rate, and fractional bins at band edges.
    clip = song(RATE, 6.0).mean(axis=0, keepdims=True)
    if variant == "48 kHz":
        profile = reference_profile(resample(clip, RATE, 48000), 48000)
    elif variant == "stereo":
        profile = reference_profile(np.vstack([clip, clip]), RATE)
    else:
        sf.write(tmp_path / "ref.wav", clip.T, RATE, subtype="PCM_16")
        profile = load_reference(tmp_path / "ref.wav")
    out = match_reference(clip, RATE, profile)
    before, after = band_levels_db(clip, RATE), band_levels_db(out, RATE)
    audible = np.isfinite(before) & (before > before[np.isfinite(before)].max() - 60.0)
    assert np.max(np.abs(after[audible] - before[audible])) < 0.1


def test_pink_noise_reaches_the_band_levels_of_a_tilted_reference() -> None:
    # Pink noise matched to other pink noise tilted by +2 dB per octave (8 octaves of
    # bands: a 16 dB span, within the +-12 dB clamp once the level is removed).  Both
    # sides are measured by the same estimator, so what is left is the FIR's own error:
    # the first and last 0.125 s (half the 0.25 s filter) see zeros beyond the clip's ends,
    # 2.5 % of a 10 s clip, at most 10*log10(1/0.975) = 0.11 dB; and the analysis window
    # smooths the achieved response over +-2 bins (+-4 Hz), which at the steepest the
    # correction gets (the 2 dB/octave tilt over a 15 Hz-wide band at 63 Hz) is under
    # 0.1 dB.  Hence 0.3 dB in every band.
    clip = shaped_noise(1)
    reference = reference_profile(shaped_noise(2, 48000, tilt_db_per_octave=2.0), 48000)
    plan = plan_match(clip, RATE, reference)
    assert plan.high_hz == 16000.0  # both full band: the default top
    out = match_reference(clip, RATE, reference)
    levels = band_levels_db(out, RATE)
    mask = matched_bands(levels, reference, low_hz=60.0, high_hz=16000.0)
    assert np.asarray(BAND_CENTRES_HZ)[mask][[0, -1]].round().tolist() == [63.0, 12589.0]
    ref = np.asarray(reference.levels_db)
    error = relative_levels(levels, mask) - relative_levels(ref, mask)
    before = relative_levels(band_levels_db(clip, RATE), mask) - relative_levels(ref, mask)
    assert np.max(np.abs(before)) > 7.0  # the tilt: +-8 dB at the ends
    assert np.max(np.abs(error)) < 0.3
    assert spectrum_distance_db(out, RATE, reference) < 0.3 < spectrum_distance_db(clip, RATE,
                                                                                   reference)


def test_the_output_is_aligned_with_the_input() -> None:
    clip = shaped_noise(3, seconds=3.0)
    reference = reference_profile(shaped_noise(4, seconds=3.0, tilt_db_per_octave=-1.5), RATE)
    out = match_reference(clip, RATE, reference)
    assert out.shape == clip.shape
    lags = np.arange(-200, 201)
    xcorr = [float(np.dot(clip[0, 200:-200], np.roll(out[0], -lag)[200:-200])) for lag in lags]
    assert lags[int(np.argmax(xcorr))] == 0


def test_never_boosts_above_the_clips_cutoff() -> None:
    # A clip low-passed at 8 kHz (with a hiss floor 80 dB down above it) matched to a
    # bright full-band reference: the bands under the cutoff are boosted, nothing above
    # it.  The design is at most 0 dB above the cutoff; the FIR's window spreads the
    # boost under it by its main lobe (+-8 Hz) only: 0.1 dB allowed.
    clip = shaped_noise(5, lowpass_hz=8000.0)
    clip += 1e-5 * np.random.default_rng(6).standard_normal(clip.shape).astype(np.float32)
    reference = reference_profile(shaped_noise(7, tilt_db_per_octave=3.0), RATE)
    plan = plan_match(clip, RATE, reference)
    assert 7500.0 < plan.high_hz <= 8000.0
    assert max(plan.correction_db[-3:]) > 3.0  # the top bands matched are boosted
    out = match_reference(clip, RATE, reference)
    freqs, before = welch_psd(clip, RATE, 4096)
    _, after = welch_psd(out, RATE, 4096)
    above = freqs >= 8200.0
    assert 10 * np.log10(after[above].sum() / before[above].sum()) < 0.1
    response = np.abs(np.fft.rfft(design_fir(RATE, np.asarray(plan.bands_hz),
                                             np.asarray(plan.correction_db), 8000.0), 1 << 17))
    grid = np.fft.rfftfreq(1 << 17, 1.0 / RATE)
    assert 20 * np.log10(response[grid >= 8100.0].max()) < 0.01


def test_strength_scales_the_correction_in_db() -> None:
    clip = shaped_noise(8)
    reference = reference_profile(shaped_noise(9, tilt_db_per_octave=-2.0), RATE)
    assert np.array_equal(match_reference(clip, RATE, reference, strength=0.0), clip)
    full, half = (plan_match(clip, RATE, reference, strength=s) for s in (1.0, 0.5))
    assert np.allclose(half.wanted_db, 0.5 * np.asarray(full.wanted_db))
    levels = band_levels_db(clip, RATE)
    mask = matched_bands(levels, reference, low_hz=60.0, high_hz=16000.0)
    change = {s: band_levels_db(match_reference(clip, RATE, reference, strength=s), RATE)[mask]
              - levels[mask] for s in (1.0, 0.5)}
    # Each lands within 0.3 dB of its aim (see the tilted-reference test).
    assert np.max(np.abs(change[0.5] - 0.5 * np.asarray(full.wanted_db))) < 0.3
    assert np.max(np.abs(change[1.0] - np.asarray(full.wanted_db))) < 0.3
    assert np.max(np.abs(change[1.0])) > 6.0


def test_corrections_are_clamped() -> None:
    clip = shaped_noise(10)
    reference = reference_profile(shaped_noise(11, tilt_db_per_octave=4.0), RATE)  # +-16 dB
    plan = plan_match(clip, RATE, reference, max_boost_db=6.0, max_cut_db=3.0)
    assert max(plan.wanted_db) > 12.0
    assert min(plan.wanted_db) < -12.0
    assert max(plan.correction_db) == pytest.approx(6.0)
    assert min(plan.correction_db) == pytest.approx(-3.0)


def test_cuts_may_go_deeper_than_boosts_by_default() -> None:
    """A boost raises the clip's hiss with its music, a cut lowers it: by default a band is
    cut by up to 24 dB and boosted by up to 12."""
    clip = shaped_noise(10)
    reference = reference_profile(shaped_noise(11, tilt_db_per_octave=6.0), RATE)  # +-24 dB
    plan = plan_match(clip, RATE, reference)
    assert max(plan.wanted_db) > 14.0
    assert min(plan.wanted_db) < -14.0
    assert max(plan.correction_db) == pytest.approx(12.0)
    assert min(plan.correction_db) < -14.0  # beyond the boosts' clamp
    assert min(plan.correction_db) >= -24.0 - 1e-9
    assert Match().max_cut_db == 24.0
    assert Match().max_boost_db == 12.0


def test_parameters_are_checked() -> None:
    for bad in ({"strength": 1.5}, {"max_boost_db": 30.0}, {"low_hz": 5.0},
                {"high_hz": 30000.0}, {"reference": 3}):
        with pytest.raises(ParameterError):
            Match(**bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="silent"):
        reference_profile(np.zeros((1, RATE), np.float32), RATE)


# --- the stage, presets and the pipeline ----------------------------------------------------

def test_stage_without_reference_is_idle() -> None:
    from genrestore.analysis import analyze

    clip = shaped_noise(12, seconds=2.0)
    context = Context(analyze(clip, RATE), RATE)
    out, _, report = Match().apply(clip, RATE, context)
    assert out is clip
    assert not report.acted
    assert "no reference" in report.summary


def test_with_reference_adds_the_stage_before_loudness_and_resolves_its_target(
        tmp_path: Path) -> None:
    ref = tmp_path / "ref.wav"
    sf.write(ref, (0.5 * song(RATE, 4.0)).T, RATE, subtype="PCM_24")
    for name in ("auto", "full", "gentle", "none"):
        preset = with_reference(load_preset(name), ref, strength=0.5)
        names = [s.name for s in preset.stages]
        assert names.count("match") == 1
        if "loudness" in names:
            assert names.index("match") == names.index("loudness") - 1
        resolved = resolve_references(preset)
        match = next(s for s in resolved.stages if s.name == "match")
        assert match.reference == load_reference(ref)
        assert match.strength == 0.5
        lufs = integrated_lufs(*_read(ref))
        for stage in resolved.stages:
            if stage.name == "loudness":
                assert stage.target_lufs == pytest.approx(lufs, abs=0.01)
    kept = resolve_references(with_reference(load_preset("auto"), ref, loudness=False))
    assert next(s for s in kept.stages if s.name == "loudness").target_lufs == -14.0


def _read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return data.T, rate


def test_a_preset_file_holds_the_match_stage(tmp_path: Path) -> None:
    ref = tmp_path / "ref.wav"
    sf.write(ref, song(RATE, 3.0).T, RATE)
    toml = tmp_path / "matched.toml"
    toml.write_text(f'[[stages]]\nstage = "resample"\n\n[[stages]]\nstage = "match"\n'
                    f'reference = "{ref}"\nstrength = 0.7\n\n[[stages]]\nstage = "loudness"\n')
    preset = load_preset(toml, {"match": {"max_cut_db": 6.0}})
    match = next(s for s in preset.stages if s.name == "match")
    assert (match.reference, match.strength, match.max_cut_db) == (str(ref), 0.7, 6.0)


def test_restoring_with_a_reference_matches_it_and_the_guard_blames_nothing() -> None:
    # The synthetic song, made generator-like, restored with `auto` and, as the reference,
    # the song itself tilted by -2 dB per octave and 20 dB quieter (so the loudness stage
    # only turns it down: no limiting after the match to move the bands): the distance
    # falls, the output takes the reference's loudness, and the guard does not take the
    # match's intended cuts (up to 8 dB in an octave) for a loss to blame on another stage.
    from conftest import generator_like

    clean = song(RATE, 8.0)
    clip, rate = generator_like(clean, RATE, cutoff_hz=12000.0)
    n = clean.shape[-1]
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / RATE), 20.0)
    tilt = (freqs / 1000.0) ** (-2.0 / (20.0 * np.log10(2.0)))
    dark = 0.1 * np.fft.irfft(np.fft.rfft(clean, axis=-1) * tilt, n, axis=-1)
    reference = reference_profile(dark.astype(np.float32), RATE)
    preset = load_preset("auto")
    plain = run_pipeline(clip, rate, preset)
    matched = run_pipeline(clip, rate, with_reference(preset, reference))
    high = next(r for r in matched.reports if r.stage == "match").details["high_hz"]
    before = spectrum_distance_db(plain.audio, RATE, reference, high_hz=high)
    after = spectrum_distance_db(matched.audio, RATE, reference, high_hz=high)
    assert before > 4.0
    assert after < 0.3  # the function's own tolerance (above)
    assert integrated_lufs(matched.audio, RATE) == pytest.approx(reference.integrated_lufs,
                                                                 abs=0.3)
    guard = next(r for r in matched.reports if r.stage == "guard")
    assert guard.details["backed_off"] == []


# --- the CLI --------------------------------------------------------------------------------

@pytest.fixture
def clip_file(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "clip.wav"
    path.parent.mkdir()
    sf.write(path, song(32000, 3.0).T, 32000)
    return path


@pytest.mark.parametrize("make", ["missing", "text", "silent"])
def test_an_unreadable_reference_is_a_usage_error_before_any_work(
        make: str, clip_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref = tmp_path / "ref.wav"
    if make == "text":
        ref.write_text("not audio")
    elif make == "silent":
        sf.write(ref, np.zeros(RATE), RATE)
    out = tmp_path / "out"
    assert main(["restore", str(clip_file), "-o", f"{out}/", "--reference", str(ref)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("genrestore: error: reference ")
    assert str(ref) in err[0]
    assert not out.exists()


@pytest.mark.parametrize("args", [["--match-strength", "0.5"],
                                  ["--reference", "REF", "--match-strength", "2"]])
def test_match_strength_usage_errors(args: list[str], clip_file: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    ref = tmp_path / "ref.wav"
    sf.write(ref, song(RATE, 2.0).T, RATE)
    args = [str(ref) if a == "REF" else a for a in args]
    assert main(["restore", str(clip_file), "-o", str(tmp_path / "x.wav"), *args]) == 2
    assert "strength" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


def _settings(folder: Path) -> list[str]:
    lines = (folder / "genrestore-manifest.jsonl").read_text().splitlines()
    return [json.loads(line)["settings"] for line in lines]


def test_the_batch_settings_follow_the_references_content_and_strength(
        clip_file: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.wav"
    sf.write(ref, song(RATE, 3.0).T, RATE)
    out = tmp_path / "out"
    base = ["restore", str(clip_file.parent), "-o", f"{out}/", "-q", "--jobs", "1",
            "--preset", "gentle", "--reference", str(ref)]
    assert main(base) == 0
    assert main(base) == 0  # done with the same settings: skipped, nothing recorded
    assert len(_settings(out)) == 1
    copy = tmp_path / "elsewhere.wav"
    copy.write_bytes(ref.read_bytes())
    assert main([*base[:-1], str(copy)]) == 0  # the same content elsewhere: still done
    assert len(_settings(out)) == 1
    assert main([*base, "--match-strength", "0.5"]) == 0  # redone
    sf.write(ref, (0.5 * song(RATE, 3.0)[:, ::-1]).T, RATE)  # new content, same name
    assert main(base) == 0  # redone
    settings = _settings(out)
    assert len(settings) == 3
    assert len(set(settings)) == 3


def test_restore_reference_runs_in_parallel_workers(clip_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    sf.write(clip_file.with_name("other.wav"), (0.5 * song(32000, 3.0)).T, 32000)
    ref = tmp_path / "ref.wav"
    sf.write(ref, song(RATE, 3.0).T, RATE)
    out = tmp_path / "out"
    assert main(["restore", str(clip_file.parent), "-o", f"{out}/", "--jobs", "2",
                 "--preset", "full", "--reference", str(ref), "--explain"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert text.count("match     acted  match ref.wav") == 2, text


def test_a_reference_is_never_written_even_when_it_is_an_earlier_output(
        clip_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An earlier output used as the reference of a redo is protected like an input (the
    manifest would otherwise take it for genrestore's own output to replace), and a report
    may not replace it either."""
    sf.write(clip_file.parent / "other.wav", song(32000, 3.0)[:, ::-1].T, 32000)
    out = tmp_path / "out"
    assert main(["restore", str(clip_file.parent), "-o", f"{out}/", "-q"]) == 0
    ref = out / "clip.wav"
    before = ref.read_bytes()
    capsys.readouterr()
    code = main(["restore", str(clip_file.parent), "-o", f"{out}/", "--reference", str(ref),
                 "--jobs", "1"])
    assert code == 1
    assert "clip.wav is an input of this batch" in capsys.readouterr().err
    assert ref.read_bytes() == before
    assert main(["restore", str(clip_file), "-o", str(tmp_path / "x.wav"), "--reference",
                 str(ref), "--report", str(ref), "--overwrite"]) == 2
    assert ref.read_bytes() == before


def test_set_match_options_and_an_explicit_target_with_a_reference(
        clip_file: Path, tmp_path: Path) -> None:
    """``--set match.*`` reaches the stage --reference adds; an explicit loudness target
    (--target, or --set loudness.target_lufs) wins over the reference's loudness."""
    ref = tmp_path / "ref.wav"
    sf.write(ref, 0.3 * shaped_noise(2, seconds=4.0).T, RATE)  # quieter than -14 LUFS
    ref_lufs = integrated_lufs(_read(ref)[0], RATE)
    assert ref_lufs < -16.0

    def lufs(name: str, *flags: str) -> float:
        out = tmp_path / name
        assert main(["restore", str(clip_file), "-o", str(out), "--reference", str(ref),
                     "-q", *flags]) == 0
        return integrated_lufs(*_read(out))

    assert lufs("a.wav") == pytest.approx(ref_lufs, abs=0.3)
    assert lufs("b.wav", "--set", "match.loudness=false") == pytest.approx(-14.0, abs=0.3)
    assert lufs("c.wav", "--target", "ebu-r128") == pytest.approx(-23.0, abs=0.3)
    assert lufs("d.wav", "--set", "loudness.target_lufs=-20") == pytest.approx(-20.0, abs=0.3)


@pytest.mark.parametrize(("flags", "said"), [
    (["--set", "match.bogus=1"], "unknown parameter 'bogus'"),
    (["--set", "match.strength=\"abc\""], "strength must be float"),
    (["--set", "match.reference=\"x.wav\""], "--set match.reference and --reference"),
    (["--set", "match.strength=0.3", "--match-strength", "0.7"], "both given"),
])
def test_set_match_with_a_reference_is_checked_like_any_parameter(
        flags: list[str], said: str, clip_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    ref = tmp_path / "ref.wav"
    sf.write(ref, song(RATE, 2.0).T, RATE)
    assert main(["restore", str(clip_file), "-o", str(tmp_path / "x.wav"), "--reference",
                 str(ref), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert said in err[0]
    assert not (tmp_path / "x.wav").exists()


def test_the_library_never_writes_a_reference_either(clip_file: Path, tmp_path: Path) -> None:
    from genrestore.errors import AudioFileError
    from genrestore.pipeline import restore_file

    ref = tmp_path / "ref.wav"
    sf.write(ref, song(RATE, 2.0).T, RATE)
    before = ref.read_bytes()
    with pytest.raises(AudioFileError, match="refusing to overwrite"):
        restore_file(clip_file, ref, preset=with_reference(load_preset("gentle"), ref),
                     overwrite=True)
    assert ref.read_bytes() == before
