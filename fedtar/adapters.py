"""Patient-adaptive LoRA (DESIGN.md section 2).

    W_p = W (frozen) + s * A B (shared LoRA) + s * A_p B_p (patient LoRA)

A_p and B_p come from one small hypernetwork head per layer, fed with the
patient embedding phi_p. The patient factors differ per row of a batch, so
the patient term is two batched matmuls, never a loop over rows.

Shared factors use peft's names and shapes (``lora_A.weight`` (r, in),
``lora_B.weight`` (out, r)), so exported adapters load with peft.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

# Attention and MLP projections of the supported backbones, matched as name suffixes:
# ViT in transformers 5 (q/k/v/o_proj, mlp.fc1/fc2), BERT-style, CvT and ConvNeXt encoders,
# GPT-2-style decoders (self- and cross-attention, MLP).
DEFAULT_TARGETS: tuple[str, ...] = (
    "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj", "mlp.fc1", "mlp.fc2",
    "attention.query", "attention.key", "attention.value",
    "projection_query", "projection_key", "projection_value", "pwconv1", "pwconv2",
    "attention.output.dense", "intermediate.dense", "output.dense", "attn.qkv", "attn.out_proj",
    "attn.c_attn", "attn.c_proj", "crossattention.c_attn", "crossattention.q_attn",
    "crossattention.c_proj", "mlp.c_fc", "mlp.c_proj",
    "visual_proj",  # the encoder-to-decoder projection of fedtar.model
)


@dataclass
class PatientLoRAConfig:
    rank: int = 4
    alpha: float = 128.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    shared: bool = True          # the shared LoRA A B
    patient: bool = True         # the per-patient A_p B_p (ablation: false)
    hyper_dim: int = 16          # width of phi_p
    dropout: float = 0.0

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class PatientLoRALinear(nn.Module):
    """Wraps a frozen nn.Linear or GPT-2 Conv1D with shared and patient LoRA."""

    def __init__(self, base: nn.Module, cfg: PatientLoRAConfig):
        super().__init__()
        self.base = base
        if isinstance(base, Conv1D):
            self.in_features, self.out_features = base.weight.shape
        else:
            self.in_features, self.out_features = base.in_features, base.out_features
        r = cfg.rank
        self.rank, self.scaling = r, cfg.scaling
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.lora_A = self.lora_B = None
        if cfg.shared:
            self.lora_A = nn.Linear(self.in_features, r, bias=False)
            self.lora_B = nn.Linear(r, self.out_features, bias=False)
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B.weight)
        self.hyper_A = self.hyper_B = None
        if cfg.patient:
            # h^l(phi) = [A_p, B_p]. A_p starts as a random projection and B_p as zero,
            # so the patient term starts at zero, like LoRA's own init.
            self.hyper_A = nn.Linear(cfg.hyper_dim, self.in_features * r)
            self.hyper_B = nn.Linear(cfg.hyper_dim, r * self.out_features)
            nn.init.normal_(self.hyper_A.weight, std=1.0 / math.sqrt(self.in_features * cfg.hyper_dim))
            nn.init.uniform_(self.hyper_A.bias, -1 / math.sqrt(self.in_features), 1 / math.sqrt(self.in_features))
            nn.init.zeros_(self.hyper_B.weight)
            nn.init.zeros_(self.hyper_B.bias)
        self.phi: torch.Tensor | None = None  # (B, hyper_dim), set per batch by patient_context

    def patient_factors(self, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in, r) and (B, r, out) for a batch of patient embeddings."""
        a = self.hyper_A(phi).view(-1, self.in_features, self.rank)
        b = self.hyper_B(phi).view(-1, self.rank, self.out_features)
        return a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.lora_A is None and self.hyper_A is None:
            return out
        h = self.dropout(x)
        patient = self.hyper_A is not None and self.phi is not None
        if not patient:
            return out + self.scaling * self.lora_B(self.lora_A(h))
        a, b = self.patient_factors(self.phi.to(h.dtype))
        if self.lora_A is not None:
            # Shared and patient factors side by side along the rank: h [A, A_p] [B; B_p]
            # is both terms in two batched matmuls instead of four.
            n = a.shape[0]
            a = torch.cat([self.lora_A.weight.t().expand(n, -1, -1), a], dim=2)
            b = torch.cat([self.lora_B.weight.t().expand(n, -1, -1), b], dim=1)
        flat = h.reshape(h.shape[0], -1, self.in_features)                   # (B, N, in)
        delta = torch.bmm(torch.bmm(flat, a.to(h.dtype)), b.to(h.dtype))     # (B, N, out)
        return out + self.scaling * delta.reshape(*h.shape[:-1], self.out_features)


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def inject_patient_lora(model: nn.Module, cfg: PatientLoRAConfig) -> list[str]:
    """Replace every targeted Linear/Conv1D in place; return the wrapped module names."""
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, (nn.Linear, Conv1D)) and _matches(name, cfg.target_modules):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, PatientLoRALinear(module, cfg))
            wrapped.append(name)
    if not wrapped:
        raise ValueError(f"lora.target_modules {cfg.target_modules} matched no Linear layer")
    return wrapped


def lora_layers(model: nn.Module) -> Iterator[PatientLoRALinear]:
    return (m for m in model.modules() if isinstance(m, PatientLoRALinear))


@contextmanager
def patient_context(model: nn.Module, phi: torch.Tensor | None) -> Iterator[None]:
    """Make every patient LoRA layer use these per-row patient embeddings."""
    layers = list(lora_layers(model))
    for layer in layers:
        layer.phi = phi
    try:
        yield
    finally:
        for layer in layers:
            layer.phi = None
