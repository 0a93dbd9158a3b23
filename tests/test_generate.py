"""MusicGen in the loop (issue 13, part 1): generate -> restore -> write, on the CPU, with a
tiny randomly initialised MusicGen built here (no weights, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import genrestore
from genrestore.analysis import integrated_lufs, true_peak_dbtp
from genrestore.cli import main
from genrestore.errors import ParameterError
from genrestore.generate import (
    MAX_SLUG_CHARS,
    file_names,
    generate,
    generate_files,
    load_model,
    prompt_slug,
    read_prompts,
    tags_for,
)
from genrestore.io import read_tags
from genrestore.manifest import MANIFEST_NAME
from scripts.tiny_musicgen import tiny_musicgen

RATE = 32000  # every MusicGen checkpoint's EnCodec rate
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_musicgen(tmp_path_factory.mktemp("models") / "tiny-musicgen")


@pytest.fixture(scope="module")
def loaded(tiny: Path):
    return load_model(tiny, device="cpu")


def test_generate_makes_the_requested_length_at_the_model_rate(loaded) -> None:
    clips, rate = generate(["calm piano", "jazz drums with brushes"], model=loaded,
                           duration_s=0.75, seed=1)
    assert rate == RATE
    assert [c.shape for c in clips] == [(1, 24000), (1, 24000)]
    for clip in clips:
        assert clip.dtype == np.float32
        assert np.all(np.isfinite(clip))
        assert np.sqrt(np.mean(clip**2)) > 1e-4  # the codec decoded something, not silence
    with pytest.raises(ParameterError, match=r"at most 2\.5 s"):  # 128 positions, 50 steps/s
        generate(["calm piano"], model=loaded, duration_s=3.0, seed=1)


def test_a_seed_gives_the_same_clip_alone_or_in_a_batch(loaded) -> None:
    import torch

    state = torch.random.get_rng_state()
    batch, _ = generate(["calm piano", "lofi beat"], model=loaded, duration_s=0.5, seed=11)
    alone, _ = generate(["lofi beat"], model=loaded, duration_s=0.5, seed=11)
    other, _ = generate(["lofi beat"], model=loaded, duration_s=0.5, seed=12)
    np.testing.assert_array_equal(batch[1], alone[0])
    assert not np.array_equal(alone[0], other[0])
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's RNG was changed"


@pytest.mark.parametrize(("kind", "channels"), [("stereo", 2), ("melody", 1)])
def test_stereo_and_melody_checkpoints(tmp_path: Path, kind: str, channels: int) -> None:
    model = load_model(tiny_musicgen(tmp_path / kind, kind=kind), device="cpu")
    clips, rate = generate(["rain"], model=model, duration_s=0.5, seed=2)
    assert clips[0].shape == (channels, RATE // 2)
    restored, out_rate = genrestore.restore(clips[0], rate, preset="auto")
    assert restored.shape == (channels, 22050)
    assert out_rate == 44100


def test_generate_restore_write_from_the_command_line(tiny: Path, tmp_path: Path, loaded,
                                                      capsys) -> None:
    out = tmp_path / "out"
    prompts = ["Calm piano — café", "calm piano cafe"]  # one slug: the second name is made unique
    argv = ["generate", *prompts, "--model", str(tiny), "--duration", "1", "--seed", "7",
            "-o", str(out), "--format", "flac", "-q"]
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["calm-piano-cafe-seed7-2.wav", "calm-piano-cafe-seed7-2_restored.flac",
                     "calm-piano-cafe-seed7.wav", "calm-piano-cafe-seed7_restored.flac",
                     MANIFEST_NAME]
    raw_path, restored_path = out / "calm-piano-cafe-seed7.wav", out / "calm-piano-cafe-seed7_restored.flac"
    raw, rate = sf.read(raw_path, dtype="float32", always_2d=True)
    assert (rate, sf.info(raw_path).subtype) == (RATE, "FLOAT")
    # The raw file is the generator's output, bit for bit (the same prompt and seed in memory).
    (expected,), _ = generate([prompts[0]], model=loaded, duration_s=1.0, seed=7)
    np.testing.assert_array_equal(raw.T, expected)
    # The restored file is that clip restored (auto, 44.1 kHz) and dithered to 24 bits.
    restored, rate = sf.read(restored_path, dtype="float64", always_2d=True)
    assert (rate, sf.info(restored_path).subtype) == (44100, "PCM_24")
    reference, _ = genrestore.restore(expected, RATE, preset="auto")
    # TPDF dither (+-1 LSB) and rounding (+-0.5 LSB) at 24 bits.
    np.testing.assert_allclose(restored.T, reference, rtol=0, atol=1.5 / 2**23 + 1e-9)
    assert integrated_lufs(restored.T, 44100) == pytest.approx(-14.0, abs=0.2)
    assert true_peak_dbtp(restored.T) <= -1.0 + 0.1
    # Tags: the prompt as the title, every setting in the comment.
    for path, preset in ((raw_path, None), (restored_path, "auto")):
        tags = read_tags(path)
        assert tags["title"] == prompts[0]
        assert json.loads(tags["comment"]) == {"prompt": prompts[0], "model": str(tiny), "seed": 7,
                                               "preset": preset, "duration_s": 1.0}
    # The manifest: one line per prompt, raw file in, restored file out, and what made it.
    lines = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert [(r["prompt"], r["seed"], r["model"], r["preset"], r["status"]) for r in lines] == [
        (p, 7, str(tiny), "auto", "done") for p in prompts]
    assert lines[0]["input"] == str(raw_path.resolve())
    assert lines[0]["output"] == str(restored_path.resolve())
    # Run again: nothing is replaced, the new files get names of their own.
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.*") if p.suffix != ".jsonl"}
    assert main(argv) == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before
    assert (out / "calm-piano-cafe-seed7-3.wav").is_file()
    assert (out / "calm-piano-cafe-seed7-4_restored.flac").is_file()
    # `genrestore restore` of the folder with the same settings finds the restored files done.
    capsys.readouterr()
    assert main(["restore", str(out), "--format", "flac", "--dry-run"]) == 0
    assert "0 to restore, 4 already done, 0 refused" in capsys.readouterr().err


def test_no_restore_writes_the_raw_clips_only(tiny: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,prompt\n1,lofi beat with rain\n2,\n", encoding="utf-8")
    assert main(["generate", "--prompts", str(prompts), "--model", str(tiny), "--duration",
                 "0.5", "--seed", "3", "-o", str(tmp_path / "out"), "--no-restore", "-q"]) == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["genrestore-manifest.jsonl", "lofi-beat-with-rain-seed3.wav"]
    (line,) = [json.loads(x) for x in (tmp_path / "out" / MANIFEST_NAME).read_text().splitlines()]
    assert line["output"] == line["input"]
    assert "preset" not in line


def test_a_missing_model_is_one_line_and_no_network(tiny: Path, tmp_path: Path) -> None:
    # A Hugging Face cache with the tiny model in it, as `hf download` lays it out; any
    # connection attempt (DNS included) is recorded on stderr and refused.
    cache = tmp_path / "hub"
    repo = cache / "models--genrestore-test--tiny-musicgen"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(tiny, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    code = textwrap.dedent(f"""
        import socket, sys
        def refuse(*args, **kwargs):
            print("NETWORK ATTEMPT", args[:2], file=sys.stderr)
            raise OSError("no network in this test")
        socket.socket.connect = refuse
        socket.getaddrinfo = refuse
        socket.create_connection = refuse
        from genrestore.cli import main
        out = {str(tmp_path / "out")!r}
        first = main(["generate", "calm piano", "--model", "facebook/musicgen-small", "-o", out])
        second = main(["generate", "calm piano", "--model", "./no/such/folder", "-o", out])
        third = main(["generate", "calm piano", "--model", "genrestore-test/tiny-musicgen",
                      "--duration", "0.5", "--seed", "1", "-o", out, "-q"])
        print(first, second, third)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "hf-home"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2", "0"], done.stderr
    errors = done.stderr.splitlines()
    assert errors == [
        f"genrestore: error: facebook/musicgen-small: model not found: not a folder here and "
        f"not in the Hugging Face cache ({cache}); genrestore downloads nothing: fetch it once "
        f"with `hf download facebook/musicgen-small`, or give a folder",
        "genrestore: error: ./no/such/folder: no such model folder",
    ]
    # The model found in the cache by its name made its two files, and nothing else did.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "calm-piano-seed1.wav", "calm-piano-seed1_restored.wav", MANIFEST_NAME]


def test_usage_errors_come_before_the_model_is_loaded(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "absent")
    out = ["-o", str(tmp_path / "out")]
    cases = [
        (["generate", "--model", missing], "no prompts"),
        (["generate", "--prompts", str(tmp_path / "p.txt"), "--model", missing], "p.txt: no such file"),
        (["generate", "x", "--model", missing, "--preset", "loud"], "loud"),
        (["generate", "x", "--model", missing, "--set", "denoise.volume=1"], "unknown parameter 'volume'"),
        (["generate", "  ", "--model", missing], "prompt 1 is empty"),
        (["generate", "x", "--model", missing, "--duration", "0"], "duration must be at least"),
        (["generate", "x", "--model", missing, "--format", "flac", "--bits", "32f"], "FLAC"),
        (["generate", "x", "--model", missing], "no such model folder"),
    ]
    for argv, message in cases:
        assert main([*argv, *out]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, (argv, err)
        assert message in err[0], (argv, err)
    assert sorted(os.listdir(tmp_path)) == []


def test_a_folder_that_is_not_musicgen_is_named(tmp_path: Path) -> None:
    import transformers as tf

    tf.T5Config(vocab_size=8, d_model=4, d_ff=8, num_layers=1, num_heads=1,
                d_kv=4).save_pretrained(tmp_path / "t5")
    with pytest.raises(ParameterError, match=r"t5: a 't5' model, not MusicGen"):
        load_model(tmp_path / "t5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="not a MusicGen model folder"):
        load_model(tmp_path / "empty")


def test_prompt_slugs_are_short_ascii_and_file_names_never_collide(tmp_path: Path) -> None:
    assert prompt_slug("Lo-fi hip hop, 90 BPM — café piano & rain!") == (
        "lo-fi-hip-hop-90-bpm-cafe-piano-rain")
    assert prompt_slug("夜の雨") == "prompt"
    assert prompt_slug("../../etc/passwd") == "etc-passwd"
    long = prompt_slug("a very long prompt " * 20)
    assert len(long) <= MAX_SLUG_CHARS
    assert not long.endswith("-")
    assert prompt_slug("x" * 100) == "x" * MAX_SLUG_CHARS
    (tmp_path / "rain-seed5_restored.wav").write_bytes(b"")  # a restored name taken on its own
    names = file_names(["Rain", "rain!", "Snow"], 5, tmp_path)
    assert [(raw.name, restored.name) for raw, restored in names] == [
        ("rain-seed5-2.wav", "rain-seed5-2_restored.wav"),
        ("rain-seed5-3.wav", "rain-seed5-3_restored.wav"),
        ("snow-seed5.wav", "snow-seed5_restored.wav")]


def test_prompt_files(tmp_path: Path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("\ufeff# a comment\ncalm piano\n\n  jazz drums  \n", encoding="utf-8")
    assert read_prompts(txt) == ["calm piano", "jazz drums"]
    csv_file = tmp_path / "p.csv"
    csv_file.write_text('"calm piano, slow",1\nlofi beat,2\n', encoding="utf-8")
    assert read_prompts(csv_file) == ["calm piano, slow", "lofi beat"]
    (tmp_path / "p.json").write_text("[]")
    with pytest.raises(ParameterError, match=r"p.json: prompts come in a .txt"):
        read_prompts(tmp_path / "p.json")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ParameterError, match=r"bad\.txt: not UTF-8"):
        read_prompts(tmp_path / "bad.txt")


def test_generate_files_in_process(loaded, tmp_path: Path) -> None:
    seen = []
    results = generate_files(["soft rain"], tmp_path, model=loaded, duration_s=0.5, seed=4,
                             preset="gentle", manifest=False, progress=seen.append)
    assert seen == results
    (item,) = results
    assert item.error is None
    assert item.restored == tmp_path / "soft-rain-seed4_restored.wav"
    assert item.result.destination == item.restored
    assert item.result.source == item.raw
    assert json.loads(read_tags(item.restored)["comment"])["preset"] == "gentle"
    assert not (tmp_path / MANIFEST_NAME).exists()
    with pytest.raises(ParameterError, match=r"at most 2\.5 s"):
        generate_files(["soft rain"], tmp_path / "long", model=loaded, duration_s=3.0, seed=4)
    assert not (tmp_path / "long").exists()


def test_manifest_lines_old_and_new_read_alike(tmp_path: Path) -> None:
    from genrestore.manifest import Manifest, Record

    old = {"input": str(tmp_path / "a.wav"), "input_sha256": "1" * 64, "settings": "s",
           "version": "0.1.0", "status": "done", "output": str(tmp_path / "a_restored.wav"),
           "output_sha256": "2" * 64, "lufs": -14.0, "true_peak_dbtp": -1.0, "error": None}
    new = {**old, "input": str(tmp_path / "b.wav"), "prompt": "rain", "model": "m", "seed": 3,
           "preset": "auto", "duration_s": 2.0, "a_field_from_a_later_version": 1}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    records = Manifest(tmp_path).records
    a, b = (records[os.path.realpath(tmp_path / n)] for n in ("a.wav", "b.wav"))
    assert (a.prompt, a.seed, a.preset) == (None, None, None)
    assert (b.prompt, b.model, b.seed, b.preset, b.duration_s) == ("rain", "m", 3, "auto", 2.0)
    # A restore batch's line leaves the generation fields out, as before they existed.
    Manifest(tmp_path / "restore").append(Record(**old))
    (line,) = (tmp_path / "restore" / MANIFEST_NAME).read_text().splitlines()
    assert set(json.loads(line)) == set(old)


def test_a_prompt_that_fails_to_generate_fails_alone(loaded, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A generation error on one prompt (out of device memory, say) is that prompt's one-line
    error; the other prompts are generated, restored and written."""
    import genrestore.generate as gen

    real = gen._generate_one

    def fails_on_rain(model, prompt, *args, **kwargs):
        if "rain" in prompt:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")
        return real(model, prompt, *args, **kwargs)

    monkeypatch.setattr(gen, "_generate_one", fails_on_rain)
    results = generate_files(["soft rain", "warm pads"], tmp_path, model=loaded,
                             duration_s=0.5, seed=4, manifest=False)
    assert results[0].raw is None
    assert "generation failed (CUDA out of memory. Tried to allocate 2.00 GiB)" in results[0].error
    assert results[1].error is None
    assert results[1].restored is not None
    assert results[1].restored.is_file()


def test_a_cuda_device_without_cuda_is_a_usage_error(tiny: Path, tmp_path: Path, capsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["generate", "calm", "--model", str(tiny), "--device", "cuda",
                 "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no CUDA device" in err[0]


def test_a_long_prompt_keeps_a_whole_json_comment_in_a_wav(tmp_path: Path) -> None:
    """A WAV INFO string holds about 2 kB: the comment's prompt is shortened so the JSON (and
    model, seed, preset) survive whole; the title is cut by the writer."""
    from genrestore.io import write_audio

    prompt = "slow ambient piano with rain and distant thunder, é " * 60  # ~3,100 bytes
    tags = tags_for(prompt, "facebook/musicgen-small", 7, "auto", 2.0)
    path = write_audio(tmp_path / "long.wav", np.zeros((1, 3200), np.float32), 32000, tags=tags)
    comment = json.loads(read_tags(path)["comment"])
    assert (comment["model"], comment["seed"], comment["preset"]) == (
        "facebook/musicgen-small", 7, "auto")
    assert prompt.startswith(comment["prompt"].removesuffix("…"))
    assert len(comment["prompt"]) > 500
