"""Round checkpoints: global state, strategy state (policy, optimizers), round, config.

Flower saves nothing itself. One file per completed round, written
atomically (temp file + rename), and a `latest` pointer; `--resume` loads
the latest and continues with the next round.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

LATEST = "latest.pt"


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
