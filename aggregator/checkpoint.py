"""Round checkpoints: global state, strategy state (policy, optimizers), round, config.

Flower saves nothing itself. One file per completed round, written
atomically (temp file + rename), and a `latest` pointer; `--resume` loads
the latest and continues with the next round.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedtar.config import FedTARConfig, apply_overrides
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import MODEL_FILE, ReportGenerator, adapt_model, load_model
from fedtar.generator.parameters import set_travelling_state
from fedtar.trust.run_pins import check_base, parse_override_keys, pins, resume_changes

LATEST = "latest.pt"
# A finished run's folder: server results, the final global travelling state, and run.json
# (the base and the config that rebuild the final model).
RESULTS_FILE, FINAL_STATE_FILE, RUN_FILE = "results.json", "final_state.pt", "run.json"
RECEIVED_FILE = "received.jsonl"  # digest of every reply the server received (see fedtar.trust.audit)


def save_checkpoint(folder: str | Path, server_round: int, global_state: dict[str, torch.Tensor],
                    strategy_state: dict[str, Any], config: dict[str, Any], history: list[dict],
                    pins: dict[str, str] | None = None) -> Path:
    """`pins`: the base and config hashes the round was trained with (fedtar.trust.run_pins)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"round": server_round, "global": global_state, "strategy": strategy_state, "config": config,
               "history": history, "rng": torch.get_rng_state(), "pins": pins or {}}
    path = folder / f"round-{server_round:04d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    tmp_latest = folder / (LATEST + ".tmp")
    torch.save(payload, tmp_latest)
    os.replace(tmp_latest, folder / LATEST)
    return path


def prepare_run_folder(folder: str | Path, resume: bool, overwrite: bool = False) -> None:
    """A new run (not --resume) starts in a folder without an earlier run's checkpoints, replies log
    and results: it refuses such a folder, or with `overwrite` removes them first (stale later-round
    checkpoints would otherwise be resumed later, and received.jsonl would mix runs)."""
    folder = Path(folder)
    old = [p for p in (folder / "checkpoints", folder / RECEIVED_FILE, folder / RESULTS_FILE,
                       folder / FINAL_STATE_FILE) if p.exists()]
    if resume or not old:
        return
    if not overwrite:
        raise ValueError(f"{folder} holds an earlier run ({', '.join(p.name for p in old)}): pass --resume to "
                         "continue it, or --overwrite (run config overwrite = true) to start over")
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


@dataclass
class RunStart:
    checkpoint: dict[str, Any] | None  # the latest checkpoint when resuming
    pins: dict[str, str]                # this run's base and config hashes
    changes: dict[str, list]            # config keys a resume changes: {key: [checkpoint's, now]}


def open_run(folder: str | Path, cfg: FedTARConfig, base_dir: str | Path, resume: bool, overwrite: bool = False,
             override: str = "") -> RunStart:
    """Every check before a run writes anything: no earlier run's files unless resuming (or overwrite),
    and a resume continues with the checkpoint's base and config (keys named in `override` aside)."""
    folder = Path(folder)
    prepare_run_folder(folder, resume, overwrite)
    current = pins(cfg, base_dir)
    ckpt = load_checkpoint(folder / "checkpoints") if resume else None
    changes = {}
    if ckpt is not None:
        changes = resume_changes(ckpt["config"], ckpt.get("pins", {}), cfg, current, parse_override_keys(override),
                                 str(folder / "checkpoints" / LATEST))
    return RunStart(ckpt, current, changes)


def trim_received(folder: str | Path, last_round: int) -> None:
    """Drop received.jsonl lines of rounds after the checkpoint (a kill between the log and the
    checkpoint would otherwise list that round twice once it is redone)."""
    path = Path(folder) / RECEIVED_FILE
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        path.write_text("".join(line + "\n" for line in lines if json.loads(line).get("round", 0) <= last_round))


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
    check_base(run, run["base_dir"], str(folder / RUN_FILE))
    base, tokenizer = load_model(run["base_dir"])
    model = adapt_model(base, apply_overrides(FedTARConfig(), run["config"]))
    set_travelling_state(model, torch.load(folder / FINAL_STATE_FILE, map_location="cpu"))
    return model, tokenizer
