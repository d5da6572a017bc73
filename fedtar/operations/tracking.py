"""Run tracking: TensorBoard event files, to watch a run while it goes and compare runs.

A federation run writes ``OUT/tensorboard`` beside its checkpoints, from the one place a
round's history entry is made (``aggregator.server_loop``), so a simulation and a deployment
track the same scalars, each equal to the value in ``OUT/results.json`` (as float32, as
TensorBoard stores scalars). Per round (step = round):

- ``train/loss`` (example-weighted mean), ``train/loss_site/<site>``, ``train/examples`` and, for
  FedTAR, ``train/examples_visit/<t>``;
- ``policy/alpha_visit/<t>`` (FedTAR's aggregation weight per visit index) and ``policy/meta``;
- ``eval/<metric>`` when the global is evaluated (``federation.eval_every``, and the final evaluation
  at the last round);
- ``comms/bytes_received``, ``time/round_seconds``, ``time/site_seconds`` and ``time/compute_seconds``
  (summed over the sites: their train handlers, and the model's passes in them), ``sites/answered``,
  ``sites/valid``, and ``privacy/epsilon`` with DP.

`fedtar pretrain` writes ``pretrain/train_loss`` and ``pretrain/validation_loss`` per epoch to
``BASE-tensorboard`` next to the base folder (outside it: the base's SHA-256 covers every file in
the folder, and a base must hash the same wherever it is retrained). ``tracking.tensorboard = false``
writes nothing. View with ``tensorboard --logdir OUT``.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TB_DIR = "tensorboard"


def pretrain_log_dir(base_dir: str | Path) -> Path:
    """BASE-tensorboard, next to the base folder (resolved: `--out .` names the folder it is)."""
    base_dir = Path(base_dir).resolve()
    return base_dir.parent / f"{base_dir.name}-{TB_DIR}"


class Tracker:
    """Scalars to TensorBoard event files in `log_dir`; does nothing when not `enabled`.
    `resume_step`: a resumed run redoes rounds from this step on; events at or after it from the
    interrupted attempt are hidden (TensorBoard's purge_step). Without it the folder starts empty."""

    def __init__(self, log_dir: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        log_dir = Path(log_dir)
        if resume_step is None and log_dir.exists():
            shutil.rmtree(log_dir)  # a new run: the run folder was checked (or cleaned) before this
        try:
            from torch.utils.tensorboard import SummaryWriter  # imported only when tracking (it takes a second)
        except ImportError as e:
            raise ImportError(f"tracking.tensorboard = true needs the tensorboard package ({e}): "
                              "pip install tensorboard, or set tracking.tensorboard = false") from e

        self.writer = SummaryWriter(str(log_dir), purge_step=resume_step)

    def scalar(self, tag: str, value: Any, step: int) -> None:
        if self.writer is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if math.isnan(float(value)):
            return
        self.writer.add_scalar(tag, float(value), step)

    def scalars(self, prefix: str, values: Mapping[str, Any], step: int) -> None:
        for key, value in values.items():
            self.scalar(f"{prefix}/{key}", value, step)

    def round(self, entry: Mapping[str, Any]) -> None:
        """One round's history entry (aggregator.server_loop) as scalars at step entry["round"]."""
        if self.writer is None:
            return
        step = int(entry["round"])
        self.scalar("train/loss", entry.get("train_loss"), step)
        self.scalars("train/loss_site", entry.get("site_train_loss", {}), step)
        self.scalar("train/examples", entry.get("examples"), step)
        self.scalars("train/examples_visit", entry.get("visit_examples", {}), step)
        for t, alpha in zip(entry.get("visits", []), entry.get("alpha", [])):
            self.scalar(f"policy/alpha_visit/{t}", alpha, step)
        self.scalar("policy/meta", entry.get("meta"), step)
        if "eval" in entry:
            self.evaluation(step, entry["eval"])
        self.scalar("comms/bytes_received", entry.get("bytes_received"), step)
        self.scalar("time/round_seconds", entry.get("seconds"), step)
        self.scalar("time/site_seconds", entry.get("site_seconds"), step)
        self.scalar("time/compute_seconds", entry.get("compute_seconds"), step)
        self.scalar("sites/answered", entry.get("answered"), step)
        self.scalar("sites/valid", entry.get("valid"), step)
        self.scalar("privacy/epsilon", entry.get("epsilon"), step)
        self.flush()

    def evaluation(self, step: int, metrics: Mapping[str, Any]) -> None:
        """The global's metrics: the overall ones and per visit index (per-year ones and counts left out)."""
        self.scalars("eval", {k: v for k, v in metrics.items()
                              if "-year-" not in k and not k.startswith("n-") and k != "cmp_n"}, step)
        self.flush()

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
