"""The base a federation adapts: `fedtar pretrain`.

Three ways, by what the config and the command name:

- the synthetic demo's default: a small base trained on a separate "public" pool from the
  generator (its own sites, disjoint from any federation's), with a word-level tokenizer
  trained on the pool's reports;
- ``--data DIR``: the public pool is a prepared federation folder (for MIMIC-CXR its official
  train split, public to every credentialed user): the tokenizer is trained on the pool's
  training reports, so it speaks the sites' language; CT folders (NIfTI volumes, with
  ``data.volume_depth`` > 0) pretrain a 3D base, never on 2D PNGs;
- ``model.decoder`` a pretrained checkpoint (hub id or local folder): the base is assembled
  from the backbones with the decoder's own subword tokenizer and is not pretrained on
  synthetic data (``--data`` trains it further on a real pool).

A random frozen base learns little, which is why the small bases are trained at all; the
federation then adapts the frozen base with patient-adaptive LoRA. Bases are cached: a
folder whose pretrain.json matches the request is reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data_adapters.records import find_manifests, read_manifest
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import V1_GENERATOR, FedTARConfig, apply_overrides
from fedtar.data.exams import Batch, concat_exams
from fedtar.data.site import load_site
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import (
    ARCHITECTURE_KEYS,
    COMPARISON_KEYS,
    MODEL_FILE,
    ReportGenerator,
    build_model,
    save_model,
)
from fedtar.learning.training import mean_loss, resolve_device, train_local
from fedtar.operations.tracking import Tracker, pretrain_log_dir

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


def _pool_manifests(data: str, cfg: FedTARConfig) -> list[Path]:
    """A prepared folder's manifests, checked against the config's image kind (2D or CT volumes)."""
    manifests = find_manifests(data)
    for m in manifests:
        records = read_manifest(m).records
        volumes = [r for r in records if r.image_paths[0].name.endswith((".nii", ".nii.gz"))]
        if cfg.data.volume_depth and len(volumes) < len(records):
            raise ValueError(f"{m}: data.volume_depth > 0 (a CT base) but the manifest lists 2D images; "
                             "a CT base is pretrained on CT volumes (fedtar prepare dicom --modality ct)")
        if not cfg.data.volume_depth and volumes:
            raise ValueError(f"{m}: the manifest lists CT volumes; set data.volume_depth (and model.encoder = "
                             '"tiny-3d", model.image_channels = 3) for a CT base')
    return manifests


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def pretrain_base(out: str | Path, cfg: FedTARConfig, epochs: int | None = None, lr: float = 1e-3,
                  pool: SyntheticConfig | None = None, data: str | Path | None = None) -> Path:
    """Train (or reuse, when the cache matches) a base; return its folder (see the module docstring)."""
    out = Path(out)
    pretrained_decoder = cfg.model.decoder != "tiny"
    if cfg.data.volume_depth and data is None and not pretrained_decoder:
        raise ValueError("data.volume_depth > 0 asks for a CT base: pass --data with a prepared CT folder "
                         "(fedtar prepare dicom --modality ct); the synthetic pool holds 2D radiographs only")
    epochs = DEFAULT_PRETRAIN_EPOCHS if epochs is None else epochs
    flat = cfg.to_flat()
    # The comparison modules are named where they differ from the v1 generator (a fixed reference, not
    # today's defaults: a change of default must not orphan the bases already cached).
    v1 = apply_overrides(FedTARConfig(), V1_GENERATOR).to_flat()
    key = {"architecture": {k: flat[k] for k in ARCHITECTURE_KEYS}, "prior": flat["model.prior"],
           **{k: flat[k] for k in COMPARISON_KEYS if flat[k] != v1[k]},
           "epochs": epochs, "lr": lr, "seed": cfg.train.seed}
    manifests: list[Path] = []
    if data is not None:
        manifests = _pool_manifests(str(data), cfg)
        key["data"] = {"path": str(Path(str(data)).resolve()), "manifests": _digest(manifests),
                       "section": cfg.data.section}
    elif pretrained_decoder:
        key["epochs"] = 0  # assembled from the backbones: no synthetic pretraining
    else:
        pool = pool or public_pool_config(cfg.train.seed)
        key["pool"] = dataclasses.asdict(pool)
    if (out / MODEL_FILE).is_file() and (out / PRETRAIN_FILE).is_file():
        if json.loads((out / PRETRAIN_FILE).read_text()) == key:
            log.info("reusing the pretrained base in %s", out)
            return out
    torch.manual_seed(cfg.train.seed)
    base_cfg = apply_overrides(cfg, {"lora.shared": False, "lora.patient": False, "train.base": "trainable",
                                     "train.lr": lr})
    if pretrained_decoder:
        tokenizer = ReportTokenizer.from_pretrained(cfg.model.decoder)
    if data is None and pretrained_decoder:
        model = build_model(apply_overrides(base_cfg, {"train.base": "frozen"}), tokenizer)
        log.info("assembled a base from %s and %s with the decoder's tokenizer (no pretraining)",
                 cfg.model.encoder, cfg.model.decoder)
        return _save_base(out, model, tokenizer, key)
    if data is None:
        manifests = generate_federation(out / "public_pool", pool)
        reports = [r.report(cfg.data.section) for m in manifests for r in read_manifest(m).records]
    else:  # a real pool: the vocabulary comes from its training reports only (held-out text stays unseen)
        reports = [r.report(cfg.data.section) for m in manifests for r in read_manifest(m).records
                   if r.split == "train"]
    if not pretrained_decoder:
        tokenizer = ReportTokenizer.train(reports, min_frequency=cfg.data.min_word_frequency)
    model = build_model(base_cfg, tokenizer).to(resolve_device(cfg.train.device))
    sites = [load_site(m, tokenizer, base_cfg) for m in manifests]
    train = concat_exams([s.split("train") for s in sites])
    val = concat_exams([s.split("validate") for s in sites])
    if not train.num_examples():
        raise ValueError(f"{data}: no training exams in the pool")
    probe = None
    if train.label_names:  # finding labels (synthetic severities, MIMIC's CheXpert table) supervise the encoder
        probe = FindingProbe(model.visual_proj.out_features, len(train.label_names)).to(
            model.visual_proj.weight.device)
    loss_fn = (lambda m, b: m.objective(b, b.q) + probe.loss(m, b)) if probe is not None else None  # noqa: E731
    params = [*model.parameters(), *(probe.parameters() if probe is not None else [])]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=base_cfg.train.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    generator = torch.Generator().manual_seed(cfg.train.seed)
    tracker = Tracker(pretrain_log_dir(out), cfg.tracking.tensorboard)  # beside the base: not in its hash
    for epoch in range(epochs):
        stats = train_local(model, train, base_cfg.train, cfg.data.batch_size, optimizer,
                            generator=generator, epochs=1, **({"loss_fn": loss_fn} if loss_fn else {}))
        schedule.step()
        val_loss = mean_loss(model, val) if val.num_examples() else None
        log.info("pretrain epoch %d/%d: train loss %.3f, validation loss %s", epoch + 1, epochs, stats.loss,
                 f"{val_loss:.3f}" if val_loss is not None else "n/a (no validate split)")
        tracker.scalars("pretrain", {"train_loss": stats.loss, "validation_loss": val_loss}, epoch + 1)
        tracker.flush()
    tracker.close()
    model.untrained = []  # every tensor trained on the pool (train.base = trainable)
    return _save_base(out, model.cpu(), tokenizer, key)


def _save_base(out: Path, model: ReportGenerator, tokenizer: ReportTokenizer, key: dict) -> Path:
    save_model(out, model, tokenizer)
    (out / PRETRAIN_FILE).write_text(json.dumps(key, indent=2, sort_keys=True))
    return out
