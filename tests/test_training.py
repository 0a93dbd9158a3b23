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
    return Pairs.concatenate(parts).arrays()


def test_pairs_have_the_model_shapes_and_mask_what_the_clean_track_lacks():
    clean = np.atleast_2d(render_song(RATE, 2.0, seed=1)).astype(np.float32)
    p = excerpt_pairs(clean, RATE, 12000.0, random_chain(np.random.default_rng(0)), 0)
    assert p.inputs.shape[1] == INPUT_FEATURES
    for name in ("levels", "level_weights", "ratios", "ratio_weights"):
        assert getattr(p, name).shape == (p.inputs.shape[0], BANDS)
    from genrestore.model.features import BAND_EDGES_HZ

    above_clean = BAND_EDGES_HZ[1:] > 12000.0
    assert not p.level_weights[:, above_clean].any()  # no target where the clean track has nothing
    assert not p.ratio_weights[:, above_clean].any()


def test_ratio_targets_are_the_clean_to_copied_gain_above_the_cutoff():
    # White noise band-limited at 8 kHz: the clean track is flat, so the copied band (taken
    # from below the cutoff) has the clean level and the gain to learn is 0 dB; below the
    # cutoff there is no ratio to learn.
    from genrestore.degrade import Degradation
    from genrestore.model.features import BAND_EDGES_HZ

    rng = np.random.default_rng(0)
    clean = (0.1 * rng.standard_normal((1, 4 * RATE))).astype(np.float32)
    chain = Degradation(description="test", rate_hz=RATE, cutoff_hz=(8000.0, 8000.0),
                        lowpass_kind="brickwall")
    p = excerpt_pairs(clean, RATE, 20000.0, chain, 0)
    w = p.ratio_weights > 0
    assert w[:, BAND_EDGES_HZ[:-1] >= 9000.0].all()
    assert not w[:, BAND_EDGES_HZ[1:] <= 7500.0].any()
    assert abs(np.median(p.ratios[w])) < 0.05  # within 0.5 dB
    assert p.inputs.dtype == np.float16


@pytest.mark.parametrize("target", ["ratio", "levels"])
def test_a_few_steps_lower_the_loss(pairs, target):
    model, history = train(pairs, Settings(hidden=(32,), steps=300, batch=256, target=target),
                           log_every=50)
    assert model.target == target
    assert history[-1]["train_l1"] < 0.7 * history[0]["train_l1"]


def test_export_matches_torch_within_1e_5(pairs):
    settings = Settings(hidden=(48, 32), steps=1)
    torch.manual_seed(0)
    net = build_network(settings)
    mean, scale = standardisation(pairs["inputs"])
    model = export(net, mean, scale, settings)
    net.eval()  # no dropout: inference
    with torch.no_grad():
        x = pairs["inputs"].astype(np.float32)
        want = net(torch.from_numpy((x - mean) / scale)).numpy()
    np.testing.assert_allclose(model.forward(pairs["inputs"]), want, atol=1e-5)
