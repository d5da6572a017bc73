"""Patient-adaptive LoRA (DESIGN.md section 2).

    W_p = W (frozen) + s * A B (shared LoRA) + s * A_p B_p (patient LoRA)

A_p and B_p come from a hypernetwork fed with the patient embedding phi_p:
``lora.hypernetwork = "shared"`` (default) is one generator for all layers,
told which layer it serves by a learned layer embedding (HyperFormer++,
Mahabadi et al. 2021), so its size does not grow with depth;
``"per-layer"`` is the paper's one head pair per layer. The patient factors
differ per row of a batch, so the patient term is two batched matmuls, never
a loop over rows.

Shared factors use peft's names and shapes (``lora_A.weight`` (r, in),
``lora_B.weight`` (out, r)), so exported adapters load with peft.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

# Attention projections of the supported backbones, matched as name suffixes: ViT in transformers 5
# (q/k/v/o_proj), BERT-style and CvT encoders, GPT-2-style decoders (self- and cross-attention), the
# pointwise convolutions of ConvNeXt (its only linear layers), and the encoder-to-decoder projection.
DEFAULT_TARGETS: tuple[str, ...] = (
    "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj",
    "attention.query", "attention.key", "attention.value",
    "projection_query", "projection_key", "projection_value", "pwconv1", "pwconv2",
    "attention.output.dense", "attn.qkv", "attn.out_proj",
    "attn.c_attn", "attn.c_proj", "crossattention.c_attn", "crossattention.q_attn", "crossattention.c_proj",
    "visual_proj",  # the encoder-to-decoder projection of fedtar.generator.model
)
# The MLP projections (DESIGN.md adapts them too). Off by default since issue 21: at the paper's size they
# were 463k of the 1.57M travelling parameters, and their width set the shared generator's heads; without
# them a site uploads 9.0 MB (bf16) per round instead of 15.7 (benchmarks/communication.py), and FTA v2 was
# compared with and without them (docs/results.md). Adapt them with
# lora.target_modules = DEFAULT_TARGETS + MLP_TARGETS.
MLP_TARGETS: tuple[str, ...] = ("mlp.fc1", "mlp.fc2", "intermediate.dense", "output.dense", "mlp.c_fc", "mlp.c_proj")


@dataclass
class PatientLoRAConfig:
    rank: int = 4
    alpha: float = 128.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    shared: bool = True          # the shared LoRA A B
    patient: bool = True         # the per-patient A_p B_p (ablation: false)
    hyper_dim: int = 16          # width of phi_p (and of the shared generator's layer embedding and code)
    hypernetwork: str = "shared"  # shared (one generator, layer embedding) | per-layer (the paper's heads)
    dropout: float = 0.0

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


HYPERNETWORKS = ("shared", "per-layer")
SHARED_HYPERNETWORK = "hypernetwork"  # where inject_patient_lora puts the shared generator on the model


def _features(module: nn.Module) -> tuple[int, int]:
    """(in, out) of an nn.Linear or a GPT-2 Conv1D (whose weight is stored (in, out))."""
    if isinstance(module, Conv1D):
        return tuple(module.weight.shape)
    return module.in_features, module.out_features


class SharedHyperNetwork(nn.Module):
    """One generator of every adapted layer's A_p, B_p (HyperFormer++'s shared hypernetwork).

    code_l = trunk([phi_p; e_l]) mixes the patient embedding with a learned embedding e_l of
    the layer; the trunk's ReLU is what lets a patient act differently per layer (a linear
    trunk would give every layer the same patient map plus an offset). Two linear heads turn
    the code into factors sized for the widest layer, and a layer takes the leading in*r and
    out*r rows: the heads' weights are sliced before the matmul, so no unused factor is
    computed, and one pair of heads serves layers of every shape (per-shape heads would cost
    more: the sum of the distinct widths instead of the largest). Size: hyper_dim x r x
    (max in + max out) plus hyper_dim per layer, where per-layer heads cost
    hyper_dim x r x (in + out) for every layer.
    """

    def __init__(self, cfg: PatientLoRAConfig, shapes: list[tuple[int, int]]):
        super().__init__()
        d, r = cfg.hyper_dim, cfg.rank
        self.rank = r
        self.max_in, self.max_out = max(i for i, _ in shapes), max(o for _, o in shapes)
        self.layer_embedding = nn.Embedding(len(shapes), d)
        self.trunk = nn.Sequential(nn.Linear(2 * d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))
        self.head_A = nn.Linear(d, self.max_in * r)
        self.head_B = nn.Linear(d, self.max_out * r)
        # A_p starts as a random projection (scaled by 1/sqrt(in) per layer in `factors`) and
        # B_p as zero, so the patient term starts at zero, like LoRA's own init.
        nn.init.normal_(self.head_A.weight, std=1.0 / math.sqrt(d))
        nn.init.uniform_(self.head_A.bias, -1.0, 1.0)
        nn.init.zeros_(self.head_B.weight)
        nn.init.zeros_(self.head_B.bias)

    def factors(self, phi: torch.Tensor, layer: int, in_features: int, out_features: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in, r) and (B, r, out) for layer `layer` and a batch of patient embeddings."""
        r = self.rank
        e = self.layer_embedding.weight[layer].to(phi.dtype).expand(phi.shape[0], -1)
        code = self.trunk(torch.cat([phi, e], dim=1))
        na, nb = in_features * r, out_features * r
        a = F.linear(code, self.head_A.weight[:na], self.head_A.bias[:na]).view(-1, in_features, r)
        b = F.linear(code, self.head_B.weight[:nb], self.head_B.bias[:nb]).view(-1, out_features, r)
        return a * in_features ** -0.5, b.transpose(1, 2)


class PatientLoRALinear(nn.Module):
    """Wraps a frozen nn.Linear or GPT-2 Conv1D with shared and patient LoRA.

    With ``lora.hypernetwork = "shared"`` the layer holds (does not own) the model's
    SharedHyperNetwork and its own index into it: inject_patient_lora builds both.
    """

    def __init__(self, base: nn.Module, cfg: PatientLoRAConfig,
                 shared_hyper: tuple[SharedHyperNetwork, int] | None = None):
        super().__init__()
        if cfg.hypernetwork not in HYPERNETWORKS:
            raise ValueError(f"lora.hypernetwork must be one of {HYPERNETWORKS}, got {cfg.hypernetwork!r}")
        self.base = base
        self.in_features, self.out_features = _features(base)
        r = cfg.rank
        self.rank, self.scaling = r, cfg.scaling
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.lora_A = self.lora_B = None
        if cfg.shared:
            self.lora_A = nn.Linear(self.in_features, r, bias=False)
            self.lora_B = nn.Linear(r, self.out_features, bias=False)
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B.weight)
        self.has_patient = cfg.patient
        self.hyper_A = self.hyper_B = None
        # A tuple, so that nn.Module does not register the generator once per layer.
        self.shared_hyper = shared_hyper if cfg.patient and cfg.hypernetwork == "shared" else None
        if cfg.patient and cfg.hypernetwork == "shared" and shared_hyper is None:
            raise ValueError('lora.hypernetwork = "shared": build the layers with inject_patient_lora')
        if cfg.patient and cfg.hypernetwork == "per-layer":
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
        if self.shared_hyper is not None:
            generator, index = self.shared_hyper
            return generator.factors(phi, index, self.in_features, self.out_features)
        a = self.hyper_A(phi).view(-1, self.in_features, self.rank)
        b = self.hyper_B(phi).view(-1, self.rank, self.out_features)
        return a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.lora_A is None and not self.has_patient:
            return out
        h = self.dropout(x)
        patient = self.has_patient and self.phi is not None
        if not patient:
            if self.lora_A is None:
                return out
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
    """Replace every targeted Linear/Conv1D in place; return the wrapped module names.

    With a shared hypernetwork, the generator is added to `model` as ``hypernetwork``.
    """
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, (nn.Linear, Conv1D)) and _matches(name, cfg.target_modules)]
    if not targets:
        raise ValueError(f"lora.target_modules {cfg.target_modules} matched no Linear layer")
    generator = None
    if cfg.patient and cfg.hypernetwork == "shared":
        generator = SharedHyperNetwork(cfg, [_features(m) for _, m in targets])
        model.add_module(SHARED_HYPERNETWORK, generator)
    for index, (name, module) in enumerate(targets):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, PatientLoRALinear(module, cfg, None if generator is None else (generator, index)))
    return [name for name, _ in targets]


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
