"""Long files in bounded memory (issue 12, part 1): measuring a clip a block at a time gives
what measuring it whole gives, in memory that does not grow with the clip."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from genrestore import analysis as an
from genrestore import filters
from genrestore.errors import AudioFileError
from genrestore.io import read_blocks


def _clip(rate: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """Music-like test material with everything the analysis looks at: tones that swell, hiss,
    a silent stretch, a DC offset on one channel, flat clipped tops in several places (some
    across the block boundaries the tests use) and a band limit."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    tones = sum(0.15 / k * np.sin(2 * np.pi * 220 * k * t + k) for k in range(1, 6))
    x = np.stack([tones * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t + c)) for c in range(channels)])
    x = signal.sosfilt(signal.butter(8, 9000, fs=rate, output="sos"), x, axis=-1)
    x += 0.002 * rng.standard_normal(x.shape)
    x[:, int(0.4 * x.shape[-1]):int(0.45 * x.shape[-1])] *= 0.0
    x[0] += 0.01
    peak = np.max(np.abs(x))
    for centre in (4099 * 3 - 2, 77777, int(0.7 * x.shape[-1])):
        x[:, centre - 3:centre + 4] = np.sign(x[:, centre:centre + 1]) * peak * 1.5
    return np.clip(x, -peak, peak).astype(np.float32)


def _same(a: an.Analysis, b: an.Analysis, tolerance: float = 1e-9) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name in ("spectrum", "low_spectrum"):
            np.testing.assert_allclose(x.level_db, y.level_db, atol=1e-9)
        elif isinstance(x, float) and np.isnan(x):
            assert np.isnan(y), field.name
        elif isinstance(x, float) and not np.isfinite(x):
            assert x == y, field.name
        else:
            assert x == pytest.approx(y, rel=tolerance, abs=tolerance), field.name


@pytest.mark.parametrize(("rate", "seconds", "channels"), [(32000, 12.0, 1), (44100, 8.0, 2)])
@pytest.mark.parametrize("block", [1000, 4099, 77777])
def test_measuring_in_blocks_equals_measuring_the_whole_clip(rate: int, seconds: float,
                                                             channels: int, block: int) -> None:
    x = _clip(rate, seconds, channels)
    whole = an.analyze(x, rate)
    assert whole.clipped_runs == 3 * channels  # the flat tops, including those across blocks
    _same(an.analyze_blocks(an.array_blocks(x, block), rate, channels), whole)


def test_the_whole_clip_reads_what_each_measurement_reads_alone() -> None:
    """The block-wise analysis is the same measurement as the functions it accumulates."""
    rate = 44100
    x = _clip(rate, 6.0, 2, seed=3)
    result = an.analyze_blocks(an.array_blocks(x, 5000), rate, 2)
    spec = an.stft(x, rate)
    lufs, lra = an.loudness_and_range(x, rate)
    assert result.integrated_lufs == pytest.approx(lufs, abs=1e-9)
    assert result.loudness_range_lu == pytest.approx(lra, abs=1e-9)
    assert result.true_peak_dbtp == pytest.approx(an.true_peak_dbtp(x), abs=1e-9)
    assert (result.clipped_runs, result.clipped_samples) == an.clipped_runs(x)
    assert result.cutoff_hz == an.estimate_cutoff_hz(x, rate)
    assert result.noise_floor_dbfs == pytest.approx(an.noise_floor_dbfs(x, rate, spec=spec),
                                                    abs=1e-9)
    assert result.top_band_flatness == pytest.approx(
        an.top_band_flatness(x, rate, result.cutoff_hz, spec=spec), abs=1e-9)
    assert result.interchannel_correlation == pytest.approx(an.interchannel_correlation(x),
                                                            abs=1e-9)
    assert result.crest_factor_db == pytest.approx(an.crest_factor_db(x), abs=1e-9)
    assert result.dc_offset == pytest.approx(an.dc_offset(x), abs=1e-12)


def test_a_long_clip_reads_its_floor_from_a_histogram_within_its_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the size where every tracked value is kept, each bin's median comes from a
    histogram of 0.1 dB steps: within half a step of the exact median, and the same in blocks."""
    rate = 32000
    x = _clip(rate, 10.0, 2, seed=5)
    exact = an.analyze(x, rate)
    monkeypatch.setattr(an, "_EXACT_FLOOR_BYTES", 0)
    binned = an.analyze(x, rate)
    assert binned.noise_floor_dbfs == pytest.approx(exact.noise_floor_dbfs, abs=an._HIST_STEP_DB / 2)
    assert binned.noise_floor_under_cutoff_dbfs == pytest.approx(
        exact.noise_floor_under_cutoff_dbfs, abs=an._HIST_STEP_DB / 2)
    _same(an.analyze_blocks(an.array_blocks(x, 30011), rate, 2), binned)


def test_a_clip_shorter_than_a_welch_segment_is_one_segment() -> None:
    rate = 32000
    x = _clip(rate, 0.11, 2)  # 3520 samples: the segment would be 4096
    freqs, psd = signal.welch(x, fs=rate, nperseg=x.shape[-1], axis=-1)
    result = an.analyze_blocks(an.array_blocks(x, 1000), rate, 2)
    np.testing.assert_allclose(result.spectrum.freqs_hz, freqs)
    reference = 10 * np.log10(psd.astype(np.float64).mean(axis=0))
    audible = reference > -120.0  # scipy keeps float32 input in float32: its rounding floor
    np.testing.assert_allclose(result.spectrum.level_db[audible], reference[audible], atol=1e-3)
    assert audible.sum() > 100


def test_a_filter_run_on_pieces_equals_one_run() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 50001))
    sos = signal.butter(4, [0.05, 0.3], btype="band", output="sos")
    stream = filters.SosStream(sos, 2)
    pieces = [stream.process(x[:, a:a + size]) for a, size in
              ((0, 10), (10, 4096), (4106, 1), (4107, 30000), (34107, 15894))]
    out = np.concatenate([*pieces, stream.flush()], axis=-1)
    np.testing.assert_allclose(out, signal.sosfilt(sos, x), atol=1e-11)


def _write_long(path: Path, seconds: float, rate: int, channels: int) -> None:
    rng = np.random.default_rng(2)
    block = 1 << 18
    total = int(seconds * rate)
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as f:
        for start in range(0, total, block):
            t = (start + np.arange(min(block, total - start))) / rate
            x = 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + 0.3 * np.sin(2 * np.pi * 0.2 * t))
            f.write((x + 0.003 * rng.standard_normal((channels, t.size))).T.astype(np.float32))


def test_a_ten_minute_file_is_measured_in_bounded_memory(tmp_path: Path) -> None:
    """Ten minutes of 32 kHz mono are 77 MB as float32, and measuring them whole takes several
    times that (the file itself, then the STFT alone is 300 MB); read and measured a block at
    a time, the memory numpy allocates stays under the float32 size of the file, which
    measuring it whole could not (about 38 MB here)."""
    path = tmp_path / "long.wav"
    rate = 32000
    _write_long(path, 600.0, rate, 1)
    whole_bytes = 600 * rate * 4
    tracemalloc.start()
    try:
        record = an.analyze_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole_bytes, f"peak {peak / 1e6:.0f} MB"
    assert record["duration_s"] == pytest.approx(600.0)
    assert record["integrated_lufs"] == pytest.approx(
        an.integrated_lufs(sf.read(path, dtype="float32", frames=rate * 60)[0].T, rate), abs=1.0)


def test_a_file_read_in_blocks_names_itself_in_its_errors(tmp_path: Path) -> None:
    rate = 32000
    bad = tmp_path / "late-nan.wav"
    x = np.zeros((3 * rate, 1), np.float32)
    x[-5] = np.nan
    sf.write(bad, x, rate, subtype="FLOAT")
    info, blocks = read_blocks(bad, size=rate)
    assert (info.sample_rate, info.channels) == (rate, 1)
    with pytest.raises(AudioFileError, match=r"late-nan\.wav.*1 NaN or infinite samples"):
        list(blocks())
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, np.float32), rate)
    with pytest.raises(AudioFileError, match=r"short\.wav.*too short"):
        an.analyze_file(short)


# --- restoring a long file in segments (genrestore.stream) ----------------------------------

def _generator_like(path: Path, seconds: float, rate: int = 32000, channels: int = 1,
                    seed: int = 3) -> Path:
    """A MusicGen-like file: the synthetic song, band-limited, with hiss and clipped peaks."""
    from genrestore.degrade import degrade
    from genrestore.synth import render_song

    clean = render_song(44100, seconds, seed=seed)
    x, got = degrade(clean, 44100, "demo", seed=seed)
    if channels == 2:
        x = np.concatenate([x, 0.8 * x[:, ::-1]])
    if got != rate:
        from genrestore.stages.resample import resample

        x = resample(x, got, rate)
    sf.write(path, x.T, rate, subtype="FLOAT")
    return path


def _level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-30))


@pytest.mark.parametrize(("rate", "channels", "output_rate"), [(32000, 1, 44100),
                                                               (48000, 2, 48000)])
def test_a_long_file_restored_in_segments_is_the_file_restored_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int, channels: int,
        output_rate: int) -> None:
    """Every stage of ``auto`` (denoise forced on, the limiter working) on segments with
    margins, bwe's envelope from the whole file's power, the loudness stage's passes over the
    spill: the output is the whole-file output to float rounding, far under the issue's
    -80 dB (the guard is off for both; the tests below compare it)."""
    import dataclasses

    from genrestore import stream
    from genrestore.pipeline import load_preset, restore_file

    src = _generator_like(tmp_path / "long.wav", 40.0, rate, channels)
    preset = dataclasses.replace(load_preset("auto", {"denoise": {"adaptive": False}}),
                                 guard=False)
    whole = restore_file(src, tmp_path / "whole.wav", preset=preset, bits="32f",
                         output_rate_hz=output_rate)
    monkeypatch.setattr(stream, "THRESHOLD_S", 10.0)
    monkeypatch.setattr(stream, "SEGMENT_S", 8.0)
    monkeypatch.setattr(stream, "MARGIN_S", 3.0)
    parts = restore_file(src, tmp_path / "parts.wav", preset=preset, bits="32f",
                         output_rate_hz=output_rate)
    assert "segments" in parts.reports[-1].summary  # it was restored in segments
    a, _ = sf.read(tmp_path / "whole.wav", dtype="float64", always_2d=True)
    b, _ = sf.read(tmp_path / "parts.wav", dtype="float64", always_2d=True)
    assert a.shape == b.shape
    assert _level_db(a - b) - _level_db(a) < -80.0
    assert parts.output_lufs == pytest.approx(whole.output_lufs, abs=0.01)
    assert [r.acted for r in parts.reports[:-1]] == [r.acted for r in whole.reports
                                                     if r.stage != "guard"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no spill left


def test_a_long_file_needs_a_segments_memory_not_the_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Restored whole, memory grows with the file (the issue measured 16-18x its float32
    size); in segments it grows with a segment: on a 3-minute file with 15 s segments the
    peak of numpy's allocations is under a third of the whole-file run's."""
    import dataclasses

    from genrestore import stream
    from genrestore.pipeline import load_preset, restore_file

    src = _generator_like(tmp_path / "long.wav", 180.0)
    preset = dataclasses.replace(load_preset("auto"), guard=False)

    def peak(name: str) -> int:
        tracemalloc.start()
        try:
            restore_file(src, tmp_path / name, preset=preset)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole = peak("whole.wav")
    monkeypatch.setattr(stream, "THRESHOLD_S", 60.0)
    monkeypatch.setattr(stream, "SEGMENT_S", 15.0)
    monkeypatch.setattr(stream, "MARGIN_S", 3.0)
    parts = peak("parts.wav")
    assert parts < whole / 3, f"{parts / 1e6:.0f} MB in segments, {whole / 1e6:.0f} MB whole"


def _recording_guard(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every comparison the guard makes, as ``(what it measured of the output, findings)``."""
    from genrestore import guard

    seen: list = []
    compare = guard.compare

    def recorded(base, measured, reports, **kw):  # type: ignore[no-untyped-def]
        found = compare(base, measured, reports, **kw)
        seen.append((measured, found))
        return found

    monkeypatch.setattr(guard, "compare", recorded)
    return seen


def test_the_guard_of_a_long_file_reads_what_it_reads_whole_and_backs_off_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 500 Hz high-pass (the guarded preset of tests/test_auto.py) takes the two lowest
    octaves out: whole and in segments, the guard measures the same output (read a block at
    a time from the spill), finds the same loss, backs off ``eq`` and runs again.  The
    segments' output is the whole file's to float rounding (about 1e-7 of full scale, the
    test above), which moves no octave level, floor or loudness by 0.01 dB."""
    from genrestore import stream
    from genrestore.pipeline import load_preset, restore_file

    src = _generator_like(tmp_path / "long.wav", 40.0)
    harsh = tmp_path / "harsh.toml"
    harsh.write_text('guard = true\n[[stages]]\nstage = "resample"\n'
                     '[[stages]]\nstage = "eq"\nhighpass_hz = 500.0\n'
                     '[[stages]]\nstage = "loudness"\n')
    preset = load_preset(str(harsh))
    seen = _recording_guard(monkeypatch)
    whole = restore_file(src, tmp_path / "whole.wav", preset=preset, bits="32f")
    rounds = len(seen)
    monkeypatch.setattr(stream, "THRESHOLD_S", 10.0)
    monkeypatch.setattr(stream, "SEGMENT_S", 8.0)
    monkeypatch.setattr(stream, "MARGIN_S", 3.0)
    parts = restore_file(src, tmp_path / "parts.wav", preset=preset, bits="32f")
    assert rounds == 2
    assert len(seen) == 2 * rounds
    for (a, found_a), (b, found_b) in zip(seen[:rounds], seen[rounds:], strict=True):
        np.testing.assert_allclose(b.octave_levels_db, a.octave_levels_db, atol=0.01)
        assert b.floor_dbfs == pytest.approx(a.floor_dbfs, abs=0.01)
        assert b.lufs == pytest.approx(a.lufs, abs=0.01)
        assert b.clipped_runs == a.clipped_runs
        assert found_b == found_a
    assert "lost" in seen[0][1][0].problem
    assert seen[0][1][0].stage == "eq"
    guard_whole, guard_parts = whole.reports[-1], parts.reports[-1]
    assert guard_parts.details["backed_off"] == guard_whole.details["backed_off"] == ["eq"]
    assert guard_parts.summary == guard_whole.summary
    assert [r.stage for r in parts.reports] == [r.stage for r in whole.reports]  # no eq
    a, _ = sf.read(tmp_path / "whole.wav", dtype="float64", always_2d=True)
    b, _ = sf.read(tmp_path / "parts.wav", dtype="float64", always_2d=True)
    assert _level_db(a - b) - _level_db(a) < -80.0  # the output kept is the backed-off one
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no spill left


def test_the_guard_of_a_long_file_counts_flat_tops_across_its_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain gain keeps the input's flat tops: the guard of the segmented path counts them
    on the chunks that reach the extremes only, runs across chunk edges included, and reads
    the count that counting the written output reads."""
    from genrestore import stream
    from genrestore.pipeline import load_preset, restore_file

    rate = 44100
    x = _clip(rate, 24.0, 2, seed=1)
    peak = np.abs(x).max()
    for centre in (2 * rate - 2, 6 * rate + 1, 20 * rate):  # across 2 s chunk edges
        x[:, centre - 3:centre + 4] = peak
    src = tmp_path / "tops.wav"
    sf.write(src, x.T, rate, subtype="FLOAT")
    quiet = tmp_path / "quiet.toml"
    quiet.write_text('guard = true\n[[stages]]\nstage = "resample"\n'
                     '[[stages]]\nstage = "loudness"\ntarget_lufs = -35.0\n')
    seen = _recording_guard(monkeypatch)
    monkeypatch.setattr(stream, "THRESHOLD_S", 10.0)
    monkeypatch.setattr(stream, "_CHUNK_S", 2.0)
    result = restore_file(src, tmp_path / "out.wav", preset=load_preset(str(quiet)),
                          bits="32f", output_rate_hz=rate)
    assert "segments" in result.reports[0].details  # restored by the segmented path
    out, _ = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    expected = an.clipped_runs(out.T)[0]
    assert expected == result.analysis.clipped_runs == 3 * 2 + 3 * 2  # nothing new
    assert [m.clipped_runs for m, _ in seen] == [expected]
    assert result.reports[-1].summary == "guard: nothing got worse"


def test_the_memory_benchmark_measures_each_restore_in_a_child_of_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``bench --memory`` on two short files (the long ones take minutes): each row is one
    child's peak resident memory (a Python process with numpy loaded holds tens of MB, and
    these files are under 1 MB) and time, the table gives each time against the shortest,
    and the files stay in ``--out`` to be used again, written once."""
    from genrestore import bench
    from genrestore.cli import main

    assert main(["bench", "--memory", "--minutes", "0.05,0.1", "--channels", "2", "-q",
                 "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert (tmp_path / "memory.md").read_text("utf-8") == table
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| 0.")]
    assert [float(r[0]) for r in rows] == [0.05, 0.1]
    rss, wall, ratio = ([float(r[k].strip().rstrip("x")) for r in rows] for k in (1, 2, 3))
    assert all(20.0 < m < 4000.0 for m in rss)
    assert all(w > 0 for w in wall)
    assert ratio[0] == 1.0
    # The times are printed to 0.1 s and the ratio to 0.1: it lies within that rounding.
    assert (wall[1] - 0.05) / (wall[0] + 0.05) - 0.05 <= ratio[1] <= (
        (wall[1] + 0.05) / (wall[0] - 0.05) + 0.05)
    files = sorted(tmp_path.glob("long_*.wav"))
    assert [sf.info(str(f)).frames for f in files] == [96000, 192000]  # 3 s, 6 s at 32 kHz
    assert {sf.info(str(f)).channels for f in files} == {2}
    before = files[0].stat().st_mtime_ns
    again = bench.write_long_clip(files[0], 3.0, channels=2)
    assert again.stat().st_mtime_ns == before  # kept, not written again
    x, _ = sf.read(files[0], dtype="float32", always_2d=True)
    assert min(_level_db(x[:, 0]), _level_db(x[:, 1])) > -40.0  # music on both channels
    assert not np.array_equal(x[:, 0], x[:, 1])


@pytest.mark.slow
def test_a_ten_minute_file_restores_in_less_memory_than_holding_it_would_take(
        tmp_path: Path) -> None:
    """Issue 12: ``genrestore restore`` on a 10-minute mono 32 kHz file, as a user runs it,
    peaks under half of what restoring it whole needs at the least.  Whole, the stages hold
    at least 16 float32 copies of the clip (the issue measured 16-18x; 2.1 GB here): 16 x
    600 s x 32000 x 4 bytes = 1.23 GB.  In segments the file is never held."""
    from genrestore.bench import peak_memory_run, write_long_clip

    source = write_long_clip(tmp_path / "ten.wav", 600.0, rate=32000, channels=1)
    peak_mb, _ = peak_memory_run(["restore", str(source), "-o", str(tmp_path / "out.wav"), "-q"])
    whole_at_least_mb = 16 * 600 * 32000 * 4 / 2**20
    assert peak_mb < whole_at_least_mb / 2, f"{peak_mb:.0f} MB"
    assert sf.info(str(tmp_path / "out.wav")).frames == 600 * 44100


def _whole_then_in_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, src: Path,
                            preset: object) -> tuple[np.ndarray, np.ndarray, int, object]:
    """``src`` restored whole and then in 8 s segments (3 s margins), 32-bit float:
    ``(whole, segmented, output rate, the whole restoration's FileResult)``."""
    from genrestore import stream
    from genrestore.pipeline import restore_file

    whole = restore_file(src, tmp_path / "whole.wav", preset=preset, bits="32f")
    monkeypatch.setattr(stream, "THRESHOLD_S", 10.0)
    monkeypatch.setattr(stream, "SEGMENT_S", 8.0)
    monkeypatch.setattr(stream, "MARGIN_S", 3.0)
    parts = restore_file(src, tmp_path / "parts.wav", preset=preset, bits="32f")
    assert "segments" in parts.reports[-1].summary  # it was restored in segments
    a, out_rate = sf.read(tmp_path / "whole.wav", dtype="float64", always_2d=True)
    b, _ = sf.read(tmp_path / "parts.wav", dtype="float64", always_2d=True)
    assert a.shape == b.shape
    return a, b, out_rate, whole


def _each_half_is_the_whole_files(a: np.ndarray, b: np.ndarray, cut: int) -> None:
    for lo, hi in ((0, cut), (cut, len(a))):  # each half on its own: a quiet one too
        assert _level_db(a[lo:hi] - b[lo:hi]) - _level_db(a[lo:hi]) < -80.0


def test_a_long_file_with_quiet_and_loud_parts_is_compressed_as_a_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dynamics`` sets its threshold from its whole input's loud level: a segment of the
    quiet part must not be compressed against its own, lower, loud level (it would come out
    louder than the whole-file restoration by the gain reduction it should not have had)."""
    import dataclasses

    from genrestore.pipeline import load_preset

    src = _generator_like(tmp_path / "long.wav", 40.0)
    x, rate = sf.read(src, dtype="float32", always_2d=True)
    x[: len(x) // 2] *= np.float32(0.2)  # the first half 14 dB quieter: a range of 10+ LU
    sf.write(src, x, rate, subtype="FLOAT")
    preset = dataclasses.replace(load_preset("auto"), guard=False)
    a, b, out_rate, whole = _whole_then_in_segments(tmp_path, monkeypatch, src, preset)
    assert next(r for r in whole.reports if r.stage == "dynamics").acted
    _each_half_is_the_whole_files(a, b, round(len(x) // 2 * out_rate / rate))


def test_a_long_file_is_widened_with_one_side_gain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stereo`` solves its side gain from the whole file's sums: a first half with little
    above the stage's 250 Hz bass corner must not get a gain of its own (a segment solving
    for its own correlation widens it far more than the whole file does)."""
    import dataclasses

    from scipy import signal

    from genrestore.pipeline import load_preset

    src = _generator_like(tmp_path / "long.wav", 40.0)
    x, rate = sf.read(src, dtype="float32", always_2d=True)
    half = len(x) // 2
    sos = signal.butter(8, 400.0, fs=rate, output="sos")
    x[:half] = signal.sosfilt(sos, x[:half], axis=0).astype(np.float32)  # dark first half
    sf.write(src, x, rate, subtype="FLOAT")
    preset = dataclasses.replace(load_preset("auto", {"stereo": {"enabled": True}}), guard=False)
    a, b, out_rate, whole = _whole_then_in_segments(tmp_path, monkeypatch, src, preset)
    assert next(r for r in whole.reports if r.stage == "stereo").acted
    assert a.shape[1] == 2
    _each_half_is_the_whole_files(a, b, round(half * out_rate / rate))


@pytest.mark.parametrize("order", ["dynamics first", "dynamics twice"])
def test_what_a_stage_reads_of_the_whole_file_follows_the_stages_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """The first passes run in the stages' order, each stage with what it reads of its own
    whole input: ``dynamics`` before ``bwe`` and ``stereo`` changes what they read, and a
    second ``dynamics`` reads the first one's output, not its input."""
    import dataclasses

    from genrestore.pipeline import load_preset

    src = _generator_like(tmp_path / "long.wav", 40.0)
    x, rate = sf.read(src, dtype="float32", always_2d=True)
    x[: len(x) // 2] *= np.float32(0.2)  # quiet first half: dynamics acts
    sf.write(src, x, rate, subtype="FLOAT")
    auto = load_preset("auto", {"stereo": {"enabled": True}})
    stages = {s.name: s for s in auto.stages}
    names = (["declip", "resample", "dynamics", "denoise", "bwe", "stereo", "eq", "loudness"]
             if order == "dynamics first" else
             ["declip", "resample", "denoise", "bwe", "dynamics", "stereo", "eq", "dynamics",
              "loudness"])
    preset = dataclasses.replace(auto, stages=tuple(stages[n] for n in names), guard=False)
    a, b, out_rate, whole = _whole_then_in_segments(tmp_path, monkeypatch, src, preset)
    assert all(r.acted for r in whole.reports if r.stage in ("dynamics", "stereo", "bwe"))
    _each_half_is_the_whole_files(a, b, round(len(x) // 2 * out_rate / rate))
