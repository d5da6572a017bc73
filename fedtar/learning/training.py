"""The one local training loop, evaluation loss and report generation.

Used alike by the demo (central training), the Flower client (per-visit
training at a site) and the baselines: FedProx and SCAFFOLD plug in as a
gradient correction, not as loops of their own.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fedtar.config import TrainConfig
from fedtar.data.exams import Batch, Exams
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import ReportGenerator
from fedtar.operations.heap import release_freed_memory

# Called after backward with {name: parameter} of the trainable tensors.
GradCorrection = Callable[[dict[str, torch.nn.Parameter]], None]
# The training objective of one batch; the default is the report loss.
LossFn = Callable[[ReportGenerator, Batch], torch.Tensor]


def report_loss(model: ReportGenerator, batch: Batch) -> torch.Tensor:
    """The training objective: the report loss (plus the change head's, when configured)."""
    return model.objective(batch, batch.q)


@dataclass
class TrainStats:
    loss: float
    steps: int
    examples: int
    compute_seconds: float = 0.0  # in the model's forward and backward passes and the optimizer's step


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: ReportGenerator, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_local(
    model: ReportGenerator,
    exams: Exams,
    cfg: TrainConfig,
    batch_size: int,
    optimizer: torch.optim.Optimizer | None = None,
    correction: GradCorrection | None = None,
    generator: torch.Generator | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    loss_fn: LossFn = report_loss,
) -> TrainStats:
    """AdamW over the trainable tensors for `epochs` passes (or `max_steps` steps)."""
    device = next(model.parameters()).device
    optimizer = optimizer or make_optimizer(model, cfg)
    epochs = cfg.epochs if epochs is None else epochs
    max_steps = cfg.max_steps if max_steps is None else max_steps
    generator = generator or torch.Generator().manual_seed(cfg.seed)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    total, steps, examples = 0.0, 0, 0
    n_epochs = epochs if not max_steps else math.ceil(max_steps / max(1, math.ceil(exams.num_examples() / batch_size)))
    compute = 0.0  # the rest of a call's time is loading, decoding and collating the batches
    for _ in range(max(1, n_epochs)):
        for batch in exams.batches(batch_size, shuffle=True, generator=generator):
            batch = batch.to(device)
            started = time.perf_counter()
            with _autocast(device, cfg.bf16):
                loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if correction is not None:
                correction(trainable)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable.values(), cfg.grad_clip)
            optimizer.step()
            n = batch.images.shape[0]
            total += float(loss.detach()) * n  # waits for the device: the step's time is all counted
            compute += time.perf_counter() - started
            examples += n
            steps += 1
            if max_steps and steps >= max_steps:
                return TrainStats(total / max(examples, 1), steps, examples, compute)
    return TrainStats(total / max(examples, 1), steps, examples, compute)


@torch.no_grad()
def mean_loss(model: ReportGenerator, exams: Exams, batch_size: int | None = None,
              bf16: bool = True) -> float:
    """Mean report loss over the exams, in batches of `batch_size` (default data.batch_size: memory
    bounded by the config, not by the split)."""
    batch_size = batch_size or model.cfg.data.batch_size
    device = next(model.parameters()).device
    model.eval()
    total, n = 0.0, 0
    for batch in exams.batches(batch_size):
        batch = batch.to(device)
        with _autocast(device, bf16):
            loss = model(batch, batch.q)
        total += float(loss) * batch.images.shape[0]
        n += batch.images.shape[0]
    return total / max(n, 1)


@torch.no_grad()
def generate_reports(model: ReportGenerator, exams: Exams, tokenizer: ReportTokenizer, num_beams: int = 1,
                     batch_size: int | None = None, bf16: bool = True) -> list[str]:
    """Generated reports in the order of exams.rows(), in batches of `batch_size` (default data.batch_size)."""
    batch_size = batch_size or model.cfg.data.batch_size
    device = next(model.parameters()).device
    model.eval()
    out: list[str] = []
    for batch in exams.batches(batch_size):
        batch = batch.to(device)
        with _autocast(device, bf16):
            ids = model.generate(batch, batch.q, num_beams=num_beams)
        out.extend(tokenizer.decode(row) for row in ids)
    return out


def validation_gradient(model: ReportGenerator, exams: Exams, batch_size: int
                        ) -> tuple[dict[str, torch.Tensor], int]:
    """grad of the mean validation loss w.r.t. the trainable tensors (first-order meta step)."""
    device = next(model.parameters()).device
    n = exams.num_examples()
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    model.eval()
    for batch in exams.batches(batch_size):
        batch = batch.to(device)
        (model.objective(batch, batch.q) * (batch.images.shape[0] / max(n, 1))).backward()
    # The server runs this over every site's validation exams each round: without handing the batches'
    # freed activations back, the allocator's fragmentation grew with the sites (simulation_scale.py).
    release_freed_memory()
    grad = {k: (p.grad.detach().cpu().clone() if p.grad is not None else torch.zeros_like(p, device="cpu"))
            for k, p in params.items()}
    model.zero_grad(set_to_none=True)
    return grad, n
