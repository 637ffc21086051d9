"""Shared fixtures: paths to the real seed dumps and small generated corpora."""

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
