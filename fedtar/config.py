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

from fedtar.generator.adapters import HYPERNETWORKS, PatientLoRAConfig
from fedtar.generator.parameters import TRANSPORT_DTYPES
from fedtar.learning.temporal_policy import PolicyConfig
from fedtar.trust.privacy import PrivacyConfig


@dataclass
class DataConfig:
    image_size: int = 64
    section: str = "findings"        # report target: findings | impression | both
    max_tokens: int = 96
    min_word_frequency: int = 1      # tokenizer vocabulary threshold
    max_unknown_rate: float = 0.01   # warn when more of a site's report tokens than this are [UNK]
    batch_size: int = 16
    # Images are read from disk per batch (fedtar.data.exams): decoded sources (uint8 radiographs, the
    # volume's dtype for CT) are cached up to cache_mib per site; workers > 0 reads batches in
    # that many DataLoader processes (sharing the site's cache_mib).
    cache_mib: float = 256.0
    workers: int = 0
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
    # How the decoder is helped to compare the prior image with the current one (issue 19):
    # compare = "difference" adds the tokens' difference (current - prior) to the memory;
    # change_head = true adds one memory token per CheXpert observation from a change head that reads
    # both images, and change_loss > 0 supervises it with the change against the prior exam's labels.
    # The defaults are the generator of the FTA v2 sweep (issue 19; V1_GENERATOR below is the one before).
    compare: str = "none"            # none | difference
    change_head: bool = True
    change_loss: float = 1.0
    change_width: int = 64           # the change head's width (it travels: keep it small)
    change_teacher: bool = True      # train the decoder on the true change (where known), test on the head's


@dataclass
class DemographicsConfig:
    gmm: bool = True                 # false: the profile vector feeds the projection directly
    gmm_components: int = 16
    features: tuple[str, ...] = ("hash", "age", "sex")
    with_profile: bool = False       # true (ours): the profile vector v_p beside q_p into the projection
    # site: each site fits its own GMM on its own patients (the paper). federated: one GMM for all sites by
    # federated EM before round 1 (the server sums the sites' per-component counts, sums and sums of
    # squares; no patient's profile leaves its site), sent to the sites with every round's messages.
    gmm_scope: str = "site"
    # fixed: gmm_components components. bic: the count of 1..gmm_components with the lowest BIC (q keeps
    # gmm_components slots; the unused ones get zero weight).
    gmm_select: str = "fixed"


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
    # global | chained: where visit t's training starts. chained (from the model after visit t-1) is the
    # setting the FTA v2 sweep's rule chose on validation (experiments/fta2.toml; docs/results.md).
    visit_start: str = "chained"
    local_epochs: int = 2            # passes over each visit's exams (FedTAR) / over all exams (baselines)
    eval_beams: int = 1              # 1: greedy decoding at evaluation
    eval_meteor: bool = True         # METEOR needs Java (a few seconds per evaluation to start it)
    runtime_cache_mib: float = 256.0  # per process: loaded sites (model + data tensors) kept for later rounds


@dataclass
class MetaConfig:
    validation: str = "server"       # server | federated (sites send grad of their validation loss)
    recent_fraction: float = 1.0     # <1: validate on each site's most recent exams of its validation split
                                     # (the deployment target, ours); 1: the whole, mixed split (the paper's)


@dataclass
class FederationConfig:
    strategy: str = "fedtar"         # fedtar | fedavg | fedprox | fedadam | fedyogi | scaffold | drfa | local
                                     # (| centralized: simulation's pooled reference)
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
    robust: str = "none"             # none | median | trimmed-mean | multikrum: per record (visit) across sites
    trim_beta: float = 0.2           # trimmed-mean: share cut from each tail (Flower's FedTrimmedAvg beta)
    krum_byzantine: int = 0          # multikrum: sites assumed malicious (Flower's num_malicious_nodes)
    krum_keep: int = 1               # multikrum: states averaged (Flower's num_nodes_to_select; 1 = Krum)
    eval_every: int = 0              # >0: also evaluate the global every this many rounds (curves)
    eval_split: str = "test"         # the split evaluations score (validate: learning-rate searches)
    select_split: str = ""           # also score the final model here (validate: a sweep's model selection)
    transport_dtype: str = "float32"  # float32 | bfloat16: how sites upload states (the server aggregates in float32)


@dataclass
class TrackingConfig:
    # TensorBoard event files: a federation run's per round beside its checkpoints (OUT/tensorboard),
    # `fedtar pretrain`'s per epoch beside the base (BASE-tensorboard). Watch: tensorboard --logdir OUT
    tensorboard: bool = True


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
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

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
# `fedtar simulate` start from these (docs/explanation/method.md, "Defaults and where they
# differ from the paper"); --config / --set still override.
SYNTHETIC_PRESET: dict[str, Any] = {
    "train.lr": 1e-4,
    "policy.meta_lr": 1e-2,
}


# Named presets (`--preset NAME`, or `preset = "NAME"` at the top of a config file), applied over
# the defaults and the command's own preset, under the file's keys and --set.
# `paper`: the configuration of DESIGN.md as the paper states it (Zhu et al., CVPR 2026): per-layer
# hypernetwork heads, a 16-component GMM on [hash, age, sex], lr 1e-5 and meta lr 1e-4, e(t) alone
# as the policy's input, the recursion from the previous global, visits starting from the global,
# and no comparison modules (the report generator of the paper).
# The report generator before issue 19 (no comparison modules): the default until the FTA v2 sweep, and
# what a saved model without these keys was built with.
V1_GENERATOR: dict[str, Any] = {"model.compare": "none", "model.change_head": False, "model.change_loss": 0.0,
                                "model.change_teacher": False}
PAPER_PRESET: dict[str, Any] = {
    "lora.rank": 4, "lora.alpha": 128.0, "lora.hypernetwork": "per-layer",
    "train.lr": 1e-5, "policy.meta_lr": 1e-4, "policy.kind": "learned", "policy.features": (),
    "policy.keep_previous": True, "policy.meta_steps": 1,
    "demographics.gmm": True, "demographics.gmm_components": 16, "demographics.features": ("hash", "age", "sex"),
    "demographics.with_profile": False, "demographics.gmm_scope": "site", "demographics.gmm_select": "fixed",
    "client.visit_start": "global", "meta.validation": "server",
    **V1_GENERATOR,
}
PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER_PRESET}


def named_preset(name: str, where: str = "--preset") -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"{where} {name!r}: unknown preset (known: {', '.join(sorted(PRESETS))})")
    return PRESETS[name]


@dataclass(frozen=True)
class Rule:
    """What one config key allows: a range (numbers) or a set of choices (strings, or each item of a tuple)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False           # low itself not allowed (lr > 0)
    high_open: bool = False
    choices: tuple[str, ...] = ()
    prefix_ok: tuple[str, ...] = ()  # values starting with one of these pass too ("cuda:1")

    def allowed(self, kind: str = "a number") -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices) + (f" (or {', '.join(p + '...' for p in self.prefix_ok)})"
                                                         if self.prefix_ok else "")
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return f"{kind} " + " and ".join(parts)

    def ok(self, value: Any) -> bool:
        if isinstance(value, tuple):
            return all(self.ok(v) for v in value)
        if self.choices:
            return str(value) in self.choices or str(value).startswith(self.prefix_ok or ("\x00",))
        try:
            x = float(value)
        except (TypeError, ValueError):
            return False
        if x != x:  # NaN passes no range
            return False
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        return not (self.high is not None and (x > self.high or (self.high_open and x == self.high)))


def _at_least(n: float) -> Rule:
    return Rule(low=n)


_POSITIVE, _FRACTION = Rule(low=0, low_open=True), Rule(low=0, high=1)
# Every constrained key, next to the dataclasses above (and the sections other modules define:
# lora, policy, privacy). Choices mirror the code that reads them; tests/test_config_validation.py
# checks they agree (model.PRIOR_CHOICES, strategies.STRATEGIES, ct.HU_WINDOWS, ...).
RULES: dict[str, Rule] = {
    "data.image_size": _at_least(1), "data.section": Rule(choices=("findings", "impression", "both")),
    "data.max_tokens": _at_least(2), "data.min_word_frequency": _at_least(1), "data.max_unknown_rate": _FRACTION,
    "data.batch_size": _at_least(1), "data.volume_depth": _at_least(0),
    "data.hu_windows": Rule(choices=("lung", "mediastinal", "bone", "brain")), "data.voxel_spacing": _POSITIVE,
    "model.hidden_size": _at_least(1), "model.layers": _at_least(1), "model.heads": _at_least(1),
    "model.patch_size": _at_least(1), "model.image_channels": _at_least(1),
    "model.prior": Rule(choices=("none", "image", "report", "both")),
    "model.compare": Rule(choices=("none", "difference")), "model.change_loss": _at_least(0),
    "model.change_width": _at_least(1),
    "lora.rank": _at_least(1), "lora.alpha": _POSITIVE, "lora.hyper_dim": _at_least(1),
    "lora.dropout": Rule(low=0, high=1, high_open=True), "lora.hypernetwork": Rule(choices=HYPERNETWORKS),
    "federation.transport_dtype": Rule(choices=TRANSPORT_DTYPES),
    "demographics.gmm_components": _at_least(1),
    "demographics.gmm_scope": Rule(choices=("site", "federated")),
    "demographics.gmm_select": Rule(choices=("fixed", "bic")),
    "train.lr": _POSITIVE, "train.weight_decay": _at_least(0), "train.epochs": _at_least(1),
    "train.max_steps": _at_least(0), "train.base": Rule(choices=("frozen", "trainable")),
    "train.grad_clip": _at_least(0), "train.seed": _at_least(0),
    "train.device": Rule(choices=("auto", "cpu", "cuda", "mps"), prefix_ok=("cuda:",)),
    "client.visit_start": Rule(choices=("global", "chained")), "client.local_epochs": _at_least(1),
    "client.eval_beams": _at_least(1), "client.runtime_cache_mib": _at_least(0),
    "policy.kind": Rule(choices=("learned", "uniform")), "policy.embed_dim": _at_least(1),
    "policy.hidden": _at_least(1), "policy.features": Rule(choices=("gap", "recency")),
    "policy.max_visits": _at_least(1), "policy.meta_lr": _at_least(0), "policy.meta_steps": _at_least(1),
    "meta.validation": Rule(choices=("server", "federated")),
    "meta.recent_fraction": Rule(low=0, high=1, low_open=True),
    # centralized: the pooled upper reference of `fedtar simulate` and sweeps (not a federated strategy)
    "federation.strategy": Rule(choices=("fedtar", "fedavg", "fedprox", "fedadam", "fedyogi", "scaffold", "drfa",
                                         "local", "centralized")),
    "federation.rounds": _at_least(1), "federation.min_sites": _at_least(1), "federation.round_timeout": _POSITIVE,
    "federation.round_retries": _at_least(0), "federation.node_wait": _at_least(0),
    "federation.prox_mu": _at_least(0), "federation.server_lr": _POSITIVE,
    "federation.beta1": Rule(low=0, high=1, high_open=True), "federation.beta2": Rule(low=0, high=1, high_open=True),
    "federation.tau": _POSITIVE, "federation.drfa_lr": _at_least(0), "federation.norm_bound": _at_least(0),
    "federation.robust": Rule(choices=("none", "median", "trimmed-mean", "multikrum")),
    "federation.trim_beta": Rule(low=0, high=0.5, high_open=True), "federation.krum_byzantine": _at_least(0),
    "federation.krum_keep": _at_least(1),
    "federation.eval_every": _at_least(0), "federation.eval_split": Rule(choices=("train", "validate", "test")),
    "federation.select_split": Rule(choices=("", "train", "validate", "test")),
    "privacy.clip": _at_least(0), "privacy.noise_multiplier": _at_least(0),
    "privacy.delta": Rule(low=0, high=1, low_open=True, high_open=True),
}


def config_problems(cfg: FedTARConfig, num_sites: int | None = None) -> list[str]:
    """Every value outside its rule, then the rules between keys; each names the key, the value and
    what is allowed. `num_sites`: the federation's size where the caller knows it."""
    flat, defaults = cfg.to_flat(), FedTARConfig().to_flat()
    problems = [f"config key {key}: {flat[key]!r} is not allowed "
                f"(want {rule.allowed('an integer' if type(defaults[key]) is int else 'a number')})"
                for key, rule in RULES.items()
                if not rule.ok(tuple(flat[key]) if isinstance(flat[key], list) else flat[key])]
    if cfg.model.hidden_size % max(cfg.model.heads, 1):
        problems.append(f"config keys model.hidden_size={cfg.model.hidden_size} and model.heads={cfg.model.heads}: "
                        "the hidden size must be a multiple of the number of heads")
    if cfg.privacy.noise_multiplier > 0 and cfg.privacy.clip <= 0:
        problems.append(f"config key privacy.noise_multiplier={cfg.privacy.noise_multiplier:g} needs "
                        "privacy.clip > 0 (noise is scaled by the clip bound; 0 turns DP off)")
    if cfg.privacy.clip > 0 and cfg.federation.transport_dtype != "float32":
        problems.append(f"config key federation.transport_dtype={cfg.federation.transport_dtype!r} with "
                        "privacy.clip > 0: rounding a state moves its update by up to 2^-8 of the state's norm, "
                        "outside the clip bound (want federation.transport_dtype = float32 under DP)")
    if num_sites is not None and cfg.federation.min_sites > num_sites:
        problems.append(f"config key federation.min_sites={cfg.federation.min_sites} but the federation has "
                        f"{num_sites} site(s) (want federation.min_sites <= {num_sites})")
    return problems


def validate_config(cfg: FedTARConfig, num_sites: int | None = None) -> FedTARConfig:
    """Raise one ValueError listing every problem (before any work starts); returns cfg."""
    problems = config_problems(cfg, num_sites)
    if problems:
        raise ValueError("; ".join(problems))
    return cfg


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


def apply_overrides(cfg: FedTARConfig, flat: Mapping[str, Any], validate: bool = True) -> FedTARConfig:
    """Set dotted keys on a copy of cfg; unknown keys are an error, not a silent no-op, and the
    result is validated (validate_config) unless the caller validates once at the end."""
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
    return validate_config(cfg) if validate else cfg


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a tree; a UTF-8 byte-order mark (Notepad, Excel) is skipped, not a syntax error."""
    return tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                preset: Mapping[str, Any] | None = None, named: str | None = None) -> FedTARConfig:
    """Defaults, then the command's preset (if any), then a named preset (`named`, or the file's
    top-level `preset = "NAME"`), then the TOML file (if any), then the overrides."""
    cfg = apply_overrides(FedTARConfig(), preset or {}, validate=False)
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            tree = dict(read_toml(path))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{path}: cannot read config: {e}") from e
        file_preset = tree.pop("preset", None)
        if file_preset is not None and named is not None and file_preset != named:
            raise ValueError(f"{path}: preset = {file_preset!r} but --preset {named!r}: name one")
        if file_preset is not None:
            named_preset(str(file_preset), f"{path}: preset")  # an unknown name is refused naming the file
            named = str(file_preset)
    if named is not None:
        cfg = apply_overrides(cfg, named_preset(named), validate=False)
    if path is not None:
        try:
            cfg = validate_config(apply_overrides(cfg, _flatten(tree), validate=False))
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
        tree = read_toml(path)
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
