"""Shared fixtures: small synthetic federations written once per test session."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
logging.getLogger("monai").setLevel(logging.ERROR)

from data_adapters.synthetic import SyntheticConfig, generate_federation  # noqa: E402


@pytest.fixture(scope="session")
def small_federation(tmp_path_factory) -> list[Path]:
    """3 sites x 12 patients x 4 visits: enough for statistics, quick to write."""
    out = tmp_path_factory.mktemp("federation")
    return generate_federation(out, SyntheticConfig(sites=3, patients=12, visits=4, seed=3, image_size=64))


@pytest.fixture(scope="session")
def default_federation(tmp_path_factory) -> list[Path]:
    """The default federation (4 sites x 40 patients x 5 visits)."""
    out = tmp_path_factory.mktemp("default_federation")
    return generate_federation(out, SyntheticConfig())
