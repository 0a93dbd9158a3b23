"""Train the envelope model on the pairs (``training.pairs``) and export it for numpy.

A fully connected network (``genrestore.model.EnvelopeModel``'s shape: standardised input,
ReLU hidden layers, a linear output of one level per band) is fitted with Adam on the L1
distance between predicted and clean band levels (log10 power, so 0.1 is 1 dB), each band
counted where the clean track has content; bands above the degraded clip's cutoff, the
bandwidth extension's envelope, weigh ``ABOVE_WEIGHT`` times more.  Everything is seeded and
single-process, so a run reproduces its weights on the same machine and library versions.

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
from genrestore.model.features import BANDS, CONTEXT, FRAME_FEATURES, INPUT_FEATURES

#: Loss weight of bands above the cutoff relative to those below.
ABOVE_WEIGHT = 2.0
#: Where the band mask (fraction of each band above the cutoff) sits in the input.
MASK = slice((2 * CONTEXT + 2) * FRAME_FEATURES, (2 * CONTEXT + 2) * FRAME_FEATURES + BANDS)


@dataclass(frozen=True)
class Settings:
    hidden: tuple[int, ...] = (256, 256)
    steps: int = 20000
    batch: int = 512
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    seed: int = 20261201
    threads: int = 2


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


def loss_weights(inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The per-band weights of the loss: the pairs' content mask, bands above the cutoff
    counted :data:`ABOVE_WEIGHT` times."""
    return weights * (1.0 + (ABOVE_WEIGHT - 1.0) * inputs[:, MASK])


def standardisation(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = inputs.mean(axis=0, dtype=np.float64)
    scale = np.maximum(inputs.std(axis=0, dtype=np.float64), 1e-3)
    return mean.astype(np.float32), scale.astype(np.float32)


def train(data: dict[str, np.ndarray], settings: Settings, *,
          validation: dict[str, np.ndarray] | None = None, log_every: int = 1000
          ) -> tuple[EnvelopeModel, list[dict[str, float]]]:
    """Fit the network; returns the exported model and the loss history."""
    torch = _torch()
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    mean, scale = standardisation(data["inputs"])
    x = torch.from_numpy((data["inputs"] - mean) / scale)
    y = torch.from_numpy(data["targets"])
    w = torch.from_numpy(loss_weights(data["inputs"], data["weights"]).astype(np.float32))
    net = build_network(settings)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate,
                            weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, settings.steps) / settings.steps)))
    history: list[dict[str, float]] = []
    best: tuple[float, EnvelopeModel] | None = None
    running, start = 0.0, time.perf_counter()
    rows = x.shape[0]
    for step in range(1, settings.steps + 1):
        idx = torch.from_numpy(rng.integers(0, rows, settings.batch))
        err = (net(x[idx]) - y[idx]).abs() * w[idx]
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
                score = entry["val_db_above"] + entry["val_db_below"]
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
              **(info or {})})


def evaluate(model: EnvelopeModel, data: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean absolute error in dB of the predicted band levels, above and below the cutoff,
    and the same error for the degraded input's own levels below the cutoff (the do-nothing
    baseline)."""
    pred = model.forward(data["inputs"])
    err = np.abs(pred - data["targets"]) * 10.0
    above = data["inputs"][:, MASK] >= 0.5
    w = data["weights"] > 0
    centre = slice(CONTEXT * FRAME_FEATURES, CONTEXT * FRAME_FEATURES + BANDS)
    input_err = np.abs(data["inputs"][:, centre] - data["targets"]) * 10.0
    return {
        "val_db_above": float(err[w & above].mean()) if (w & above).any() else float("nan"),
        "val_db_below": float(err[w & ~above].mean()),
        "input_db_below": float(input_err[w & ~above].mean()),
    }


def load_pairs(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in ("inputs", "targets", "weights")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--hidden", default="256,256")
    args = parser.parse_args(argv)
    settings = Settings(steps=args.steps, hidden=tuple(int(h) for h in args.hidden.split(",")))
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
