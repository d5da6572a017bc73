"""The one place that knows which tensors travel between a site and the server.

Only trainable tensors travel: the shared LoRA factors, the hypernetwork
heads, the patient projection, tensors a pretrained checkpoint lacked, and
the base only when ``train.base = trainable``. Anything else (frozen base,
GMM statistics, data) never leaves a site.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def bytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()


def travelling_specs(model: nn.Module) -> list[TensorSpec]:
    """Names, shapes and dtypes of the tensors that travel, in a fixed order."""
    return [TensorSpec(n, tuple(p.shape), p.dtype) for n, p in model.named_parameters() if p.requires_grad]


def get_travelling_state(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """Detached CPU copies of the travelling tensors."""
    return OrderedDict((n, p.detach().cpu().clone()) for n, p in model.named_parameters() if p.requires_grad)


def set_travelling_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load travelling tensors; names and shapes must match exactly."""
    params = dict(model.named_parameters())
    expected = {s.name: s for s in travelling_specs(model)}
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ValueError(f"travelling state mismatch: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            if tuple(value.shape) != expected[name].shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} != {expected[name].shape}")
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def size_report(model: nn.Module) -> dict[str, float]:
    """Travelling set size against the whole model (parameters and bytes)."""
    specs = travelling_specs(model)
    total = sum(p.numel() for p in model.parameters())
    travelling = sum(s.numel for s in specs)
    return {"travelling_params": travelling, "total_params": total,
            "travelling_bytes": sum(s.bytes for s in specs), "share": travelling / max(total, 1)}


def state_from_record(record) -> dict[str, torch.Tensor]:
    """A plain {name: tensor} dict from a Flower ArrayRecord (or anything with to_torch_state_dict)."""
    return dict(record.to_torch_state_dict())
