"""Train the envelope model on the pairs (``training.pairs``) and export it for numpy.

A fully connected network (``genrestore.model.EnvelopeModel``'s shape: standardised input,
ReLU hidden layers, a linear output of one value per band) is fitted with AdamW on the L1
distance (log10 power, so 0.1 is 1 dB) to one of the pairs' targets (``Settings.target``):

* ``"ratio"`` (the default): the smoothed log gain of the replicated band above the cutoff;
* ``"levels"``: the clean band levels, bands above the cutoff weighing ``ABOVE_WEIGHT`` times
  more.

Frames count more the louder they are against the clip's running level (``Settings.loud``:
``1 + loud * (reference - long-term reference)`` in log10 units, clipped to 0.1..2), since the
quiet ones matter little to the ear.  Everything is seeded and single-process, so a run
reproduces its weights on the same machine and library versions.

    python -m training.train --cache DIR --out src/genrestore/model/envelope.npz
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrestore.model import EnvelopeModel
from genrestore.model.features import (
    ABOVE_SLICE,
    BANDS,
    CONTEXT,
    FRAME_FEATURES,
    INPUT_FEATURES,
    TARGETS,
)

#: Loss weight of bands above the cutoff relative to those below (``"levels"`` target).
ABOVE_WEIGHT = 2.0
MASK = ABOVE_SLICE
#: Where this frame's level against the long-term reference sits in the input.
LOUDNESS = (2 * CONTEXT + 2) * FRAME_FEATURES - 1


@dataclass(frozen=True)
class Settings:
    hidden: tuple[int, ...] = (256, 256)
    steps: int = 6000
    batch: int = 512
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    seed: int = 20261201
    threads: int = 2
    target: str = "ratio"
    loud: float = 1.5


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise SystemExit("training needs torch: pip install 'genrestore[train]'") from exc
    return torch


def build_network(settings: Settings) -> Any:
    torch = _torch()
    layers: list[Any] = []
    width = INPUT_FEATURES
    for h in settings.hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        if settings.dropout:
            layers.append(torch.nn.Dropout(settings.dropout))
        width = h
    layers.append(torch.nn.Linear(width, BANDS))
    return torch.nn.Sequential(*layers)


def loss_weights(data: dict[str, np.ndarray], settings: Settings) -> np.ndarray:
    """The per-band weights of the loss: the pairs' mask for the target, for levels the bands
    above the cutoff counted :data:`ABOVE_WEIGHT` times, louder frames counted more."""
    inputs = data["inputs"]
    loud = np.clip(1.0 + settings.loud * inputs[:, LOUDNESS].astype(np.float32), 0.1, 2.0)
    if settings.target == "ratio":
        w = data["ratio_weights"]
    else:
        w = data["level_weights"] * (1.0 + (ABOVE_WEIGHT - 1.0) * inputs[:, MASK].astype(np.float32))
    return (w * loud[:, None]).astype(np.float32)


def targets(data: dict[str, np.ndarray], settings: Settings) -> np.ndarray:
    return data["ratios"] if settings.target == "ratio" else data["levels"]


def standardisation(inputs: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (at least 1e-3) of every input, summed in float64 a chunk
    of rows at a time (the inputs may be a large float16 array)."""
    total = np.zeros(inputs.shape[1])
    squares = np.zeros(inputs.shape[1])
    for start in range(0, inputs.shape[0], chunk):
        part = inputs[start : start + chunk].astype(np.float64)
        total += part.sum(axis=0)
        squares += (part**2).sum(axis=0)
    mean = total / inputs.shape[0]
    var = np.maximum(squares / inputs.shape[0] - mean**2, 0.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), 1e-3).astype(np.float32)


def train(data: dict[str, np.ndarray], settings: Settings, *,
          validation: dict[str, np.ndarray] | None = None, log_every: int = 1000
          ) -> tuple[EnvelopeModel, list[dict[str, float]]]:
    """Fit the network; returns the exported model and the loss history."""
    if settings.target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}")
    torch = _torch()
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    mean, scale = standardisation(data["inputs"])
    x = torch.from_numpy(data["inputs"])
    t_mean, t_scale = torch.from_numpy(mean), torch.from_numpy(scale)
    y = torch.from_numpy(targets(data, settings))
    w = torch.from_numpy(loss_weights(data, settings))
    keep = np.flatnonzero(w.numpy().sum(axis=1) > 0)  # rows with something to learn
    net = build_network(settings)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate,
                            weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, settings.steps) / settings.steps)))
    history: list[dict[str, float]] = []
    best: tuple[float, EnvelopeModel] | None = None
    running, start = 0.0, time.perf_counter()
    for step in range(1, settings.steps + 1):
        idx = torch.from_numpy(keep[rng.integers(0, keep.size, settings.batch)])
        err = (net((x[idx].float() - t_mean) / t_scale) - y[idx]).abs() * w[idx]
        loss = err.sum() / w[idx].sum().clamp_min(1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
        if step % log_every == 0 or step == settings.steps:
            entry = {"step": step, "train_l1": running / log_every,
                     "seconds": time.perf_counter() - start}
            running = 0.0
            net.eval()
            model = export(net, mean, scale, settings)
            net.train()
            if validation is not None:
                entry.update(evaluate(model, validation))
                score = entry["val_db_above"] + (
                    entry["val_db_below"] if settings.target == "levels" else 0.0)
                if best is None or score < best[0]:
                    best = (score, model)
            history.append(entry)
            print("  ".join(f"{k} {v:.4g}" for k, v in entry.items()), flush=True)
    if best is not None:  # early stopping: the checkpoint that did best on validation
        return best[1], history
    return export(net, mean, scale, settings), history


def export(net: Any, mean: np.ndarray, scale: np.ndarray, settings: Settings,
           info: dict[str, Any] | None = None) -> EnvelopeModel:
    """The numpy model with the network's current weights."""
    linears = [m for m in net if hasattr(m, "weight")]
    return EnvelopeModel(
        mean=mean, scale=scale,
        weights=tuple(m.weight.detach().numpy().T.copy() for m in linears),
        biases=tuple(m.bias.detach().numpy().copy() for m in linears),
        info={"hidden": list(settings.hidden), "steps": settings.steps, "seed": settings.seed,
              "target": settings.target, "loud": settings.loud, **(info or {})})


def evaluate(model: EnvelopeModel, data: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean absolute error (dB) of the model's target.  Levels: above and below the cutoff,
    and the same error for the degraded input's own levels below the cutoff (the do-nothing
    baseline).  Ratios: above the cutoff, and the error of the best constant gain (the
    validation set's median ratio, a long-term-envelope baseline)."""
    pred = model.forward(data["inputs"])
    if model.target == "ratio":
        w = data["ratio_weights"] > 0
        err = np.abs(pred - data["ratios"])[w] * 10.0
        const = np.abs(data["ratios"][w] - np.median(data["ratios"][w])) * 10.0
        return {"val_db_above": float(err.mean()), "constant_db_above": float(const.mean())}
    err = np.abs(pred - data["levels"]) * 10.0
    above = data["inputs"][:, MASK] >= 0.5
    w = data["level_weights"] > 0
    centre = slice(CONTEXT * FRAME_FEATURES, CONTEXT * FRAME_FEATURES + BANDS)
    input_err = np.abs(data["inputs"][:, centre] - data["levels"]) * 10.0
    return {
        "val_db_above": float(err[w & above].mean()) if (w & above).any() else float("nan"),
        "val_db_below": float(err[w & ~above].mean()),
        "input_db_below": float(input_err[w & ~above].mean()),
    }


def load_pairs(path: Path) -> dict[str, np.ndarray]:
    from training.pairs import Pairs

    with np.load(path) as z:
        return {k: z[k] for k in Pairs.FIELDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--target", choices=TARGETS, default=Settings.target)
    parser.add_argument("--loud", type=float, default=Settings.loud)
    args = parser.parse_args(argv)
    settings = Settings(steps=args.steps, hidden=tuple(int(h) for h in args.hidden.split(",")),
                        target=args.target, loud=args.loud)
    data = load_pairs(args.cache / "pairs" / "train.npz")
    validation = load_pairs(args.cache / "pairs" / "validation.npz")
    print(f"train rows {data['inputs'].shape[0]}, validation rows {validation['inputs'].shape[0]}")
    model, history = train(data, settings, validation=validation)
    model = dataclasses.replace(model, info={**model.info, "history": history[-1] if history else {}})
    model.save(args.out)
    print(f"wrote {args.out} ({model.parameters} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
