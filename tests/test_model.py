"""The learned envelope model: features, numpy inference, the bwe stage's model method, and
the training recipe's export (torch, from the ``train`` extra)."""

from __future__ import annotations

import numpy as np
import pytest

from genrestore.degrade import lowpass
from genrestore.errors import ParameterError
from genrestore.model import EnvelopeModel, load_model, predict_levels
from genrestore.model.features import (
    BAND_EDGES_HZ,
    BANDS,
    CONTEXT,
    INPUT_FEATURES,
    band_energies,
    copied_energies,
    frame_levels,
    network_input,
    spectrum_energies,
)
from genrestore.spectral import stft
from genrestore.stages.bwe import (
    BandwidthExtension,
    extend_spectrum,
    patch_bins,
    plan_model_extension,
)

RATE = 44100


def _noise(seconds: float = 3.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((channels, int(seconds * RATE)))).astype(np.float32)


def _random_model(seed: int = 0, hidden: int = 32, target: str = "levels") -> EnvelopeModel:
    rng = np.random.default_rng(seed)
    return EnvelopeModel(
        mean=rng.standard_normal(INPUT_FEATURES).astype(np.float32),
        scale=(1.0 + rng.random(INPUT_FEATURES)).astype(np.float32),
        weights=(0.1 * rng.standard_normal((INPUT_FEATURES, hidden)).astype(np.float32),
                 0.1 * rng.standard_normal((hidden, BANDS)).astype(np.float32)),
        biases=(np.zeros(hidden, np.float32), np.full(BANDS, -3.0, np.float32)),
        info={"target": target})


def _constant_ratio_model(log_gain: float) -> EnvelopeModel:
    """A "ratio" model whose output is ``log_gain`` in every band, whatever it reads."""
    return EnvelopeModel(
        mean=np.zeros(INPUT_FEATURES, np.float32), scale=np.ones(INPUT_FEATURES, np.float32),
        weights=(np.zeros((INPUT_FEATURES, BANDS), np.float32),),
        biases=(np.full(BANDS, log_gain, np.float32),), info={"target": "ratio"})


def test_band_energies_of_white_noise_equal_its_variance():
    # Power normalised by the window's energy: white noise of variance s^2 reads s^2 in
    # every band (within the scatter of a mean over many frames and bins).
    x = _noise(4.0)
    e = spectrum_energies(stft(x, RATE))[0].mean(axis=0)
    np.testing.assert_allclose(10 * np.log10(e[1:]), 10 * np.log10(0.01), atol=0.5)


def test_bands_cover_0_to_20k_without_gaps_at_any_rate():
    assert BAND_EDGES_HZ[0] == 0.0
    assert BAND_EDGES_HZ[-1] == 20000.0
    assert np.all(np.diff(BAND_EDGES_HZ) > 0)
    for rate, n_fft in ((32000, 2048), (44100, 2048), (48000, 2048)):
        power = np.ones((3, n_fft // 2 + 1), np.float32)
        e = band_energies(power, n_fft, rate)
        top = np.searchsorted(BAND_EDGES_HZ, rate / 2) - 1  # bands below Nyquist
        np.testing.assert_allclose(e[:, :top], 1.0, rtol=1e-6)


def test_features_ignore_the_clip_gain_apart_from_the_reference_level():
    x = _noise()
    a = frame_levels(spectrum_energies(stft(x, RATE))[0], 8000.0, 512 / RATE)
    b = frame_levels(spectrum_energies(stft(0.1 * x, RATE))[0], 8000.0, 512 / RATE)
    np.testing.assert_allclose(a.relative, b.relative, atol=1e-4)
    np.testing.assert_allclose(a.reference - b.reference, 2.0, atol=1e-4)  # 20 dB in log10 power


def test_inference_shape_and_determinism():
    spec = stft(_noise(channels=2), RATE)
    model = _random_model()
    a = predict_levels(spec, 9000.0, model)
    b = predict_levels(spec, 9000.0, model)
    assert a.shape == (2, spec.data.shape[1], BANDS)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_inference_on_blocks_equals_one_shot():
    # The network sees CONTEXT frames either side and the running medium- and long-term
    # levels: blocks that carry that much overlap (and the running state) give the whole
    # clip's rows.
    cutoff = 7000.0
    spec = stft(lowpass(_noise(5.0), RATE, cutoff, kind="brickwall"), RATE)
    copied = copied_energies(spec, *patch_bins(spec, cutoff))[0]
    frames = frame_levels(spectrum_energies(spec)[0], cutoff, 512 / RATE, copied)
    model = _random_model(1)
    whole = model.forward(network_input(frames))
    n, block = whole.shape[0], 50
    pieces = []
    for start in range(0, n, block):
        lo, hi = max(0, start - CONTEXT), min(n, start + block + CONTEXT)
        sub = type(frames)(frames.relative[lo:hi], frames.reference[lo:hi], frames.above,
                           frames.cutoff_hz, frames.long_term[lo:hi], frames.copied[lo:hi],
                           frames.medium_term[lo:hi])
        out = model.forward(network_input(sub))
        pieces.append(out[start - lo : start - lo + min(block, n - start)])
    # Equal to float32 rounding (BLAS may order a sum differently for another row count).
    np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=0, atol=1e-5)


def test_model_envelope_reaches_the_levels_asked_for_above_the_cutoff():
    # Band-limited white noise; ask for a falling envelope above 8 kHz.  After the patches
    # are added, each band's mean power lies on the asked level (the gains are interpolated
    # between band centres, so a band's edges deviate a little; 1.5 dB on the mean).
    cutoff = 8000.0
    x = lowpass(_noise(4.0), RATE, cutoff, kind="brickwall")
    spec = stft(x, RATE)
    levels = np.zeros((1, spec.data.shape[1], BANDS), np.float32)
    centres = 0.5 * (BAND_EDGES_HZ[1:] + BAND_EDGES_HZ[:-1])
    levels[:] = np.log10(0.01) - 0.6 * np.log2(np.maximum(centres, 1.0) / cutoff)  # -6 dB/oct
    plan = plan_model_extension(spec, cutoff, levels, transition_hz=1.0)
    out = spectrum_energies(extend_spectrum(spec, plan))[0].mean(axis=0)
    bands = np.flatnonzero((BAND_EDGES_HZ[:-1] >= cutoff + 500) & (BAND_EDGES_HZ[1:] <= 19000))
    got_db = 10 * np.log10(out[bands])
    want_db = 10 * levels[0, 0, bands]
    np.testing.assert_allclose(got_db, want_db, atol=1.5)
    below = spec.freqs_hz < cutoff - 50
    np.testing.assert_array_equal(extend_spectrum(spec, plan).data[..., below], spec.data[..., below])


def test_copied_energies_of_white_noise_equal_its_variance_in_every_band_above_the_cutoff():
    # Replication copies bins of the source band: for white noise each copied band reads the
    # noise's variance (mean over many frames), and bands below the cutoff read nothing.
    cutoff = 8000.0
    spec = stft(_noise(4.0), RATE)
    target, source = patch_bins(spec, cutoff)
    e = copied_energies(spec, target, source)[0].mean(axis=0)
    lo = BAND_EDGES_HZ[:-1]
    above = lo >= cutoff
    np.testing.assert_allclose(10 * np.log10(e[above]), 10 * np.log10(0.01), atol=0.5)
    assert not e[BAND_EDGES_HZ[1:] <= cutoff - 100].any()


def test_a_ratio_model_scales_the_copied_band_by_its_gain():
    # A "ratio" model predicts the log gain of the copied band: a constant -1 (-10 dB) puts
    # every band above the cutoff of band-limited noise 10 dB under the source band's level,
    # following the copy frame by frame (a copied loud frame stays loud).
    cutoff = 8000.0
    x = lowpass(_noise(4.0), RATE, cutoff, kind="brickwall")
    x[:, RATE : 2 * RATE] *= 4.0  # 12 dB louder second
    spec = stft(x, RATE)
    bins = patch_bins(spec, cutoff)
    levels = predict_levels(spec, cutoff, _constant_ratio_model(-1.0), bins)
    out = spectrum_energies(extend_spectrum(
        spec, plan_model_extension(spec, cutoff, levels, transition_hz=1.0)))[0]
    bands = np.flatnonzero((BAND_EDGES_HZ[:-1] >= cutoff + 500) & (BAND_EDGES_HZ[1:] <= 19000))
    quiet = slice(int(2.5 * RATE / 512), int(3.5 * RATE / 512))
    loud = slice(int(1.2 * RATE / 512), int(1.8 * RATE / 512))
    for frames, level in ((quiet, 0.01), (loud, 0.16)):
        got = 10 * np.log10(out[frames][:, bands].mean(axis=0))
        np.testing.assert_allclose(got, 10 * np.log10(level) - 10.0, atol=1.5)
    # Without replication bins nothing counts as copied: the levels are the floor.
    assert (predict_levels(spec, cutoff, _constant_ratio_model(-1.0)) <= -12.0).all()


def test_a_model_with_an_unknown_target_is_refused():
    with pytest.raises(ParameterError, match="target"):
        _random_model(target="phase")


def test_bwe_method_is_validated_and_dsp_stays_available():
    with pytest.raises(ParameterError, match=r"bwe\.method"):
        BandwidthExtension(method="magic")
    assert BandwidthExtension().method == "dsp"


def test_a_model_file_that_does_not_fit_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros(3), scale=np.ones(3), w0=np.zeros((3, 2)), b0=np.zeros(2))
    with pytest.raises(ParameterError, match="do not fit"):
        load_model(bad)
    with pytest.raises(ParameterError, match="cannot read"):
        load_model(tmp_path / "missing.npz")


def test_saved_model_loads_back_identically(tmp_path):
    model = _random_model(2)
    model.save(tmp_path / "m.npz")
    again = load_model(tmp_path / "m.npz")
    x = np.random.default_rng(0).standard_normal((10, INPUT_FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(again.forward(x), model.forward(x))
