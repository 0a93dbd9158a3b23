"""The training recipe (``training/``, torch from the ``train`` extra): pairs from degraded
music, a few steps of training that lower the loss, and an export numpy reproduces."""

from __future__ import annotations

import numpy as np
import pytest

from genrestore.model.features import BANDS, INPUT_FEATURES
from genrestore.synth import render_song

torch = pytest.importorskip("torch", reason="the training tests need the [train] extra (torch)")

from training.pairs import Pairs, excerpt_pairs, random_chain  # noqa: E402
from training.train import Settings, build_network, export, standardisation, train  # noqa: E402

RATE = 44100


@pytest.fixture(scope="module")
def pairs() -> dict[str, np.ndarray]:
    clean = render_song(RATE, 4.0, seed=3)
    clean = np.atleast_2d(clean).astype(np.float32)
    parts = [excerpt_pairs(clean, RATE, 20000.0, random_chain(np.random.default_rng(k)), k)
             for k in range(3)]
    p = Pairs.concatenate(parts)
    return {"inputs": p.inputs, "targets": p.targets, "weights": p.weights}


def test_pairs_have_the_model_shapes_and_mask_what_the_clean_track_lacks():
    clean = np.atleast_2d(render_song(RATE, 2.0, seed=1)).astype(np.float32)
    p = excerpt_pairs(clean, RATE, 12000.0, random_chain(np.random.default_rng(0)), 0)
    assert p.inputs.shape[1] == INPUT_FEATURES
    assert p.targets.shape[1] == BANDS
    assert p.weights.shape == p.targets.shape
    from genrestore.model.features import BAND_EDGES_HZ

    above_clean = BAND_EDGES_HZ[1:] > 12000.0
    assert not p.weights[:, above_clean].any()  # no target where the clean track has nothing


def test_a_few_steps_lower_the_loss(pairs):
    _, history = train(pairs, Settings(hidden=(32,), steps=300, batch=256), log_every=50)
    assert history[-1]["train_l1"] < 0.7 * history[0]["train_l1"]


def test_export_matches_torch_within_1e_5(pairs):
    settings = Settings(hidden=(48, 32), steps=1)
    torch.manual_seed(0)
    net = build_network(settings)
    mean, scale = standardisation(pairs["inputs"])
    model = export(net, mean, scale, settings)
    net.eval()  # no dropout: inference
    with torch.no_grad():
        want = net(torch.from_numpy((pairs["inputs"] - mean) / scale)).numpy()
    np.testing.assert_allclose(model.forward(pairs["inputs"]), want, atol=1e-5)
