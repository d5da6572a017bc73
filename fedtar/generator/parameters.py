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


def size_report(model: nn.Module, transport: str = "float32") -> dict[str, float]:
    """Travelling set size against the whole model (parameters, and bytes as uploaded in `transport`)."""
    specs = travelling_specs(model)
    total = sum(p.numel() for p in model.parameters())
    travelling = sum(s.numel for s in specs)
    wire = {n: torch.empty((), dtype=s.dtype) for n, s in ((s.name, s) for s in specs)}
    sizes = {n: v.element_size() for n, v in encode_state(wire, transport).items()}
    return {"travelling_params": travelling, "total_params": total,
            "travelling_bytes": sum(s.numel * sizes[s.name] for s in specs), "share": travelling / max(total, 1)}


# federation.transport_dtype: how a site's uploaded states travel. bfloat16 halves the upload;
# the server decodes to float32 before its guards and aggregation, and the global stays float32.
TRANSPORT_DTYPES = ("float32", "bfloat16")
_BF16_WIRE = torch.int16  # numpy, which Flower serializes through, has no bfloat16: its bit pattern travels


def encode_state(state: dict[str, torch.Tensor], transport: str) -> dict[str, torch.Tensor]:
    """What a site uploads: floating tensors rounded to bfloat16 and carried as their 16-bit patterns."""
    if transport not in TRANSPORT_DTYPES:
        raise ValueError(f"federation.transport_dtype must be one of {TRANSPORT_DTYPES}, got {transport!r}")
    if transport == "float32":
        return state
    return {n: v.to(torch.bfloat16).view(_BF16_WIRE) if v.is_floating_point() else v for n, v in state.items()}


def decode_state(state: dict[str, torch.Tensor], transport: str) -> dict[str, torch.Tensor]:
    """encode_state's inverse, to float32; a tensor not in the declared transport form is refused
    (ValueError), so a reply cannot slip another dtype past the guards' dtype check."""
    if transport not in TRANSPORT_DTYPES:
        raise ValueError(f"federation.transport_dtype must be one of {TRANSPORT_DTYPES}, got {transport!r}")
    if transport == "float32":
        return state
    wrong = [n for n, v in state.items() if v.dtype != _BF16_WIRE]
    if wrong:
        raise ValueError(f"{wrong[0]}: dtype {state[wrong[0]].dtype}, but bfloat16 transport sends "
                         f"{_BF16_WIRE} bit patterns")
    return {n: v.view(torch.bfloat16).float() for n, v in state.items()}


def state_from_record(record, transport: str = "float32") -> dict[str, torch.Tensor]:
    """A plain {name: tensor} dict from a Flower ArrayRecord (or anything with to_torch_state_dict),
    decoded from `transport` (federation.transport_dtype) for a site's upload."""
    return decode_state(dict(record.to_torch_state_dict()), transport)
