"""Text to music with MusicGen, restored in memory, written with what made it.

:func:`generate` turns prompts into ``(channels, samples)`` float32 clips with transformers'
MusicGen (``MusicgenForConditionalGeneration``; the melody checkpoints'
``MusicgenMelodyForConditionalGeneration``, text-conditioned).  :func:`generate_files` also
restores each clip with a preset (:func:`genrestore.pipeline.run_pipeline`, no file read back)
and writes the raw clip and the restored one, named from the prompt and the seed, with the
prompt, model, seed and preset in each file's tags and in the folder's manifest.

Models come from a local folder (``save_pretrained``) or the Hugging Face cache only
(``local_files_only``): genrestore never downloads anything; a model that is not there is a
one-line :class:`~genrestore.errors.ParameterError` naming it.  Needs the ``musicgen`` extra
(transformers) and torch; both are imported when a model is loaded, never by
``import genrestore``.

Each prompt is generated on its own, with torch's random generators seeded by ``seed`` (and
put back as they were afterwards), so a prompt and a seed give the same clip on the same
device and software whether generated alone or in a batch.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrestore import __version__
from genrestore.errors import FILE_ERRORS, GenrestoreError, ParameterError
from genrestore.io import MIN_DURATION_S, write_audio
from genrestore.manifest import Manifest, Record, file_digest, settings_digest
from genrestore.preset import (
    DEFAULT_PRESET,
    OUTPUT_BITS,
    OUTPUT_FORMATS,
    OUTPUT_RATES_HZ,
    Overrides,
    Preset,
    load_preset,
)

log = logging.getLogger(__name__)

DEFAULT_DURATION_S = 10.0
#: Longest prompt part of a file name, in characters (the seed and suffixes come on top).
MAX_SLUG_CHARS = 48
#: What a restored file's name adds to its raw file's stem (as ``genrestore restore`` does).
RESTORED_SUFFIX = "_restored"
#: The transformers model types this module drives, and their classes.
MODEL_CLASSES = {"musicgen": "MusicgenForConditionalGeneration",
                 "musicgen_melody": "MusicgenMelodyForConditionalGeneration"}


@dataclass(frozen=True)
class MusicGen:
    """A loaded MusicGen checkpoint (:func:`load_model`); pass it as ``model=`` to generate
    many times without loading again."""

    name: str
    model: Any  # the transformers model, in eval mode, on ``device``
    tokenizer: Any
    sample_rate: int
    frame_rate: float  # codec frames (decoder steps) per second
    delay_steps: int  # extra steps of the codebook delay pattern
    max_steps: int  # the decoder's longest sequence
    device: str

    @property
    def max_duration_s(self) -> float:
        """The longest clip the decoder can make in one pass."""
        return (self.max_steps - self.delay_steps) / self.frame_rate


def load_model(model: str | os.PathLike[str], *, device: str | None = None) -> MusicGen:
    """Load a MusicGen checkpoint from a folder or the Hugging Face cache (never the network).

    ``model`` is a folder written by ``save_pretrained`` or a Hugging Face repository name
    (``facebook/musicgen-small``, ``-medium``, ``-large``, ``-melody``, ``-stereo-small``...)
    already in the cache.  ``device`` is a torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``);
    default: the first GPU when there is one, else the CPU.  Raises :class:`ParameterError`
    (one line naming the model) when it is not there, is not MusicGen, or transformers is not
    installed.
    """
    with _offline():
        return _load(os.fspath(model), device)


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face offline mode while a model loads.  ``local_files_only`` alone is not
    enough: huggingface_hub (2.x) fetches a registry from huggingface.co to build the headers
    of a request it will not send.  Its ``HF_HUB_OFFLINE`` is read when it is first imported
    and kept as a module constant: both are set here and put back afterwards."""
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        try:
            from huggingface_hub import constants
        except ImportError:  # load_model says what to install
            yield
            return
        saved = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = saved
    finally:
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def _load(name: str, device: str | None) -> MusicGen:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ParameterError("generate needs transformers and torch: "
                             "pip install 'genrestore[musicgen]'") from exc
    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ParameterError(_not_found(name)) from exc
    class_name = MODEL_CLASSES.get(getattr(config, "model_type", ""))
    if class_name is None:
        raise ParameterError(f"{name}: a {config.model_type!r} model, not MusicGen "
                             f"({', '.join(MODEL_CLASSES)})")
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if str(chosen).startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"--device {chosen}: this torch has no CUDA device (use --device cpu)")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, local_files_only=True)
        net = getattr(transformers, class_name).from_pretrained(name, local_files_only=True)
        net = net.to(chosen).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParameterError(f"{name}: cannot load the model ({reason})") from exc
    codebooks = int(config.decoder.num_codebooks) // int(config.decoder.audio_channels)
    return MusicGen(name=name, model=net, tokenizer=tokenizer,
                    sample_rate=int(config.audio_encoder.sampling_rate),
                    frame_rate=float(config.audio_encoder.frame_rate),
                    delay_steps=codebooks - 1,
                    max_steps=int(config.decoder.max_position_embeddings) - 1,
                    device=str(chosen))


def _not_found(name: str) -> str:
    """Why ``name`` could not be loaded, as one line."""
    path = Path(name).expanduser()
    if path.is_dir():
        return f"{name}: not a MusicGen model folder (no config.json; write one with save_pretrained)"
    if path.exists():
        return f"{name}: is a file; give a model folder or a Hugging Face model name"
    if name.startswith((".", "/", "~", os.sep)) or name.count("/") > 1:
        return f"{name}: no such model folder"
    from huggingface_hub import constants

    return (f"{name}: model not found: not a folder here and not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); genrestore downloads nothing: fetch it once with "
            f"`hf download {name}`, or give a folder")


def _model(model: str | os.PathLike[str] | MusicGen, device: str | None) -> MusicGen:
    return model if isinstance(model, MusicGen) else load_model(model, device=device)


def _check(prompts: Sequence[str], duration_s: float) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    checked = [str(p).strip() for p in prompts]
    if not checked:
        raise ParameterError("no prompts")
    for number, prompt in enumerate(checked, 1):
        if not prompt:
            raise ParameterError(f"prompt {number} is empty")
    if not (math.isfinite(duration_s) and duration_s >= MIN_DURATION_S):
        raise ParameterError(f"duration must be at least {MIN_DURATION_S:g} s, not {duration_s:g}")
    return checked


def new_seed() -> int:
    """A fresh random seed (what ``seed=None`` draws; it is recorded with every file)."""
    return secrets.randbelow(2**31)


def generate(
    prompts: Sequence[str],
    *,
    model: str | os.PathLike[str] | MusicGen,
    duration_s: float = DEFAULT_DURATION_S,
    seed: int | None = None,
    guidance_scale: float | None = None,
    device: str | None = None,
) -> tuple[list[np.ndarray], int]:
    """Generate one clip per prompt; returns ``([(channels, samples) float32, ...], rate)``.

    ``model`` is a :class:`MusicGen` or what :func:`load_model` takes.  Each clip is
    ``duration_s`` long (at most :attr:`MusicGen.max_duration_s`; the checkpoints were
    trained on 30 s) at the model's rate (32 kHz), mono or stereo as the checkpoint makes it,
    unrestored: peaks above full scale are kept.  Sampling as MusicGen is meant to be used
    (``do_sample``; top-k and the other settings from the checkpoint's generation config);
    ``guidance_scale`` overrides its classifier-free guidance (3.0 in the checkpoints).
    ``seed`` (default: a random one) seeds each prompt's generation.
    """
    checked = _check(prompts, duration_s)
    loaded = _model(model, device)
    _steps(loaded, duration_s)
    chosen = new_seed() if seed is None else int(seed)
    return ([_generate_one(loaded, p, duration_s, chosen, guidance_scale) for p in checked],
            loaded.sample_rate)


def _steps(loaded: MusicGen, duration_s: float) -> int:
    """Decoder steps for ``duration_s`` of audio (the codebook delay included)."""
    samples = round(duration_s * loaded.sample_rate)
    steps = math.ceil(samples / loaded.sample_rate * loaded.frame_rate) + loaded.delay_steps
    if steps > loaded.max_steps:
        raise ParameterError(f"{loaded.name}: makes at most {loaded.max_duration_s:.1f} s in one "
                             f"pass, not {duration_s:g} s")
    return steps


def _generate_one(loaded: MusicGen, prompt: str, duration_s: float, seed: int,
                  guidance_scale: float | None) -> np.ndarray:
    import torch

    samples = round(duration_s * loaded.sample_rate)
    steps = _steps(loaded, duration_s)
    tokens = loaded.tokenizer([prompt], return_tensors="pt", padding=True)
    inputs = {k: tokens[k].to(loaded.device) for k in ("input_ids", "attention_mask") if k in tokens}
    options: dict[str, Any] = {"do_sample": True, "max_new_tokens": steps}
    if guidance_scale is not None:
        options["guidance_scale"] = float(guidance_scale)
    gpus = [torch.device(loaded.device)] if torch.device(loaded.device).type == "cuda" else []
    with torch.random.fork_rng(devices=gpus), torch.inference_mode():
        torch.manual_seed(seed)
        out = loaded.model.generate(**inputs, **options)
    audio = out[0].detach().to("cpu").float().numpy()  # (channels, samples)
    return np.ascontiguousarray(audio[:, :samples])


def prompt_slug(prompt: str, *, max_chars: int = MAX_SLUG_CHARS) -> str:
    """A file-name part from a prompt: ASCII letters and digits, lowercase, words joined by
    ``-``, cut at a word boundary to ``max_chars`` (``"prompt"`` when nothing is left).

    >>> prompt_slug("Lo-fi hip hop, 90 BPM — café piano & rain!")
    'lo-fi-hip-hop-90-bpm-cafe-piano-rain'
    """
    text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", text.lower())
    slug = ""
    for word in words:
        longer = f"{slug}-{word}" if slug else word
        if len(longer) > max_chars:
            break
        slug = longer
    return slug or (words[0][:max_chars] if words else "prompt")


def file_names(prompts: Sequence[str], seed: int, folder: str | os.PathLike[str], *,
               file_format: str = "wav", restore: bool = True) -> list[tuple[Path, Path | None]]:
    """``(raw, restored)`` paths for each prompt: ``SLUG-seedN.wav`` and
    ``SLUG-seedN_restored.FORMAT`` in ``folder`` (``restored`` None when not restoring).

    A name is never one that exists (as a file, folder or link) or that an earlier prompt of
    the list took: ``-2``, ``-3``... is added to the stem until both names are free.
    """
    out = Path(folder)
    taken: set[str] = set()
    names: list[tuple[Path, Path | None]] = []
    for prompt in prompts:
        base = f"{prompt_slug(prompt)}-seed{seed}"
        for n in range(1, 10_000):
            stem = base if n == 1 else f"{base}-{n}"
            raw = out / f"{stem}.wav"
            restored = out / f"{stem}{RESTORED_SUFFIX}.{file_format}" if restore else None
            paths = [p for p in (raw, restored) if p is not None]
            if not any(os.path.lexists(p) or _key(p) in taken for p in paths):
                break
        else:  # pragma: no cover - ten thousand files of one prompt and seed
            raise ParameterError(f"{out}: no free file name for {base}")
        taken.update(_key(p) for p in paths)
        names.append((raw, restored))
    return names


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def read_prompts(path: str | os.PathLike[str]) -> list[str]:
    """Prompts from a file: ``.txt``, one per line (blank lines and lines starting with ``#``
    left out); ``.csv``, the ``prompt`` column when the first row names one, else the first
    column.  Raises :class:`ParameterError` naming the file when it cannot be read."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".txt", ".csv"):
        raise ParameterError(f"{p}: prompts come in a .txt (one per line) or .csv file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ParameterError(f"{p}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise ParameterError(f"{p}: not UTF-8 text") from exc
    except OSError as exc:
        raise ParameterError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    if suffix == ".txt":
        lines = [line.strip() for line in text.splitlines()]
        return [line for line in lines if line and not line.startswith("#")]
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    column = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        if "prompt" in header:
            column, rows = header.index("prompt"), rows[1:]
    return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]


@dataclass(frozen=True)
class GeneratedFile:
    """What :func:`generate_files` did for one prompt."""

    prompt: str
    seed: int
    raw: Path | None  # the generator's output as it came (None: not written)
    restored: Path | None  # None: not restored (``preset=None``) or failed
    result: Any = None  # the restore's FileResult (figures, stage reports), when restored
    error: str | None = None
    generate_seconds: float = 0.0
    duration_s: float = 0.0


def tags_for(prompt: str, model: str, seed: int, preset: str | None, duration_s: float
             ) -> dict[str, str]:
    """The tags :func:`generate_files` writes: the prompt as the title, every setting as a
    JSON comment (``preset`` null in a raw file), genrestore as the software."""
    comment = {"prompt": prompt, "model": model, "seed": seed, "preset": preset,
               "duration_s": duration_s}
    text = json.dumps(comment, ensure_ascii=False)
    while len(text.encode("utf-8")) > _COMMENT_BYTES and comment["prompt"]:
        # A WAV INFO string holds about 2 kB: shorten the prompt, never cut the JSON (the
        # full prompt stays in the manifest).
        data = comment["prompt"].encode("utf-8")
        keep = max(0, len(data) - (len(text.encode("utf-8")) - _COMMENT_BYTES) - 3)
        comment["prompt"] = data[:keep].decode("utf-8", "ignore") + "…"
        text = json.dumps(comment, ensure_ascii=False)
    return {"title": prompt, "comment": text, "software": f"genrestore {__version__}"}


#: The JSON comment is kept under this many bytes, inside what a WAV INFO string holds.
_COMMENT_BYTES = 1900


def generate_files(
    prompts: Sequence[str],
    output_dir: str | os.PathLike[str] = ".",
    *,
    model: str | os.PathLike[str] | MusicGen,
    duration_s: float = DEFAULT_DURATION_S,
    seed: int | None = None,
    preset: str | os.PathLike[str] | Preset | None = DEFAULT_PRESET,
    overrides: Overrides | None = None,
    output_rate_hz: int = 44100,
    bits: str = "24",
    file_format: str = "wav",
    guidance_scale: float | None = None,
    device: str | None = None,
    manifest: bool = True,
    progress: Callable[[GeneratedFile], None] | None = None,
) -> list[GeneratedFile]:
    """Generate each prompt, restore it in memory, write both files; one result per prompt.

    The raw clip is written as 32-bit float WAV at the model's rate (nothing clipped); the
    restored one with ``preset`` (and ``overrides``) at ``output_rate_hz``, ``bits`` and
    ``file_format``, dithered as ``genrestore restore`` does.  ``preset=None`` writes the raw
    clip only.  Names come from :func:`file_names` (existing files are never replaced);
    tags from :func:`tags_for`.  With ``manifest``, each prompt appends a line to the
    folder's ``genrestore-manifest.jsonl`` (raw file as the input, restored file as the
    output, and the prompt, model, seed, preset and duration), so ``genrestore restore``
    of the folder with the same settings finds the restored files done.  Usage errors
    (no prompts, a bad preset, format or duration, a missing model) raise
    :class:`ParameterError` before anything is generated; a prompt whose file cannot be
    written fails alone (its result holds the error).  ``progress`` is called with each
    result as it is finished.
    """
    checked = _check(prompts, duration_s)
    if output_rate_hz not in OUTPUT_RATES_HZ:
        raise ParameterError(f"output rate must be one of {OUTPUT_RATES_HZ}, not {output_rate_hz}")
    if bits not in OUTPUT_BITS or file_format not in OUTPUT_FORMATS:
        raise ParameterError(f"bits must be one of {', '.join(OUTPUT_BITS)} and the format one "
                             f"of {', '.join(OUTPUT_FORMATS)}")
    if file_format == "flac" and bits == "32f":
        raise ParameterError("FLAC cannot store 32-bit float; use bits 16 or 24")
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise ParameterError(f"{folder}: exists and is not a folder")
    chosen: Preset | None = None
    preset_name: str | None = None
    if preset is not None:
        chosen = preset if isinstance(preset, Preset) else load_preset(preset, overrides)
        preset_name = " ".join([chosen.name] + [f"{stage}.{k}={v}" for stage, values in
                                                (overrides or {}).items() for k, v in values.items()])
    loaded = _model(model, device)
    _steps(loaded, duration_s)
    seed = new_seed() if seed is None else int(seed)
    names = file_names(checked, seed, folder, file_format=file_format, restore=chosen is not None)
    book = Manifest(folder) if manifest else None
    settings = (settings_digest(chosen, output_rate_hz, bits, file_format, __version__)
                if chosen is not None else settings_digest(None, __version__))
    results: list[GeneratedFile] = []
    for prompt, (raw, restored) in zip(checked, names, strict=True):
        item = _one_file(loaded, prompt, seed, duration_s, guidance_scale, raw, restored, chosen,
                         preset_name, output_rate_hz, bits, file_format)
        if book is not None and item.raw is not None:
            _record(book, item, restored, loaded.name, preset_name, settings)
        results.append(item)
        if progress is not None:
            progress(item)
    return results


def _one_file(loaded: MusicGen, prompt: str, seed: int, duration_s: float,
              guidance_scale: float | None, raw: Path, restored: Path | None,
              preset: Preset | None, preset_name: str | None, rate: int, bits: str,
              file_format: str) -> GeneratedFile:
    start = time.perf_counter()
    try:
        audio = _generate_one(loaded, prompt, duration_s, seed, guidance_scale)
    except RuntimeError as exc:  # out of memory on the device, say: this prompt fails alone
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return GeneratedFile(raw=None, restored=None, error=f"{raw}: generation failed ({reason})",
                             prompt=prompt, seed=seed, generate_seconds=0.0, duration_s=0.0)
    seconds = time.perf_counter() - start
    made = {"prompt": prompt, "seed": seed, "generate_seconds": seconds,
            "duration_s": audio.shape[1] / loaded.sample_rate}
    try:
        write_audio(raw, audio, loaded.sample_rate, bits="32f",
                    tags=tags_for(prompt, loaded.name, seed, None, duration_s))
    except FILE_ERRORS as exc:
        return GeneratedFile(raw=None, restored=None, error=_line(raw, exc), **made)
    if preset is None or restored is None:
        return GeneratedFile(raw=raw, restored=None, **made)
    from genrestore.pipeline import restore_to_file

    try:
        result = restore_to_file(audio, loaded.sample_rate, restored, preset=preset,
                                 output_rate_hz=rate, bits=bits, file_format=file_format,
                                 source=raw,
                                 tags=tags_for(prompt, loaded.name, seed, preset_name, duration_s))
    except FILE_ERRORS as exc:
        return GeneratedFile(raw=raw, restored=None, error=_line(raw, exc), **made)
    return GeneratedFile(raw=raw, restored=restored, result=result, **made)


def _line(path: Path, exc: BaseException) -> str:
    message = str(exc) if isinstance(exc, GenrestoreError) else f"{path}: {type(exc).__name__}"
    return message.splitlines()[0] if message else str(path)


def _record(book: Manifest, item: GeneratedFile, restored: Path | None, model: str,
            preset: str | None, settings: str) -> None:
    """One manifest line for a prompt whose raw file was written (``restored``: where its
    restored file goes)."""
    assert item.raw is not None
    result = item.result

    def finite(value: float) -> float | None:
        return round(value, 2) if np.isfinite(value) else None

    try:
        raw = os.path.abspath(item.raw)
        if item.error is not None:
            record = Record(raw, file_digest(item.raw), settings, __version__, "failed",
                            os.path.abspath(restored or item.raw), error=item.error)
        elif item.restored is None:  # not restored: the raw file is the output
            digest = file_digest(item.raw)
            record = Record(raw, digest, settings, __version__, "done", raw, digest)
        else:
            record = Record(raw, file_digest(item.raw), settings, __version__, "done",
                            os.path.abspath(item.restored), file_digest(item.restored),
                            finite(result.output_lufs), finite(result.output_true_peak_dbtp))
        book.append(_with_origin(record, item, model, preset))
    except OSError as exc:  # the batch goes on; the files are written
        log.error("%s: could not record %s: %s", book.path, item.raw, exc)


def _with_origin(record: Record, item: GeneratedFile, model: str, preset: str | None) -> Record:
    from dataclasses import replace

    return replace(record, prompt=item.prompt, model=model, seed=item.seed, preset=preset,
                   duration_s=round(item.duration_s, 3))
