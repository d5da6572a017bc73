"""Shared fixtures: small synthetic federations written once per test session."""

from __future__ import annotations

import json
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

import torch  # noqa: E402

from data_adapters.synthetic import SyntheticConfig, generate_federation  # noqa: E402

# CPU float sums depend on the number of threads; some libraries change it in the test process
# (a learning test once scored 0.53 vs 0.44 after other tests, 0.63 vs 0.36 alone). Pinning it
# makes every test's numbers the same on any machine and in any order.
TEST_THREADS = 2


@pytest.fixture(autouse=True)
def _fixed_thread_count():
    torch.set_num_threads(TEST_THREADS)
    yield


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


# A tiny model for federation tests: small enough that a round of 3 sites takes seconds.
TINY_FED = {"model.hidden_size": 32, "model.layers": 1, "model.heads": 2, "data.image_size": 32,
            "demographics.gmm_components": 4, "lora.hyper_dim": 4, "client.local_epochs": 1,
            "client.eval_meteor": False, "train.lr": 1e-3, "lora.alpha": 8, "policy.meta_lr": 0.05,
            "federation.min_sites": 2}


def toml_lines(values: dict) -> str:
    """Config keys as TOML lines (for role files and sweep files written by tests)."""
    return "".join(f'"{k}" = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}\n'
                   for k, v in values.items())


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny base pretrained briefly on a small public pool (stands in for `fedtar pretrain`)."""
    from fedtar.config import load_config
    from fedtar.learning.pretrain import pretrain_base

    out = tmp_path_factory.mktemp("tiny_base")
    pool = SyntheticConfig(sites=2, patients=12, visits=4, seed=77, image_size=32, site_prefix="public",
                           first_site_index=100)
    return pretrain_base(out, load_config(overrides=TINY_FED), epochs=8, lr=3e-3, pool=pool)


@pytest.fixture(scope="session")
def tiny_federation(tmp_path_factory) -> Path:
    """3 sites x 8 patients x 3 visits, written once."""
    out = tmp_path_factory.mktemp("tiny_federation")
    generate_federation(out, SyntheticConfig(sites=3, patients=8, visits=3, seed=9, image_size=32))
    return out


@pytest.fixture(scope="session")
def installed_fedtar(tmp_path_factory) -> Path:
    """FedTAR installed from a wheel into a fresh virtual environment; returns its bin folder.

    `--system-site-packages` spares reinstalling torch, Flower and the rest (`pip install
    --no-deps` of the wheel only). pip writes Flower's commands only where it installs Flower,
    so they are written into the venv's bin the way pip would: every Flower process (SuperLink,
    SuperNode, SuperExec, ServerApp, ClientApp) then runs the venv's Python and imports the
    wheel's FedTAR, not a checkout. Built once per session (the deployment walkthrough and the guides).
    """
    import importlib.metadata
    import shutil
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(Path(__file__).resolve().parents[1], source, ignore=shutil.ignore_patterns(".git", "runs", "state", "build", "dist", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache", ".venv"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(source)], check=True, timeout=600)
    wheel = next((root / "dist").glob("fedtar-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=600)
    for ep in importlib.metadata.distribution("flwr").entry_points:
        if ep.group == "console_scripts":
            module, _, func = ep.value.partition(":")
            script = venv / "bin" / ep.name
            script.write_text(f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
            script.chmod(0o755)
    where = subprocess.run([str(python), "-c", "import aggregator.server_app, clients.client_app, fedtar; "
                            "print(aggregator.server_app.__file__, clients.client_app.__file__, fedtar.__file__)"],
                           capture_output=True, text=True, check=True, cwd=root).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where  # the wheel, not the checkout
    return venv / "bin"
