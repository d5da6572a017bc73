"""What a run depends on, pinned: the base's hash and the config's hash, in run.json and every checkpoint.

A base retrained in place or a resume with other settings silently changes what a run
means. ``pins`` records both hashes; ``resume_changes`` compares a checkpoint's pins with
the resuming run (a different base is always refused; config keys may change only where
the user names them, and only keys that leave the checkpoint's tensors meaningful);
``check_base`` refuses to evaluate a run on a base other than the one it trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fedtar.config import FedTARConfig
from fedtar.operations.output_folder import content_hash
from fedtar.trust.base_hash import base_sha256

# Operational keys a resume may change freely (more rounds, longer deadlines): they do not
# change what the checkpoint holds.
RESUME_FREE_KEYS = frozenset({"federation.rounds", "federation.round_timeout", "federation.round_retries",
                              "federation.node_wait", "federation.eval_every", "client.eval_meteor",
                              "train.device", "tracking.tensorboard"})
# Keys a resume may change when named (--resume-override): how training goes on, not what the
# tensors are (model, lora, data, demographics, policy and the strategy are never overridable).
OVERRIDABLE_PREFIXES = ("train.", "client.", "federation.", "meta.", "privacy.")
NEVER_OVERRIDABLE = frozenset({"federation.strategy", "train.base", "train.seed"})


def config_sha256(flat: Mapping[str, Any]) -> str:
    return content_hash({k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()})


def pins(cfg: FedTARConfig, base_dir: str | Path) -> dict[str, str]:
    return {"config_sha256": config_sha256(cfg.to_flat()), "base_sha256": base_sha256(base_dir)}


def parse_override_keys(text: str | Iterable[str]) -> set[str]:
    keys = {k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()}
    bad = sorted(k for k in keys if k in NEVER_OVERRIDABLE or not k.startswith(OVERRIDABLE_PREFIXES))
    if bad:
        raise ValueError(f"--resume-override {', '.join(bad)}: only keys under "
                         f"{', '.join(p.rstrip('.') for p in OVERRIDABLE_PREFIXES)} may change on resume "
                         f"(not {', '.join(sorted(NEVER_OVERRIDABLE))}); the others change what the checkpoint holds")
    return keys


def resume_changes(saved_flat: Mapping[str, Any], saved_pins: Mapping[str, str], cfg: FedTARConfig,
                   current_pins: Mapping[str, str], allowed: set[str], where: str) -> dict[str, list]:
    """The config keys this resume changes ({key: [checkpoint's, now]}), all of them in `allowed`;
    anything else (a different base, an unnamed key) is a ValueError naming both values."""
    if saved_pins.get("base_sha256") and saved_pins["base_sha256"] != current_pins["base_sha256"]:
        raise ValueError(f"{where}: the run was trained on a base with sha256 {saved_pins['base_sha256']}, the "
                         f"base given now has sha256 {current_pins['base_sha256']}: resume with the same base "
                         "(or start a new run)")
    now = cfg.to_flat()
    changed = {k: [saved_flat.get(k), v] for k, v in now.items()
               if k not in RESUME_FREE_KEYS and _norm(saved_flat.get(k)) != _norm(v)}
    unnamed = {k: pair for k, pair in changed.items() if k not in allowed}
    if unnamed:
        listed = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in sorted(unnamed.items()))
        raise ValueError(f"{where}: the config differs from the run's checkpoints (config sha256 "
                         f"{saved_pins.get('config_sha256', '?')} there, {current_pins['config_sha256']} now): "
                         f"{listed}. Resume with the run's config, or name the keys to change in "
                         "--resume-override (run config resume-override) where they may change")
    return changed


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_base(run: Mapping[str, Any], base_dir: str | Path, where: str) -> None:
    """A finished run is evaluated only on the base it trained on (run.json's base_sha256)."""
    pinned = run.get("base_sha256")
    if pinned and (found := base_sha256(base_dir)) != pinned:
        raise ValueError(f"{where}: the run was trained on base {base_dir} with sha256 {pinned}; that folder "
                         f"now has sha256 {found} (retrained or edited): its scores would not be the run's")
