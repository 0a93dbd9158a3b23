"""The HTML report: built from a real batch, then opened in headless Chromium."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import generator_like, song
from genrestore.cli import main
from genrestore.io import write_audio
from genrestore.report import ReportEntry, build_report, images

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A restored batch with its report: two clips and one broken file."""
    folder = tmp_path_factory.mktemp("batch")
    inputs = folder / "in"
    for seed in (1, 2):
        clip, rate = generator_like(song(44100, 4.0), 44100, seed=seed)
        write_audio(inputs / f"clip {seed}.wav", clip, rate, bits="32f")
    (inputs / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    assert main(["restore", str(inputs), "-o", str(folder / "out"), "--report"]) == 1
    return folder


def test_report_lists_every_file_and_links_relative_paths(batch: Path) -> None:
    page = (batch / "out" / "report.html").read_text()
    assert "2 restored, 1 failed" in page
    assert "broken.wav" in page
    assert 'src="../in/clip%201.wav"' in page  # relative, URL-quoted
    assert 'src="clip%201.wav"' in page
    assert "http" not in page.replace("http-equiv", "")  # no network
    pictures = sorted(p.name for p in (batch / "out" / "report_files").iterdir())
    assert pictures == [f"clip{i:03d}_{k}.jpg" for i in (1, 2) for k in ("after", "before", "diff")]


def test_spectrogram_rows_follow_the_erb_scale() -> None:
    rate = 32000
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t))[np.newaxis].astype(np.float32)
    db = images.spectrogram_db(tone, rate, 22050.0)
    assert db.shape == (images.HEIGHT, images.WIDTH)
    row = int(np.argmax(np.nan_to_num(db, nan=-300.0).mean(axis=1)))
    assert 1 - row / images.HEIGHT == pytest.approx(images.erb_position(1000, 22050), abs=0.01)
    assert np.all(np.isnan(db[: int(0.05 * images.HEIGHT)]))  # above 16 kHz: no data at 32 kHz


def test_report_of_existing_pairs_and_missing_files(tmp_path: Path) -> None:
    clip, rate = generator_like(song(44100, 3.0), 44100)
    original = write_audio(tmp_path / "a.wav", clip, rate, bits="32f")
    out = build_report([ReportEntry(original, original), ReportEntry(tmp_path / "gone.wav",
                        None, "gone.wav: no such file")], tmp_path / "r" / "index.html")
    assert "1 restored, 1 failed" in out.read_text()
    assert main(["report", str(original), str(original), "-o", str(tmp_path / "x.html")]) == 0
    (tmp_path / "bad.wav").write_text("not audio")  # an unreadable pair fails its own row
    page = build_report([ReportEntry(original, tmp_path / "bad.wav")], tmp_path / "b.html")
    assert "0 restored, 1 failed" in page.read_text()
    assert "bad.wav: not a readable audio file" in page.read_text()
    assert main(["report", str(original)]) == 2


def _browser_available() -> bool:
    from report_browser import CHROMEDRIVER, CHROMIUM

    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@pytest.mark.browser
def test_report_in_headless_chromium(batch: Path) -> None:
    if not _browser_available():
        if os.environ.get("GENRESTORE_REQUIRE_BROWSER"):
            pytest.fail("chromium/chromedriver missing but GENRESTORE_REQUIRE_BROWSER is set")
        pytest.skip("Debian chromium and chromium-driver are not installed")
    from report_browser import browser, serve
    from selenium.webdriver.common.by import By

    with serve(batch) as url, browser() as driver:
        driver.get(f"{url}/out/report.html")
        deadline = time.time() + 15
        states: list[int] = []
        while time.time() < deadline:
            states = driver.execute_script(
                "return [...document.querySelectorAll('audio')].map(a => a.readyState)")
            if states and min(states) >= 1:
                break
            time.sleep(0.2)
        assert len(states) == 4
        assert min(states) >= 1
        widths = driver.execute_script(
            "return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 6
        assert min(widths) > 0
        box = driver.find_element(By.CSS_SELECTOR, "#clip-1 .ab")
        box.find_element(By.CSS_SELECTOR, ".play").click()
        playing = "return document.querySelector('#clip-1 audio.%s').currentTime"
        deadline = time.time() + 10
        while driver.execute_script(playing % "a") < 0.3 and time.time() < deadline:
            time.sleep(0.1)
        box.find_element(By.CSS_SELECTOR, ".pick.b").click()
        state = driver.execute_script(
            "const box = document.querySelector('#clip-1 .ab');"
            "const a = box.querySelector('audio.a'), b = box.querySelector('audio.b');"
            "return [box.dataset.active, a.paused, b.paused, a.currentTime, b.currentTime,"
            " a.volume, b.volume]")
        active, a_paused, b_paused, a_time, b_time, a_volume, b_volume = state
        assert active == "b"
        assert a_paused
        assert not b_paused
        assert a_time > 0.3
        assert b_time == pytest.approx(a_time, abs=0.3)  # same position
        assert min(a_volume, b_volume) < 1.0  # the louder one is turned down
        artefacts = ROOT / "test-artifacts"
        artefacts.mkdir(exist_ok=True)
        driver.save_screenshot(str(artefacts / "report.png"))
        assert (artefacts / "report.png").stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    shutil.copy(artefacts / "report.png", batch / "report.png")
