"""Delivery targets (issue 13, part 2): one table of loudness and true-peak ceilings, used by
``--target``, ``load_preset(target=...)`` and ``restore(target=...)``; ``--set`` still wins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import song
from genrestore import __version__
from genrestore.analysis import integrated_lufs, true_peak_dbtp
from genrestore.cli import main
from genrestore.errors import ParameterError
from genrestore.manifest import MANIFEST_NAME, settings_digest
from genrestore.pipeline import load_preset, restore
from genrestore.stages.loudness import Loudness
from genrestore.targets import TARGETS, get_target, target_names

#: The loudness stage lands within this of its target (its tolerance_lu).
TOLERANCE_LU = 0.2


def loudness_stage(preset) -> Loudness:
    return next(s for s in preset.stages if s.name == "loudness")


def test_every_target_is_a_valid_loudness_setting_with_a_source() -> None:
    assert target_names() == ["spotify", "apple", "youtube", "amazon", "deezer", "tidal",
                              "soundcloud", "ebu-r128", "podcast"]
    for target in TARGETS.values():
        Loudness(target_lufs=target.integrated_lufs, ceiling_dbtp=target.true_peak_dbtp)
        assert len(target.source) > 20
    # The figures the standards fix.
    assert (TARGETS["ebu-r128"].integrated_lufs, TARGETS["ebu-r128"].true_peak_dbtp) == (-23, -1)
    assert (TARGETS["podcast"].integrated_lufs, TARGETS["podcast"].true_peak_dbtp) == (-16, -1)
    assert (TARGETS["spotify"].integrated_lufs, TARGETS["spotify"].true_peak_dbtp) == (-14, -1)
    with pytest.raises(ParameterError, match=r"unknown target 'myspace'.*spotify"):
        get_target("myspace")


def test_a_target_sets_the_loudness_stage_and_overrides_still_win() -> None:
    stage = loudness_stage(load_preset("auto", target="ebu-r128"))
    assert (stage.target_lufs, stage.ceiling_dbtp) == (-23.0, -1.0)
    assert stage.max_limiting_db == load_preset("auto").stages[-1].max_limiting_db
    stage = loudness_stage(load_preset("auto", {"loudness": {"target_lufs": -20.0}},
                                       target="amazon"))
    assert (stage.target_lufs, stage.ceiling_dbtp) == (-20.0, -2.0)
    with pytest.raises(ParameterError, match="no loudness stage"):
        load_preset("none", target="spotify")


def test_the_settings_digest_changes_with_the_target() -> None:
    # The batch manifest hashes the preset: a target is in it, so changing it redoes a batch.
    def digest(target: str | None) -> str:
        return settings_digest(load_preset("auto", target=target), 44100, "24", "wav",
                               __version__)

    assert digest("ebu-r128") == digest("ebu-r128")
    assert len({digest(None), digest("ebu-r128"), digest("apple"), digest("amazon")}) == 4
    # Spotify's figures are auto's own: the same output, so the same settings.
    assert digest("spotify") == digest(None)


@pytest.mark.parametrize("name", ["ebu-r128", "amazon", "podcast"])
def test_restore_reaches_the_target_under_its_ceiling(name: str) -> None:
    clip = song(44100, 4.0)
    out, rate = restore(clip, 44100, preset="full", target=name)
    target = TARGETS[name]
    assert abs(integrated_lufs(out, rate) - target.integrated_lufs) <= TOLERANCE_LU
    assert true_peak_dbtp(out) <= target.true_peak_dbtp + 0.01


def test_cli_target_with_set_and_manifest(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        sf.write(src / f"s{i}.wav", song(44100, 3.0).T * (0.5 + 0.3 * i), 44100,
                 subtype="FLOAT")
    out = tmp_path / "out"
    base = ["restore", str(src), "-o", f"{out}/", "--preset", "full", "--jobs", "1", "-q"]
    assert main([*base, "--target", "ebu-r128"]) == 0
    for path in out.glob("*.wav"):
        audio, rate = sf.read(path, always_2d=True)
        assert abs(integrated_lufs(audio.T, rate) + 23.0) <= TOLERANCE_LU
    assert main([*base, "--target", "ebu-r128"]) == 0  # same target: done, nothing redone
    assert len((out / MANIFEST_NAME).read_text().splitlines()) == 2
    # --set wins over the target, and the changed settings redo the batch.
    assert main([*base, "--target", "ebu-r128", "--set", "loudness.target_lufs=-18"]) == 0
    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert len(records) == 4
    for path in out.glob("*.wav"):
        audio, rate = sf.read(path, always_2d=True)
        assert abs(integrated_lufs(audio.T, rate) + 18.0) <= TOLERANCE_LU
        assert true_peak_dbtp(audio.T.astype(np.float32)) <= -1.0 + 0.01


def test_cli_target_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clip = tmp_path / "c.wav"
    sf.write(clip, song(44100, 1.0).T, 44100)
    with pytest.raises(SystemExit) as exc:
        main(["restore", str(clip), "--target", "myspace"])
    assert exc.value.code == 2
    assert main(["restore", str(clip), "--preset", "none", "--target", "spotify"]) == 2
    assert "no loudness stage" in capsys.readouterr().err
    assert not (tmp_path / "c_restored.wav").exists()
    assert main(["targets"]) == 0
    listing = capsys.readouterr().out
    assert "ebu-r128   -23 LUFS, -1 dBTP" in listing
    assert "EBU R 128" in listing
