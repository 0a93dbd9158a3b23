"""The quality benchmark on a tiny self-generated corpus; the CI guard that `auto` (the
default) and `full` keep beating `none`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genrestore import bench
from genrestore.cli import main
from genrestore.io import write_audio
from genrestore.synth import render_song

DEGRADATIONS = ("musicgen_like", "bandlimited", "noisy", "clipped", "mp3_stereo")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for seed in (11, 12, 13):
        write_audio(folder / f"song{seed}.flac", render_song(44100, 7.0, seed=seed), 44100,
                    bits="24")
    return folder


@pytest.fixture(scope="module")
def rows(corpus: Path) -> list[bench.QualityRow]:
    pytest.importorskip("av")
    files = [(p, p.name) for p in sorted(corpus.iterdir())]
    found, errors = bench.quality_benchmark(files, degradations=DEGRADATIONS,
                                            presets=("none", "auto", "full"), seconds=6.0)
    assert errors == []
    return found


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["auto", "full"])
def test_preset_beats_none_on_lsd_for_every_degradation(rows: list[bench.QualityRow],
                                                        preset: str) -> None:
    means = bench.quality_means(rows)
    for degradation in DEGRADATIONS:
        none, restored = means[(degradation, "none")], means[(degradation, preset)]
        assert restored["lsd"] < none["lsd"], degradation
        assert restored["lsd_high"] < none["lsd_high"] - 0.5, degradation


@pytest.mark.slow
def test_never_worse_than_none_on_any_clip(rows: list[bench.QualityRow]) -> None:
    assert bench.worse_than_none(rows, metric="lsd", margin=0.0) == []


def test_worse_than_none_lists_the_clip() -> None:
    def row(preset: str, mos: float) -> bench.QualityRow:
        return bench.QualityRow("a.wav", "noisy", preset, {"visqol_moslqo": mos, "lsd": 1.0},
                                10.0, "")
    worse = bench.worse_than_none([row("none", 3.0), row("default", 2.9), row("gentle", 2.97)])
    assert [(r.preset, round(d, 2)) for r, d in worse] == [("default", -0.1)]
    assert "a.wav / noisy / default: -0.100" in bench.format_quality(
        [row("none", 3.0), row("default", 2.9)])


def test_excerpt_is_deterministic_and_clipped_to_length() -> None:
    x = np.arange(100.0)[np.newaxis]
    np.testing.assert_array_equal(bench.excerpt(x, 10, 3.0), x[:, 33:63])
    assert bench.excerpt(x, 10, 30.0).shape[-1] == 100


@pytest.mark.slow
def test_cli_bench_clean_and_real_write_results(corpus: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    assert main(["bench", "--clean", str(corpus), "--degrade", "bandlimited", "--clips", "2",
                 "--seconds", "3", "--no-visqol", "--out", str(out)]) == 0
    lines = (out / "quality.csv").read_text().splitlines()
    assert lines[0].startswith("clip,degradation,preset,lsd,")
    assert len(lines) == 1 + 2 * 2  # two clips x one degradation x two presets
    assert "| bandlimited | auto | 2 |" in capsys.readouterr().out
    assert main(["bench", "--real", str(corpus), "--clips", "1", "--out", str(out)]) == 0
    assert "| auto | 1 |" in (out / "real.md").read_text()
    assert main(["bench", "--clean", str(corpus), "--degrade", "vinyl"]) == 2


def test_cli_bench_declip(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                          ) -> None:
    out = tmp_path / "declip"
    assert main(["bench", "--declip", str(corpus), "--clips", "1", "--seconds", "3",
                 "--out", str(out)]) == 0
    table = (out / "declip.md").read_text()
    assert "| 2 % |" in table
    assert "| 3 % |" in table
    rows = bench.declip_benchmark([(p, p.name) for p in sorted(corpus.iterdir())][:1],
                                  seconds=3.0)[0]
    assert all(r.gain_db > 0.0 for r in rows)  # declipping makes no clipped song worse


def test_cli_bench_match(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                         ) -> None:
    out = tmp_path / "match"
    assert main(["bench", "--match", str(corpus), "--clips", "2", "--seconds", "3",
                 "--degrade", "bandlimited", "--out", str(out), "-q"]) == 0
    table = (out / "match.md").read_text()
    assert "| song11.flac | song13.flac | bandlimited |" in table  # --clips 2: first, last
    assert "| song13.flac | song11.flac | bandlimited |" in table
    files = [(p, p.name) for p in sorted(corpus.iterdir())][:2]
    rows, errors = bench.match_benchmark(files, seconds=3.0, degradations=("bandlimited",))
    assert errors == []
    for r in rows:
        assert r.after_db < r.before_db
        assert r.self_change_db < 0.1  # a clip matched to itself (read from a file)
