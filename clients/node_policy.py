"""What a hospital node checks before it trains: its pinned settings, its vetted base, the global's shape.

Flower gives a node operator no hook over a run's config, so the node's own config
(node.toml, passed as node config) carries the site's policy and the ClientApp enforces it:

- ``pins``: run-config keys the server may not change. A pin is an exact value
  (``"train.base" = "frozen"``) or bounds in a string (``"privacy.clip" = "> 0, <= 1.0"``);
  the run's effective value (the server's config over FedTAR's defaults) must match;
- ``base-sha256``: the hash of the base folder the site vetted (``fedtar.trust.base_hash``);
- the global state the server sends must have exactly the names, shapes and dtypes of the
  node's own travelling set: a server cannot push base weights or extra tensors.

A breach refuses the message (``NodeRefusal``) after an audit-log line. These checks run in
the app's code: they bind a server that runs the genuine app; only signed app bundles
(``trusted_entities``) bind the code itself (docs/explanation/trust-model.md).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from typing import Any

import torch

from fedtar.config import FedTARConfig, apply_overrides
from fedtar.data.demographics import GMM_RECORD
from fedtar.generator.parameters import TensorSpec

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq,
        "!=": operator.ne}
_BOUND = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")


class NodeRefusal(RuntimeError):
    """The node will not run this message: the reason names the breached pin, hash or tensor."""


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _conditions(spec: Any) -> list[tuple[str, Any]]:
    """A pin as (operator, value) conditions: an exact value, or comma-separated bounds."""
    if isinstance(spec, str):
        parts = [p for p in spec.split(",") if p.strip()]
        bounds = [_BOUND.match(p) for p in parts]
        if parts and all(bounds):
            out = []
            for m in bounds:
                value = _number(m.group(2))
                if value is None and m.group(1) not in ("==", "!="):
                    raise ValueError(f"pin bound {m.group(0).strip()!r} needs a number")
                out.append((m.group(1), value if value is not None else m.group(2).strip("\"'")))
            return out
    return [("==", spec)]


def parse_pins(pins: Mapping[str, Any] | str) -> dict[str, list[tuple[str, Any]]]:
    """Pins from node.toml (a table) or from node config (its JSON); unknown keys are an error."""
    if isinstance(pins, str):
        pins = json.loads(pins) if pins.strip() else {}
    known = set(FedTARConfig().to_flat()) | {"strategy"}
    unknown = sorted(set(pins) - known)
    if unknown:
        raise ValueError(f"pins on unknown config key(s) {', '.join(unknown)} (keys as in fedtar/config.py, "
                         f"or 'strategy')")
    return {key: _conditions(spec) for key, spec in pins.items()}


def pins_json(pins: Mapping[str, Any]) -> str:
    """Node-config form of the pins (a TOML literal string: no single quotes allowed)."""
    parse_pins(pins)
    text = json.dumps(dict(pins), sort_keys=True, separators=(",", ":"))
    if "'" in text:
        raise ValueError("pins may not contain single quotes")
    return text


def _holds(actual: Any, op: str, expected: Any) -> bool:
    if isinstance(actual, (list, tuple)):
        actual = ",".join(str(v) for v in actual)
    if isinstance(expected, (list, tuple)):
        expected = ",".join(str(v) for v in expected)
    if isinstance(actual, bool) or isinstance(expected, bool):
        return _OPS[op](str(actual).lower(), str(expected).lower())
    a, e = _number(str(actual)), _number(str(expected))
    if a is not None and e is not None:
        return _OPS[op](a, e)
    return _OPS[op](str(actual), str(expected))


def pin_breaches(pins: Mapping[str, Any] | str, cfg_flat: Mapping[str, Any], strategy: str) -> list[str]:
    """Pinned keys whose effective run value the node does not accept."""
    effective = {**apply_overrides(FedTARConfig(), cfg_flat).to_flat(), "strategy": strategy}
    problems = []
    for key, conditions in parse_pins(pins).items():
        failed = [f"{op} {value}" for op, value in conditions if not _holds(effective[key], op, value)]
        if failed:
            problems.append(f"run config {key} = {effective[key]!r} breaks the node's pin ({', '.join(failed)})")
    return problems


def state_breaches(state: Mapping[str, torch.Tensor], specs: list[TensorSpec], record: str) -> list[str]:
    """Differences between a received state and the node's own travelling set."""
    expected = {s.name: s for s in specs}
    problems = []
    extra, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
    if extra:
        problems.append(f"{record}: {len(extra)} tensor(s) outside the travelling set, e.g. {extra[:3]}")
    if missing:
        problems.append(f"{record}: {len(missing)} travelling tensor(s) missing, e.g. {missing[:3]}")
    for name in sorted(set(state) & set(expected)):
        value, spec = state[name], expected[name]
        if tuple(value.shape) != spec.shape or value.dtype != spec.dtype:
            problems.append(f"{record}: {name} is {value.dtype} {tuple(value.shape)}, "
                            f"the node's is {spec.dtype} {spec.shape}")
    return problems


def gmm_breaches(state: Mapping[str, torch.Tensor], record: str, features: int,
                 components: int | None = None) -> list[str]:
    """What is wrong with a received GMM record (the fitted GMM, or EM's candidates): names, shapes,
    finite means and positive variances. `components` fixes the fitted GMM's width (q's)."""
    if record == GMM_RECORD:
        groups = {"": state}
    else:
        groups = {}
        for name, value in state.items():
            k, _, part = name.partition(".")
            groups.setdefault(k + ".", {})[part] = value
    problems = []
    for prefix, parts in groups.items():
        if set(parts) != {"means", "variances", "log_weights"}:
            problems.append(f"{record}: {prefix}tensors {sorted(parts)}, expected means, variances, "
                            "log_weights")
            continue
        k = parts["log_weights"].shape[0] if parts["log_weights"].dim() == 1 else -1
        want = (components if components is not None else k, features)
        if (tuple(parts["means"].shape) != want or tuple(parts["variances"].shape) != want
                or tuple(parts["log_weights"].shape) != (want[0],)):
            problems.append(f"{record}: {prefix}means {tuple(parts['means'].shape)}, variances "
                            f"{tuple(parts['variances'].shape)}, log_weights {tuple(parts['log_weights'].shape)}; "
                            f"expected {want}, {want}, ({want[0]},)")
        elif not (torch.isfinite(parts["means"]).all() and torch.isfinite(parts["variances"]).all()
                  and (parts["variances"] > 0).all() and not torch.isnan(parts["log_weights"]).any()):
            problems.append(f"{record}: {prefix}non-finite means or non-positive variances")
    return problems
