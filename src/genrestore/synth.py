"""A small, deterministic song renderer: the source of the bundled example and test music.

Chords, bass, a melody and drums, additively synthesised at the requested rate with content
up to ~20 kHz (cymbal noise, bright harmonics), so restoration can be judged against a
clean, full-band original that the project made itself.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

_BPM = 112.0
_PROGRESSION = ((48, 52, 55), (45, 48, 52), (41, 45, 48), (43, 47, 50))  # C, Am, F, G (MIDI)
_SCALE = (60, 62, 64, 67, 69, 72, 74, 76)  # C major pentatonic over two octaves


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


_TABLE_SIZE = 4096


def _harmonic_tone(freq: float, n: int, rate: int, *, brightness: float,
                   top_hz: float = 19000.0) -> np.ndarray:
    """Band-limited sum of harmonics with 1/k^brightness amplitudes (wavetable lookup)."""
    count = max(1, int(min(top_hz, 0.45 * rate) // freq))
    k = np.arange(1, count + 1)[:, np.newaxis]
    phase = 2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE
    table = (np.sin(k * phase + 0.7 * k) / k**brightness).sum(axis=0)
    position = (np.arange(n) * (freq * _TABLE_SIZE / rate)) % _TABLE_SIZE
    low = position.astype(np.int64)
    frac = position - low
    return table[low] * (1 - frac) + table[(low + 1) % _TABLE_SIZE] * frac


def _add(track: np.ndarray, start: int, sound: np.ndarray) -> None:
    end = min(track.size, start + sound.size)
    if start < end:
        track[start:end] += sound[: end - start]


def render_song(sample_rate: int = 44100, seconds: float = 8.0, *, seed: int = 0) -> np.ndarray:
    """Render a stereo ``(2, samples)`` float32 song peaking at -1 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    beat = round(60.0 / _BPM * sample_rate)
    pad, bass, lead, drums, hats = (np.zeros(n) for _ in range(5))
    for bar, start in enumerate(range(0, n, 4 * beat)):
        chord = _PROGRESSION[bar % len(_PROGRESSION)]
        length = 4 * beat
        env = np.minimum(1.0, np.arange(length) / (0.08 * sample_rate))
        env *= np.minimum(1.0, (length - np.arange(length)) / (0.2 * sample_rate))
        for note in chord:
            _add(pad, start, 0.05 * env * _harmonic_tone(_hz(note + 12), length, sample_rate,
                                                         brightness=1.3))
        for b in range(4):
            length_b = beat
            decay = np.exp(-np.arange(length_b) / (0.25 * sample_rate))
            tone = _harmonic_tone(_hz(chord[0] - 12), length_b, sample_rate, brightness=2.0,
                                  top_hz=4000.0)
            _add(bass, start + b * beat, 0.25 * decay * tone)
    for step, start in enumerate(range(0, n, beat // 2)):
        if rng.random() < 0.75:
            length = beat
            decay = np.exp(-np.arange(length) / (0.18 * sample_rate))
            tone = _harmonic_tone(_hz(_SCALE[rng.integers(len(_SCALE))]), length, sample_rate,
                                  brightness=1.1)
            _add(lead, start, 0.08 * decay * tone)
        # Drums: kick on 1 and 3, snare on 2 and 4, hats on every eighth.
        t_k = np.arange(int(0.35 * sample_rate)) / sample_rate
        if step % 4 == 0:
            sweep = 2 * np.pi * (45.0 * t_k + 75.0 * 0.04 * (1 - np.exp(-t_k / 0.04)))
            _add(drums, start, 0.6 * np.sin(sweep) * np.exp(-t_k / 0.12))
        if step % 4 == 2:
            noise = rng.standard_normal(t_k.size) * np.exp(-t_k / 0.06)
            body = np.sin(2 * np.pi * 190.0 * t_k) * np.exp(-t_k / 0.05)
            _add(drums, start, 0.15 * noise + 0.2 * body)
        t_h = np.arange(int(0.08 * sample_rate)) / sample_rate
        _add(hats, start, 0.06 * rng.standard_normal(t_h.size) * np.exp(-t_h / 0.02))
    sos = signal.butter(4, min(7000.0, 0.4 * sample_rate), "highpass", fs=sample_rate,
                        output="sos")
    hats = signal.sosfilt(sos, hats)
    left = pad + bass + drums + 0.8 * lead + 0.6 * hats
    right = pad + bass + drums + 0.5 * lead + 0.9 * hats
    song = np.stack([left, right])
    song *= 10 ** (-1.0 / 20.0) / np.max(np.abs(song))
    return song.astype(np.float32)
