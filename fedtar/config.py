"""The one config system: nested dataclasses, TOML files and dotted overrides.

The same dotted keys (``train.lr``, ``lora.rank``) work in a TOML file, on the
command line (``--set train.lr=1e-3``) and in Flower's run config
(``[tool.flwr.app.config]``), so a setting has one name everywhere.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fedtar.adapters import PatientLoRAConfig
from fedtar.privacy import PrivacyConfig
from fedtar.temporal_policy import PolicyConfig


@dataclass
class DataConfig:
    image_size: int = 64
    section: str = "findings"        # report target: findings | impression | both
    max_tokens: int = 96
    min_word_frequency: int = 1      # tokenizer vocabulary threshold
    max_unknown_rate: float = 0.01   # warn when more of a site's report tokens than this are [UNK]
    batch_size: int = 16
    # CT volumes (NIfTI in HU): depth > 0 loads (windows, image_size, image_size, depth) volumes
    # through data_adapters.ct.volume_transform; use with model.encoder = "tiny-3d".
    volume_depth: int = 0
    hu_windows: tuple[str, ...] = ("lung", "mediastinal", "bone")
    voxel_spacing: tuple[float, ...] = ()  # mm (x, y, z) to resample to; empty: keep the scan's


@dataclass
class ModelConfig:
    # "tiny" (a small ResNet; "tiny-convnext", "tiny-vit"; "tiny-3d": MONAI's 3D ViT for CT
    # volumes) and "tiny" decoder (GPT-2) build small random models from the sizes below (tests,
    # demo); anything else is a hub id or a local folder for from_pretrained.
    encoder: str = "tiny"
    decoder: str = "tiny"
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    patch_size: int = 8
    image_channels: int = 1
    prior: str = "both"              # none | image | report | both


@dataclass
class DemographicsConfig:
    gmm: bool = True                 # false: the profile vector feeds the projection directly
    gmm_components: int = 16
    features: tuple[str, ...] = ("hash", "age", "sex")
    with_profile: bool = False       # true (ours): the profile vector v_p beside q_p into the projection


@dataclass
class TrainConfig:
    lr: float = 1e-5                 # the paper's default (model and adapters)
    weight_decay: float = 0.0
    epochs: int = 1
    max_steps: int = 0               # >0 caps the optimizer steps of one call
    base: str = "frozen"             # frozen | trainable (then the base travels too)
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda
    bf16: bool = True                # autocast in bf16 on CUDA


@dataclass
class ClientConfig:
    visit_start: str = "global"      # global | chained: where visit t's training starts
    local_epochs: int = 2            # passes over each visit's exams (FedTAR) / over all exams (baselines)
    eval_beams: int = 1              # 1: greedy decoding at evaluation
    eval_meteor: bool = True         # METEOR needs Java (a few seconds per evaluation to start it)


@dataclass
class MetaConfig:
    validation: str = "server"       # server | federated (sites send grad of their validation loss)
    recent_fraction: float = 1.0     # <1: validate on each site's most recent exams of its validation split
                                     # (the deployment target, ours); 1: the whole, mixed split (the paper's)


@dataclass
class FederationConfig:
    strategy: str = "fedtar"         # fedtar | fedavg | fedprox | fedadam | fedyogi | scaffold | drfa | local
    rounds: int = 3
    min_sites: int = 2               # a round needs at least this many valid replies
    round_timeout: float = 600.0     # seconds to wait for replies in one round
    round_retries: int = 1           # a round with too few valid replies is retried this often
    node_wait: float = 120.0         # seconds to wait for min_sites nodes to connect
    prox_mu: float = 0.01            # FedProx proximal weight
    server_lr: float = 0.01          # FedAdam / FedYogi server learning rate
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3                # FedAdam / FedYogi adaptivity
    drfa_lr: float = 0.01            # DRFA: ascent step of the site weights lambda on the sites' losses
    norm_bound: float = 10.0         # reject updates whose norm exceeds this x the round's median
    eval_every: int = 0              # >0: also evaluate the global every this many rounds (curves)
    eval_split: str = "test"         # the split evaluations score (validate: learning-rate searches)


@dataclass
class FedTARConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: PatientLoRAConfig = field(default_factory=PatientLoRAConfig)
    demographics: DemographicsConfig = field(default_factory=DemographicsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def to_flat(self) -> dict[str, Any]:
        """Dotted keys to plain values (lists for tuples), e.g. for checkpoints."""
        out: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            for f in dataclasses.fields(getattr(self, section.name)):
                value = getattr(getattr(self, section.name), f.name)
                out[f"{section.name}.{f.name}"] = list(value) if isinstance(value, tuple) else value
        return out


# The embedded synthetic setting trains a 1.4M-parameter base for minutes on a CPU, not a
# pretrained CvT + DistilGPT2 for hours on GPUs: the paper's lr 1e-5 barely moves it within the
# demo's budget, and meta lr 1e-4 moves alpha by ~1e-4 per round. `fedtar demo` and
# `fedtar simulate` start from these (README, "Defaults"); --config / --set still override.
SYNTHETIC_PRESET: dict[str, Any] = {
    "train.lr": 1e-4,
    "policy.meta_lr": 1e-2,
}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(str(v) for v in value)
    if annotation is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"config key {key}: {value!r} is not a boolean")
        return bool(value)
    if annotation in (int, float, str):
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ValueError(f"config key {key}: {value!r} is not a valid {annotation.__name__}") from None
    return value


def apply_overrides(cfg: FedTARConfig, flat: Mapping[str, Any]) -> FedTARConfig:
    """Set dotted keys on a copy of cfg; unknown keys are an error, not a silent no-op."""
    cfg = dataclasses.replace(cfg, **{f.name: dataclasses.replace(getattr(cfg, f.name))
                                      for f in dataclasses.fields(cfg)})
    for key, value in flat.items():
        section_name, _, name = key.partition(".")
        section = getattr(cfg, section_name, None)
        if section is None or not dataclasses.is_dataclass(section):
            raise ValueError(f"unknown config section in {key!r}")
        hints = typing.get_type_hints(type(section))
        if name not in hints:
            raise ValueError(f"unknown config key {key!r}")
        setattr(section, name, _coerce(value, hints[name], key))
    return cfg


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                preset: Mapping[str, Any] | None = None) -> FedTARConfig:
    """Defaults, then a preset (if any), then the TOML file (if any), then the overrides."""
    cfg = apply_overrides(FedTARConfig(), preset or {})
    if path is not None:
        path = Path(path)
        try:
            tree = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{path}: cannot read config: {e}") from e
        try:
            cfg = apply_overrides(cfg, _flatten(tree))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
    return apply_overrides(cfg, overrides or {})


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """['a.b=1', ...] from the command line to {'a.b': '1'}."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def load_dataclass_toml(path: str | Path, table: str, cls: type) -> Any:
    """One table of a role's TOML file (server.toml, node.toml) as a dataclass; keys may use - or _."""
    path = Path(path)
    try:
        tree = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {e}") from e
    if not isinstance(tree.get(table), dict):
        raise ValueError(f"{path}: no [{table}] table")
    values = {k.replace("-", "_"): v for k, v in tree[table].items()}
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) in [{table}]: {', '.join(unknown)} "
                         f"(known: {', '.join(known)})")
    return cls(**values)
