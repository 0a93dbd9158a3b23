"""Issue 9, point 4 and 5: measurements that mean the same at every rate, and detectors that
do not fire on music that is fine.  Every expected value comes from the signal's construction
(a noise density, a clip level, a channel gain), not from the code's own output."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soxr
from scipy import signal

from conftest import song
from genrestore import analysis as an
from genrestore.stages.declip import declip

#: The floor's reference band (0-20 kHz) and search band, as documented in noise_floor_dbfs.
REFERENCE_HZ = 20000.0
BAND_LO_HZ, BAND_HI_HZ = 200.0, 15200.0


def white_of_density(rate: int, seconds: float, level_dbfs: float, seed: int = 0) -> np.ndarray:
    """White noise whose density, over 0-20 kHz, amounts to ``level_dbfs``: the same hiss at
    every rate (its RMS grows with the rate's bandwidth)."""
    density = 10 ** (level_dbfs / 10) / REFERENCE_HZ  # power per Hz
    rms = np.sqrt(density * rate / 2)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, int(rate * seconds))) * rms).astype(np.float32)


def pink_of_density(rate: int, seconds: float, density_at_1k: float, seed: int = 0) -> np.ndarray:
    """Pink noise (power density ``density_at_1k * 1000 / f`` per Hz), shaped in frequency."""
    n = int(rate * seconds)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    shaped = np.fft.irfft(spectrum * np.sqrt(1000.0 / np.maximum(f, 1.0)), n)
    # Unit white noise has density 2 / rate per Hz; scale to the asked density at 1 kHz.
    return (shaped * np.sqrt(density_at_1k * rate / 2))[np.newaxis].astype(np.float32)


def pink_expected_dbfs(rate: int, density_at_1k: float, percentile: float = 10.0) -> float:
    """What the floor's definition gives for pink noise: the density at the frequency under
    which ``percentile`` % of the band's (linearly spaced) bins lie quieter, i.e. from the top,
    as white noise over 0-20 kHz."""
    top = min(BAND_HI_HZ, 0.95 * rate / 2)
    f_p = top - percentile / 100 * (top - BAND_LO_HZ)
    return float(10 * np.log10(density_at_1k * 1000 / f_p * REFERENCE_HZ))


RATES = [16000, 32000, 44100, 48000]


@pytest.mark.parametrize("seconds", [4.0, 12.0])
def test_white_noise_floor_is_the_same_at_every_rate(seconds: float) -> None:
    readings = [an.noise_floor_dbfs(white_of_density(rate, seconds, -60.0, seed=rate), rate)
                for rate in RATES]
    assert readings == pytest.approx([-60.0] * len(RATES), abs=1.0)
    assert max(readings) - min(readings) < 1.0


def test_pink_noise_floor_is_the_same_from_32_khz_up() -> None:
    density = 10 ** (-60 / 10) / REFERENCE_HZ
    readings = {rate: an.noise_floor_dbfs(pink_of_density(rate, 6.0, density, seed=rate), rate)
                for rate in RATES}
    for rate, reading in readings.items():
        assert reading == pytest.approx(pink_expected_dbfs(rate, density), abs=1.0)
    # The band is fixed from 32 kHz up, so pink noise reads the same there ...
    upper = [readings[r] for r in (32000, 44100, 48000)]
    assert max(upper) - min(upper) < 1.0
    # ... while at 16 kHz the band stops at 7.6 kHz: the documented, expected difference.
    assert readings[16000] - readings[32000] == pytest.approx(
        pink_expected_dbfs(16000, density) - pink_expected_dbfs(32000, density), abs=1.0)


@pytest.mark.parametrize("rate", [16000, 32000, 44100, 48000])
@pytest.mark.parametrize("window_s", [0.2, 0.5, 2.0, 10.0])
def test_noise_tracker_gives_the_mean_noise_power_at_any_window(rate: int, window_s: float) -> None:
    from genrestore.spectral import noise_psd, stft

    seconds = max(6.0, 3 * window_s)
    x = white_of_density(rate, seconds, -40.0, seed=int(10 * window_s))
    spec = stft(x, rate)
    floor = noise_psd(np.abs(spec.data) ** 2, spec.hop / rate, window_s=window_s)
    window = np.hanning(spec.n_fft + 1)[:-1]
    expected = float(np.mean(x.astype(np.float64) ** 2)) * np.sum(window**2)  # per bin
    inner = floor[..., 4:-4, 20:-20]  # away from the zero-padded edge frames and DC/Nyquist
    assert 10 * np.log10(inner.mean() / expected) == pytest.approx(0.0, abs=1.0)


@pytest.mark.parametrize("cutoff_hz", [8000.0, 12000.0])
def test_floor_of_a_resampled_clip_matches_over_the_input_band(cutoff_hz: float) -> None:
    # What the guard does: a 32 kHz input against its 44.1/48 kHz output, over the input's band.
    x = signal.sosfiltfilt(signal.butter(8, cutoff_hz, fs=32000, output="sos"),
                           song(32000, 6.0), axis=-1)
    x = (x + white_of_density(32000, 6.0, -60.0, seed=4)).astype(np.float32)
    before = an.noise_floor_dbfs(x, 32000, max_hz=cutoff_hz)
    for rate in (44100, 48000):
        y = soxr.resample(x.T, 32000, rate).T.astype(np.float32)
        assert an.noise_floor_dbfs(y, rate, max_hz=cutoff_hz) == pytest.approx(before, abs=1.0)


def test_hiss_on_music_reads_its_level_at_32_khz() -> None:
    x = song(32000, 6.0) + white_of_density(32000, 6.0, -50.0, seed=7)
    assert an.noise_floor_dbfs(x, 32000) == pytest.approx(-50.0, abs=3.0)


@pytest.mark.parametrize("level_dbfs", [-80.0, -90.0, -100.0])
def test_quiet_broadband_noise_is_not_silence(level_dbfs: float) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1, 44100 * 2)) * 10 ** (level_dbfs / 20)).astype(np.float32)
    assert an.estimate_cutoff_hz(x, 44100) == 22050.0
    assert an.effective_bandwidth_hz(x, 44100) > 20000.0


def test_digital_silence_and_noise_at_minus_150_dbfs_are_silence() -> None:
    rng = np.random.default_rng(2)
    for x in (np.zeros((1, 44100 * 2), np.float32),
              (rng.standard_normal((1, 44100 * 2)) * 10 ** (-150 / 20)).astype(np.float32)):
        assert an.estimate_cutoff_hz(x, 44100) == 0.0
        assert an.effective_bandwidth_hz(x, 44100) == 0.0


def _sine(freq_hz: float, rate: int, seconds: float, amplitude: float, phase: float = 0.3
          ) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase))[np.newaxis].astype(np.float32)


def _degenerate_clips(rate: int) -> dict[str, np.ndarray]:
    return {"dc": np.full((1, rate * 4), 0.3, np.float32),
            "sine_30hz": _sine(30.0, rate, 4.0, 0.5),
            "silence": np.zeros((2, rate * 4), np.float32)}


@pytest.mark.parametrize("name", ["dc", "sine_30hz", "silence"])
def test_degenerate_clips_analyse_without_warnings(name: str) -> None:
    rate = 44100
    x = _degenerate_clips(rate)[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = an.analyze(x, rate)
        assert an.noise_floor_dbfs(x, rate, max_hz=50.0) == float("-inf")  # no bin in the band
        cutoff = an.estimate_cutoff_hz(x, rate)
        flatness = an.top_band_flatness(x, rate, cutoff)
        lra = an.loudness_range_lu(x, rate)
    assert 0.0 <= flatness <= 1.0
    assert lra == pytest.approx(0.0, abs=0.1)  # a steady signal has no loudness range
    assert a.clipped_runs == 0
    if name != "silence":
        # Float rounding only (the float32 window's own leakage on DC): finite but far
        # under any 24-bit floor.
        assert a.noise_floor_dbfs < -120.0
        assert a.snr_db > 100.0
    if name != "sine_30hz":
        # No content but DC: no cutoff, no spurious figures.
        assert cutoff == 0.0
    if name == "silence":
        assert a.noise_floor_dbfs == float("-inf")  # exactly zero (documented)
        assert a.snr_db == 0.0


# --- stereo ---------------------------------------------------------------------------

def _music(rate: int = 32000) -> np.ndarray:
    return song(rate, 3.0)


def test_identical_and_codec_noisy_channels_are_mono() -> None:
    x = _music()[:1]
    assert an.is_mono(np.concatenate([x, x]))
    assert an.interchannel_correlation(np.concatenate([x, x])) == 1.0
    # Dual mono through a lossy joint-stereo codec: each channel gets its own noise, 40 dB
    # and more under the music.
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    rng = np.random.default_rng(3)
    noisy = np.concatenate([x, x]) + rng.standard_normal((2, x.shape[-1])) * rms * 10 ** (-42 / 20)
    assert an.is_mono(noisy.astype(np.float32))


def test_scaled_silent_dc_and_panned_channels_are_stereo() -> None:
    x = _music()[:1]
    other = _music()[1:]
    cases = {
        "half": np.concatenate([x, 0.5 * x]),  # L = 2 R: a panned mono source
        "0.9": np.concatenate([x, 0.9 * x]),  # about 1 dB of pan
        "silent": np.concatenate([x, np.zeros_like(x)]),
        "dc": np.concatenate([x, np.full_like(x, 1e-9)]),
        "hard_panned": np.concatenate([x + other, x]),  # one source only on the left
        "inverted": np.concatenate([x, -x]),
    }
    for name, stereo in cases.items():
        assert not an.is_mono(stereo.astype(np.float32)), name
    assert not an.is_mono(np.concatenate([x, x, x]))  # more than two channels are never mono


def test_correlation_of_a_constant_channel_is_zero_not_one() -> None:
    x = _music()[:1]
    assert an.interchannel_correlation(np.concatenate([x, np.zeros_like(x)])) == 0.0
    assert an.interchannel_correlation(np.concatenate([x, np.full_like(x, 0.2)])) == 0.0
    assert an.interchannel_correlation(np.zeros((2, 1000), np.float32)) == 1.0  # identical
    assert an.interchannel_correlation(np.concatenate([x, -x])) == pytest.approx(-1.0)


# --- clipping -------------------------------------------------------------------------

def quantize16(x: np.ndarray) -> np.ndarray:
    """What a 16-bit file holds: full scale 32768, the positive side one step short."""
    return (np.clip(np.round(np.asarray(x, np.float64) * 32768), -32768, 32767) / 32768
            ).astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 32000, 44100, 48000, 96000])
def test_bass_sines_are_not_clipping(rate: int) -> None:
    for freq in (40.0, 50.0, 60.0, 70.0, 80.0):
        for amplitude in (1.0, 0.5, 0.1):
            for phase in (0.0, 0.3, np.pi / 2):  # a crest on a sample, between samples
                x = _sine(freq, rate, 1.0, amplitude, phase)
                assert an.clipped_runs(x) == (0, 0), (freq, amplitude, phase)
                assert an.clipped_runs(quantize16(x)) == (0, 0), (freq, amplitude, phase, "16")


def _kick(rate: int, seconds: float = 4.0, peak: float = 0.95) -> np.ndarray:
    """A decaying sine burst gliding from about 115 to 55 Hz, twice a second."""
    out = np.zeros(int(rate * seconds))
    t = np.arange(rate // 3) / rate
    burst = np.exp(-8 * t) * np.sin(2 * np.pi * (55 * t + 2 * (1 - np.exp(-30 * t))))
    for start in range(0, out.size - t.size, rate // 2):
        out[start : start + t.size] += burst
    return (out * peak / np.max(np.abs(out)))[np.newaxis].astype(np.float32)


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
def test_kick_and_sub_bass_crest_are_not_clipping(rate: int) -> None:
    kick = _kick(rate)
    assert an.clipped_runs(kick) == (0, 0)
    assert an.clipped_runs(quantize16(kick)) == (0, 0)
    # Music whose highest peak is a 45 Hz sub-bass crest.
    bass = _sine(45.0, rate, 4.0, 0.7)
    music = song(rate, 4.0)[:1] * 0.3 + bass
    assert abs(bass[0, np.argmax(np.abs(music))]) > 0.65  # the peak is a bass crest
    assert an.clipped_runs(music) == (0, 0)
    assert an.clipped_runs(quantize16(music)) == (0, 0)


def _runs_above(x: np.ndarray, level: float, min_run: int = 3) -> int:
    """Flat tops a clipper at ``level`` makes: runs of ``min_run``+ samples beyond it."""
    return sum(len(an.flat_runs(np.abs(channel) > level, min_run)) for channel in x)


@pytest.mark.parametrize("case", ["full_scale_int16", "float_-6", "float_-20", "gain_after",
                                  "float_-20_int16"])
def test_true_flat_tops_are_found_at_any_level(case: str) -> None:
    x = song(44100, 4.0)[:1] * 3.0
    level = {"float_-6": 0.5, "float_-20": 0.1, "float_-20_int16": 0.1}.get(case, 1.0)
    expected = _runs_above(x, level)
    clipped = np.clip(x, -level, level)
    if case == "full_scale_int16":
        clipped = quantize16(clipped)
    elif case == "gain_after":
        clipped = clipped * np.float32(0.3)  # clipped at full scale, then turned down
    elif case == "float_-20_int16":
        clipped = quantize16(clipped)
    runs, samples = an.clipped_runs(clipped.astype(np.float32))
    assert expected > 50
    # Every run the clipper made is found (a few very shallow crossings may not count)...
    assert 0.95 * expected <= runs <= expected
    assert samples >= 3 * runs


def test_declip_uses_the_same_detector() -> None:
    bass = _sine(50.0, 44100, 2.0, 0.9)
    out, fixed = declip(bass)
    assert fixed == 0
    np.testing.assert_array_equal(out, bass)
    # Two tones clipped 1.2 dB deep at -20 dBFS: every flat top the analysis counts is rebuilt.
    tone = np.clip(_sine(440.0, 44100, 1.0, 0.115) + _sine(1234.0, 44100, 1.0, 0.02), -0.1, 0.1)
    assert an.clipped_mask(tone).shape == tone.shape
    runs, _ = an.clipped_runs(tone)
    _, fixed = declip(tone)
    assert runs > 800
    assert fixed >= runs - 2  # all but a run too near the clip's ends


# --- top band and loudness range ------------------------------------------------------

def _harmonics(rate: int, n: int, top_hz: float) -> np.ndarray:
    t = np.arange(n) / rate
    return sum(np.sin(2 * np.pi * 220 * k * t + k) for k in range(1, int(top_hz / 220) + 1)) / 30


def test_top_band_flatness_tells_noise_from_harmonics() -> None:
    rate, n = 44100, 44100 * 4
    lowpass = signal.butter(10, 8000, fs=rate, output="sos")
    tonal = signal.sosfiltfilt(lowpass, _harmonics(rate, n, 8000.0))[np.newaxis]
    noise = signal.sosfiltfilt(signal.butter(8, [5500, 8500], "bandpass", fs=rate, output="sos"),
                               np.random.default_rng(4).standard_normal(n)) * 0.05
    # Harmonics stop under 0.75 x 7.66 kHz (the -3 dB point of this zero-phase low-pass, which
    # the analysis reads as the cutoff), so the analysed top band holds the noise alone.
    noisy_top = signal.sosfiltfilt(lowpass, _harmonics(rate, n, 5500.0) + noise)[np.newaxis]
    tonal_flatness = an.top_band_flatness(tonal.astype(np.float32), rate, 8000.0)
    noise_flatness = an.top_band_flatness(noisy_top.astype(np.float32), rate, 8000.0)
    assert tonal_flatness < 0.1
    assert noise_flatness > an.NOISE_LIKE_FLATNESS
    # A periodogram of white noise is exponential: flatness exp(-Euler's gamma) = 0.561.
    white = np.random.default_rng(5).standard_normal((1, n)).astype(np.float32)
    assert an.top_band_flatness(white, rate, 20000.0) == pytest.approx(np.exp(-np.euler_gamma),
                                                                       abs=0.03)
    assert not an.analyze(tonal.astype(np.float32), rate).top_band_noise_like
    assert an.analyze(noisy_top.astype(np.float32), rate).top_band_noise_like


@pytest.mark.parametrize(("first_db", "second_db", "lra"),
                         [(-20.0, -30.0, 10.0), (-20.0, -15.0, 5.0), (-40.0, -20.0, 20.0)])
def test_loudness_range_of_tech_3342_cases(first_db: float, second_db: float, lra: float) -> None:
    # EBU Tech 3342 test cases 1-3: 20 s of a 1 kHz sine, then 20 s at another level.
    rate = 48000
    x = np.concatenate([_sine(1000.0, rate, 20.0, np.sqrt(2) * 10 ** (first_db / 20)),
                        _sine(1000.0, rate, 20.0, np.sqrt(2) * 10 ** (second_db / 20))], axis=-1)
    assert an.loudness_range_lu(np.concatenate([x, x]), rate) == pytest.approx(lra, abs=0.1)


@pytest.mark.parametrize("rate", [32000, 44100])
def test_k_weighting_matches_the_48k_design_at_other_rates(rate: int) -> None:
    freqs = [100.0, 1000.0, 10000.0]
    _, reference = signal.sosfreqz(an.k_weighting_sos(48000), worN=freqs, fs=48000)
    _, response = signal.sosfreqz(an.k_weighting_sos(rate), worN=freqs, fs=rate)
    np.testing.assert_allclose(20 * np.log10(np.abs(response)),
                               20 * np.log10(np.abs(reference)), atol=0.1)


@pytest.mark.parametrize(("rate", "samples", "channels"),
                         [(32000, 32000 * 20, 1), (44100, 44100 * 3, 2), (16000, 1000, 2)])
def test_long_term_spectrum_is_welchs(rate: int, samples: int, channels: int) -> None:
    """The chunked Welch equals scipy's (same segments, window, detrend and scaling) on
    noise whose level changes over time and differs between channels, DC included."""
    rng = np.random.default_rng(rate)
    envelope = np.linspace(0.05, 1.0, samples)
    x = (rng.standard_normal((channels, samples)) * envelope
         * np.arange(1, channels + 1)[:, None] + 0.01).astype(np.float32)
    freqs, level = an.long_term_spectrum(x, rate)
    nperseg = min(samples, 2 ** int(np.ceil(np.log2(0.1 * rate))))
    ref_freqs, psd = signal.welch(x, fs=rate, nperseg=nperseg, axis=-1)
    np.testing.assert_allclose(freqs, ref_freqs)
    np.testing.assert_allclose(level, 10 * np.log10(psd.mean(axis=0)), atol=1e-4)


@pytest.mark.parametrize(("frames", "size", "step"), [(937, 8, 4), (50, 6, 3), (5, 8, 4), (40, 2, 1)])
def test_decimated_mean_is_the_running_mean_at_the_kept_frames(frames: int, size: int,
                                                                step: int) -> None:
    from scipy import ndimage

    from genrestore.spectral import _decimated_mean

    power = np.random.default_rng(frames).random((2, frames, 33)).astype(np.float32)
    expected = ndimage.uniform_filter1d(power, size, axis=-2, mode="nearest")[..., ::step, :]
    np.testing.assert_allclose(_decimated_mean(power, size, step), expected, rtol=1e-5)


@pytest.mark.parametrize("samples", [0, 1, 2, 3])
def test_welch_on_a_clip_of_a_few_samples_is_finite(samples: int) -> None:
    """A clip shorter than a segment is one segment; one sample or none has no power (its
    mean is removed) rather than NaN or a division by zero."""
    x = np.full((2, samples), 0.5, dtype=np.float32)
    x[:, ::2] = -0.25
    freqs, psd = an.welch_psd(x, 32000, 4096)
    assert np.all(np.isfinite(psd))
    assert freqs.shape == psd.shape
    if samples >= 2:
        _, ref = signal.welch(x, fs=32000, nperseg=samples, axis=-1)
        np.testing.assert_allclose(psd, ref.mean(axis=0), rtol=1e-6, atol=1e-12)
    else:
        assert np.all(psd == 0.0)
