"""Presets: named, ordered lists of configured stages, read from TOML (package data or a
file) with ``--set`` style overrides.  Light to import (no DSP): the CLI builds its help from
here without loading numpy's signal stack; the stage classes are imported when a preset is
loaded."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrestore.errors import ParameterError

#: Output rates the writer accepts (:mod:`genrestore.io` re-exports these three: they live
#: here, with no numpy behind them, so that the CLI's parser is built without numpy).
OUTPUT_RATES_HZ = (44100, 48000)
#: Output word lengths: integer PCM bits, or "32f" for 32-bit float.
OUTPUT_BITS = ("16", "24", "32f")
OUTPUT_FORMATS = ("wav", "flac")

if TYPE_CHECKING:
    from genrestore.stages import Stage

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


#: The CLI's and the API's preset: it measured at least as well as `full` on every row of
#: `genrestore bench --clean` (README).
DEFAULT_PRESET = "auto"
Overrides = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class DitherSettings:
    """How integer PCM output is dithered (float output never is)."""

    shape: str = "tpdf"
    seed: int = 0

    def __post_init__(self) -> None:
        from genrestore.stages.dither import SHAPES

        if self.shape not in SHAPES:
            raise ParameterError(f"dither.shape must be one of {', '.join(SHAPES)}")


@dataclass(frozen=True)
class Preset:
    """A named, ordered list of configured stages plus dither settings."""

    name: str
    description: str
    stages: tuple[Stage, ...]
    dither: DitherSettings = dataclasses.field(default_factory=DitherSettings)
    guard: bool = False  # check the result and back off a stage that made it worse


def preset_names() -> list[str]:
    """Names of the presets shipped with genrestore."""
    folder = resources.files("genrestore") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                  if p.name.endswith(".toml"))


def _read_preset_text(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    text = str(name_or_path)
    if text in preset_names():
        return text, (resources.files("genrestore") / "presets" / f"{text}.toml").read_text("utf-8")
    path = Path(text)
    if path.suffix == ".toml" and path.is_file():
        return str(path), path.read_text("utf-8")
    raise ParameterError(
        f"unknown preset {text!r}: use one of {', '.join(preset_names())} or a .toml file"
    )


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML value (``0.5``, ``true``, ``"tpdf"``); else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set_option(text: str) -> tuple[str, str, Any]:
    """Split ``stage.param=value`` into its parts (``ParameterError`` if malformed)."""
    key, sep, value = text.partition("=")
    stage, dot, param = key.strip().partition(".")
    if not sep or not dot or not stage or not param:
        raise ParameterError(f"--set expects stage.param=value, got {text!r}")
    return stage, param, parse_value(value.strip())


def _coerce(source: str, cls: type, key: str, value: Any) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        known = ", ".join(sorted(fields))
        raise ParameterError(f"{source}: unknown parameter {key!r} (known: {known})")
    default = fields[key].default
    if isinstance(default, bool) or isinstance(value, bool):
        if not isinstance(value, bool) or not isinstance(default, bool):
            raise ParameterError(f"{source}: {key} must be {type(default).__name__}")
        return value
    if isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(default, int) and isinstance(value, int):
        return value
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ParameterError(f"{source}: {key} must be {type(default).__name__}, got {value!r}")


def stage_parameters(stage: str, params: Mapping[str, Any], source: str = "--set") -> dict[str, Any]:
    """``params`` for a stage named ``stage``, each checked and typed as a preset's are
    (:class:`ParameterError` naming ``source`` and the key otherwise)."""
    from genrestore.stages import STAGES

    if stage not in STAGES:
        raise ParameterError(f"{source}: unknown stage {stage!r} (known: {', '.join(sorted(STAGES))})")
    return {k: _coerce(f"{source} {stage}", STAGES[stage], k, v) for k, v in params.items()}


def _build(source: str, cls: type, params: Mapping[str, Any]) -> Any:
    kwargs = {k: _coerce(source, cls, k, v) for k, v in params.items()}
    try:
        return cls(**kwargs)
    except ParameterError as exc:
        raise ParameterError(f"{source}: {exc}") from exc


def load_preset(name_or_path: str | os.PathLike[str] = DEFAULT_PRESET,
                overrides: Overrides | None = None, *, target: str | None = None) -> Preset:
    """Load a shipped preset by name, or a TOML file, applying ``overrides``.

    ``overrides`` maps a stage name (or ``"dither"``) to ``{param: value}``; it changes
    every stage of that name in the preset.  Unknown stages or parameters, in the file or
    in the overrides, raise :class:`ParameterError` naming the preset and the key.
    ``target`` (a name of :data:`genrestore.targets.TARGETS`, e.g. ``"spotify"``) sets the
    loudness stage's ``target_lufs`` and ``ceiling_dbtp``; ``overrides`` still win over it.
    """
    from genrestore.stages import STAGES

    source, text = _read_preset_text(name_or_path)
    if target is not None:
        overrides = _with_target(target, overrides)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"preset {source}: invalid TOML ({exc})") from exc
    unknown = set(data) - {"description", "stages", "dither", "guard"}
    if unknown:
        raise ParameterError(f"preset {source}: unknown key {sorted(unknown)[0]!r}")
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    stages: list[Stage] = []
    entries = data.get("stages", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ParameterError(f"preset {source}: 'stages' must be an array of tables ([[stages]])")
    for index, entry in enumerate(entries):
        params = dict(entry)
        name = params.pop("stage", None)
        if name not in STAGES:
            raise ParameterError(
                f"preset {source}: stage #{index + 1} has unknown stage {name!r} "
                f"(known: {', '.join(sorted(STAGES))})"
            )
        params.update(overrides.get(name, {}))
        stages.append(_build(f"preset {source}, stage {name}", STAGES[name], params))
    present = {s.name for s in stages} | {"dither"}
    missing = set(overrides) - present
    if target is not None and "loudness" in missing:
        raise ParameterError(f"preset {source} has no loudness stage to take target {target!r}")
    if missing:
        raise ParameterError(f"preset {source} has no stage {sorted(missing)[0]!r} to set")
    if sum(s.name == "resample" for s in stages) != 1:
        raise ParameterError(f"preset {source}: needs exactly one 'resample' stage")
    names = [s.name for s in stages]
    if "loudness" in names and names.index("loudness") != len(names) - 1:
        raise ParameterError(f"preset {source}: 'loudness' must be the last stage "
                             "(a stage after it would undo its target and true-peak ceiling)")
    dither_params = {**data.get("dither", {}), **overrides.get("dither", {})}
    return Preset(
        name=Path(source).stem if source.endswith(".toml") else source,
        description=str(data.get("description", "")),
        stages=tuple(stages),
        dither=_build(f"preset {source}, dither", DitherSettings, dither_params),
        guard=_guard_flag(source, data.get("guard", False)),
    )


def _with_target(name: str, overrides: Overrides | None) -> Overrides:
    """``overrides`` on top of the loudness parameters of the target ``name``."""
    from genrestore.targets import get_target

    merged = {k: dict(v) for k, v in get_target(name).overrides().items()}
    for stage, params in (overrides or {}).items():
        merged.setdefault(stage, {}).update(params)
    return merged


def _guard_flag(source: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ParameterError(f"preset {source}: guard must be true or false")
    return value
