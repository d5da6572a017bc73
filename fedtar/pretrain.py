"""The stand-in for a public pretrained checkpoint, for the embedded synthetic setting.

Real use starts from a pretrained backbone (CvT + DistilGPT2). A random
frozen base learns little, so the synthetic default first trains a small
base on a separate "public" pool from the same generator (its own sites,
disjoint from any federation's), with its own tokenizer, and caches it.
The federation then adapts that frozen base with patient-adaptive LoRA.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data_adapters.dataset import Batch, concat_exams
from data_adapters.records import read_manifest
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import FedTARConfig, apply_overrides
from fedtar.model import ARCHITECTURE_KEYS, MODEL_FILE, ReportGenerator, build_model, save_model
from fedtar.site import load_site
from fedtar.tokenizer import ReportTokenizer
from fedtar.training import mean_loss, resolve_device, train_local

log = logging.getLogger(__name__)
PRETRAIN_FILE = "pretrain.json"
DEFAULT_PRETRAIN_EPOCHS = 15


class FindingProbe(nn.Module):
    """Severity classifier on pooled image tokens, used only while pretraining.

    Report loss alone lets a small decoder ignore the image (a language prior
    fits most tokens); supervising the encoder with the pool's finding labels
    makes the base's image features informative, as a pretrained encoder's are.
    """

    def __init__(self, dim: int, findings: int, levels: int = 4):
        super().__init__()
        self.head = nn.Linear(dim, findings * levels)
        self.findings, self.levels = findings, levels

    def loss(self, model: ReportGenerator, batch: Batch) -> torch.Tensor:
        tokens = model._encode_images(batch.images)
        logits = self.head(tokens.mean(1)).view(-1, self.findings, self.levels)
        return F.cross_entropy(logits.reshape(-1, self.levels).float(), batch.labels.reshape(-1).clamp(max=3),
                               ignore_index=-100)


def public_pool_config(seed: int = 0, patients: int = 100) -> SyntheticConfig:
    return SyntheticConfig(sites=3, patients=patients, visits=5, seed=seed + 1000, site_prefix="public",
                           first_site_index=100)


def pretrain_base(out: str | Path, cfg: FedTARConfig, epochs: int | None = None, lr: float = 1e-3,
                  pool: SyntheticConfig | None = None) -> Path:
    """Train (or reuse, when the cache matches) a base on the public pool; return its folder."""
    out = Path(out)
    epochs = DEFAULT_PRETRAIN_EPOCHS if epochs is None else epochs
    pool = pool or public_pool_config(cfg.train.seed)
    flat = cfg.to_flat()
    key = {"architecture": {k: flat[k] for k in ARCHITECTURE_KEYS}, "prior": flat["model.prior"],
           "pool": dataclasses.asdict(pool), "epochs": epochs, "lr": lr, "seed": cfg.train.seed}
    if (out / MODEL_FILE).is_file() and (out / PRETRAIN_FILE).is_file():
        if json.loads((out / PRETRAIN_FILE).read_text()) == key:
            log.info("reusing the pretrained base in %s", out)
            return out
    torch.manual_seed(cfg.train.seed)
    manifests = generate_federation(out / "public_pool", pool)
    reports = [r.report(cfg.data.section) for m in manifests for r in read_manifest(m).records]
    tokenizer = ReportTokenizer.train(reports, min_frequency=cfg.data.min_word_frequency)
    base_cfg = apply_overrides(cfg, {"lora.shared": False, "lora.patient": False, "train.base": "trainable",
                                     "train.lr": lr})
    model = build_model(base_cfg, tokenizer).to(resolve_device(cfg.train.device))
    sites = [load_site(m, tokenizer, base_cfg) for m in manifests]
    train = concat_exams([s.split("train") for s in sites])
    val = concat_exams([s.split("validate") for s in sites])
    probe = FindingProbe(model.visual_proj.out_features, len(train.label_names)).to(model.visual_proj.weight.device)
    loss_fn = lambda m, b: m(b, b.q) + probe.loss(m, b)  # noqa: E731
    optimizer = torch.optim.AdamW([*model.parameters(), *probe.parameters()], lr=lr,
                                  weight_decay=base_cfg.train.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    for epoch in range(epochs):
        stats = train_local(model, train, base_cfg.train, cfg.data.batch_size, optimizer,
                            generator=generator, epochs=1, loss_fn=loss_fn)
        schedule.step()
        log.info("pretrain epoch %d/%d: train loss %.3f, validation loss %.3f", epoch + 1, epochs, stats.loss,
                 mean_loss(model, val))
    save_model(out, model.cpu(), tokenizer)
    (out / PRETRAIN_FILE).write_text(json.dumps(key, indent=2, sort_keys=True))
    return out
