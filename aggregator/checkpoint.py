"""Round checkpoints: global state, strategy state (policy, optimizers), round, config.

Flower saves nothing itself. One file per completed round, written
atomically (temp file + rename), and a `latest` pointer; `--resume` loads
the latest and continues with the next round.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from fedtar.config import FedTARConfig, apply_overrides
from fedtar.model import MODEL_FILE, ReportGenerator, adapt_model, load_model
from fedtar.parameters import set_travelling_state
from fedtar.tokenizer import ReportTokenizer

LATEST = "latest.pt"
# A finished run's folder: server results, the final global travelling state, and run.json
# (the base and the config that rebuild the final model).
RESULTS_FILE, FINAL_STATE_FILE, RUN_FILE = "results.json", "final_state.pt", "run.json"
RECEIVED_FILE = "received.jsonl"  # digest of every reply the server received (see fedtar.audit)


def save_checkpoint(folder: str | Path, server_round: int, global_state: dict[str, torch.Tensor],
                    strategy_state: dict[str, Any], config: dict[str, Any], history: list[dict]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"round": server_round, "global": global_state, "strategy": strategy_state, "config": config,
               "history": history, "rng": torch.get_rng_state()}
    path = folder / f"round-{server_round:04d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    tmp_latest = folder / (LATEST + ".tmp")
    torch.save(payload, tmp_latest)
    os.replace(tmp_latest, folder / LATEST)
    return path


def load_checkpoint(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / LATEST
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: say which and stop, rather than start over silently
        raise ValueError(f"{path}: unreadable checkpoint: {e}") from e


def load_trained(folder: str | Path) -> tuple[ReportGenerator, ReportTokenizer]:
    """A trained model from a saved model folder (`fedtar demo`) or a federated run's folder
    (its run.json names the base and config; final_state.pt holds the global travelling state)."""
    folder = Path(folder)
    if (folder / MODEL_FILE).is_file():
        return load_model(folder)
    if not ((folder / RUN_FILE).is_file() and (folder / FINAL_STATE_FILE).is_file()):
        raise FileNotFoundError(f"{folder}: neither a saved model ({MODEL_FILE}) nor a finished run "
                                f"({RUN_FILE} and {FINAL_STATE_FILE})")
    run = json.loads((folder / RUN_FILE).read_text())
    base, tokenizer = load_model(run["base_dir"])
    model = adapt_model(base, apply_overrides(FedTARConfig(), run["config"]))
    set_travelling_state(model, torch.load(folder / FINAL_STATE_FILE, map_location="cpu"))
    return model, tokenizer
