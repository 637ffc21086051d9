"""Shared fixtures: paths to the real seed dumps, small generated corpora, a headless browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from beam_jobs.synthetic.generator import GeneratorConfig, generate

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    if not SEEDS.is_dir() or not list(SEEDS.glob("*.txt")):
        pytest.skip(f"real seed dumps not found at {SEEDS}")
    return SEEDS


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """~600 generated records in both layouts, compressed and plain, with malformed slots."""
    out = tmp_path_factory.mktemp("corpus")
    generate(
        out,
        GeneratorConfig(
            records=600, seed=3, records_per_file=100, malformed_rate=0.02, compress="mixed"
        ),
    )
    return out


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",  # WebGL (the paper map is a scattergl) in software
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1000",
    # no network: every name resolves to nothing, and any proxy use hits a closed port
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
)


@pytest.fixture(scope="session")
def headless_chromium():
    """Starts Selenium drivers for the Debian chromium + chromium-driver packages (call it with
    a profile directory; quit the driver), or skips when the browser or selenium is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(
            f"headless Chromium not installed ({', '.join(missing)} missing): apt-get install "
            "chromium chromium-driver (.ci/run does)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) missing")
    from selenium.webdriver.chrome.service import Service

    def start(profile: Path):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    return start
