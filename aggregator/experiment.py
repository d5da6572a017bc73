"""`fedtar experiment compare`: every method and ablation over seeds, as tables and plots.

One TOML file describes the sweep (experiments/synthetic.toml, experiments/fta.toml,
experiments/mimic_cxr.toml):

    [experiment]   out, seeds, methods, rounds, engine, loso_methods, data, base, synthetic size,
                   lr_grid (a learning-rate search per method)
    [synthetic]    SyntheticConfig fields for the generated federation (e.g. the FTA conditions)
    [ablations]    name = {strategy = "fedtar", "policy.kind" = "uniform", ...}
    [config]       FedTAR config keys for every run (e.g. "federation.eval_every" = 1)

With `lr_grid`, every method first runs once per learning rate (seed `lr_seed`,
`lr_rounds` rounds) scored on the sites' validation split; the rate with the best
`lr_metric` is then used for all its seeds. Ablations are FedTAR variants and use
FedTAR's rate. No method is tuned more than another.

Each (setting, seed) is one federated run under OUT/runs/...; a run whose
results.json says completed is reused, so an interrupted sweep continues where it
stopped. Writes OUT/results.md (comparison, per-visit and leave-one-site-out
tables, mean ± std over seeds, with the machine and date), OUT/summary.json and
OUT/plots/*.png (CIDEr against rounds when federation.eval_every > 0, metrics against visit index, alpha per
visit against rounds).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator.simulation import (
    RunSummary,
    SimulationPlan,
    Variant,
    comparison_table,
    finished_run,
    per_visit_table,
    run_simulations,
)
from data_adapters.synthetic import SyntheticConfig
from fedtar.config import apply_overrides, load_config, load_dataclass_toml, named_preset, read_toml
from fedtar.operations.tables import format_table
from fedtar.scoring.evaluation import REPORT_COLUMNS

log = logging.getLogger(__name__)
SWEEP_CHOSEN = ("train.lr", "policy.meta_lr")  # a sweep sets these for every setting ([config], the search)
PLOT_METRICS = ("cider", "ce_f1", "cmp_acc")
HIGHER_IS_BETTER = set(REPORT_COLUMNS)


@dataclass
class ExperimentConfig:
    out: str = "runs/experiments/synthetic"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: ["fedtar", "fedavg"])
    rounds: int = 3
    engine: str = "inprocess"          # inprocess (sequential, lighter on 2 cores) | ray
    loso_methods: list[str] = field(default_factory=list)  # methods for the leave-one-site-out table
    loso_seeds: list[int] = field(default_factory=list)    # seeds for it (default: seeds)
    data: str = ""                     # prepared manifests (e.g. MIMIC-CXR) instead of the synthetic federation
    base: str = ""                     # a pretrained base; default OUT/base from the synthetic public pool
    pretrain_epochs: int = 0           # 0: fedtar.learning.pretrain.DEFAULT_PRETRAIN_EPOCHS
    sites: int = 4                     # synthetic federation size
    patients: int = 40
    visits: int = 5
    lr_grid: list[float] = field(default_factory=list)  # train.lr values searched per method (empty: none)
    lr_metric: str = "cider"           # chosen by this metric on the validation split
    lr_seed: int = 0
    lr_rounds: int = 0                 # rounds of a search run (0: rounds)
    # Model selection among FedTAR's settings (fedtar and the ablations): every main run is also scored
    # on the validation split, and the setting with the best mean `select_metric` there is named in the
    # report ("" = off). Test numbers never choose anything.
    select_metric: str = ""
    # The learnability ceiling of cmp_acc (fedtar.scoring.change_probe): a CNN trained centrally on the change
    # labels of the training split, read at data.image_size, scored on the test split.
    ceiling: bool = False


@dataclass
class Sweep:
    experiment: ExperimentConfig
    ablations: list[Variant]
    config: dict[str, Any]
    source: Path
    synthetic: dict[str, Any] = field(default_factory=dict)

    def synthetic_config(self) -> SyntheticConfig:
        e = self.experiment
        return SyntheticConfig(**{"sites": e.sites, "patients": e.patients, "visits": e.visits, **self.synthetic})

    def pretraining_pool(self) -> SyntheticConfig | None:
        """The public pool of the base: with FTA conditions on, a pool drawn under the same
        conditions (its own sites), so the base's vocabulary knows every site's templates."""
        synth = self.synthetic_config()
        if not (synth.fta or synth.demographic_signal):
            return None
        from fedtar.learning.pretrain import public_pool_config

        return dataclasses.replace(public_pool_config(), timeline_spread=synth.timeline_spread,
                                   drift_events=synth.drift_events, demographic_signal=synth.demographic_signal,
                                   image_size=synth.image_size)


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> Sweep:
    path = Path(path)
    experiment = load_dataclass_toml(path, "experiment", ExperimentConfig)
    tree = read_toml(path)
    ablations = []
    for name, table in tree.get("ablations", {}).items():
        table = dict(table)
        if "preset" in table:  # a named preset's keys, less the learning rates the sweep chooses for all
            preset = named_preset(str(table.pop("preset")), f"{path}: [ablations] {name}: preset")
            table = {**{k: v for k, v in preset.items() if k not in SWEEP_CHOSEN}, **table}
        ablations.append(Variant(name, str(table.pop("strategy", "fedtar")), table))
    config = {**tree.get("config", {}), **(overrides or {})}
    load_config(overrides=config)  # fail early on a bad key
    for variant in ablations:
        apply_overrides(load_config(), variant.overrides)
    synthetic = dict(tree.get("synthetic", {}))
    known = {f.name for f in dataclasses.fields(SyntheticConfig)}
    if unknown := sorted(set(synthetic) - known):
        raise ValueError(f"{path}: unknown key(s) in [synthetic]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if experiment.select_metric and experiment.select_metric not in REPORT_COLUMNS:
        raise ValueError(f"{path}: select_metric {experiment.select_metric!r} is not a metric (one of "
                         f"{', '.join(REPORT_COLUMNS)})")
    sweep = Sweep(experiment, ablations, config, path, synthetic)
    sweep.synthetic_config()  # fail early on a bad value
    return sweep


@dataclass(frozen=True)
class Part:
    """`--part K/N`: this process runs every N-th run of the sweep, starting with the K-th (1-based),
    so N processes share a sweep without copying folders. Runs of other parts are read when
    finished; the learning-rate choice waits for the other parts' search runs up to `wait_s`."""

    k: int = 1
    n: int = 1
    wait_s: float = 6 * 3600.0
    poll_s: float = 10.0

    @classmethod
    def parse(cls, text: str, wait_s: float = 6 * 3600.0) -> Part:
        try:
            k, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise ValueError(f"--part {text!r}: expected K/N, e.g. 1/2") from None
        if not 1 <= k <= n:
            raise ValueError(f"--part {text!r}: K must be between 1 and N")
        return cls(k, n, wait_s)

    def owns(self, job: int) -> bool:
        return job % self.n == self.k - 1


def run_sweep(sweep: Sweep, out: str | Path | None = None, progress: bool = True, part: Part = Part()) -> Path:
    """Run (or reuse) every run of the sweep (of this part), then write the tables and plots once
    every run is finished. Returns OUT."""
    from tqdm import tqdm

    e = sweep.experiment
    out = Path(out or e.out)
    out.mkdir(parents=True, exist_ok=True)
    select = {"federation.select_split": "validate"} if e.select_metric else {}  # FedTAR's main runs only
    cfg = load_config(overrides={**sweep.config, "federation.rounds": e.rounds}, preset=None)
    synth, pool = sweep.synthetic_config(), sweep.pretraining_pool()
    search = lr_search_jobs(e)
    n_sites = e.sites if not e.data else len(_manifests(e.data))
    n_main = (len(e.methods) + len(sweep.ablations)) * len(e.seeds) \
        + n_sites * len(e.loso_methods) * len(e.loso_seeds or e.seeds)
    bar = tqdm(total=len(search) + n_main, desc="runs", unit="run", disable=not progress, file=sys.stderr)
    inputs = dict(synth=synth, base_dir=e.base or None, data=e.data or None, pool=pool)
    with waiting_lock(out / "prepare.lock", part.wait_s):  # the federation and the base, made once for all parts
        run_simulations(out, cfg, SimulationPlan(strategies=[], variants=[], seeds=[],
                                                 pretrain_epochs=e.pretrain_epochs or None), **inputs)
        ceiling = measure_sweep_ceiling(out, cfg, Path(e.base) if e.base else out / "base",
                                        e.data or str(out / "federation")) if e.ceiling else None
    missing: list[str] = []
    numbered = 0  # every process numbers the sweep's runs alike: search, main, held-out, in this order

    def phase(jobs: list[tuple[Variant, int, int | None]], wait: bool) -> list[list[RunSummary]]:
        """This part's runs of a phase first, then the other parts' (waited for, up to part.wait_s, when the
        next phase depends on them; else read if finished)."""
        nonlocal numbered
        mine = {i for i in range(len(jobs)) if part.owns(numbered + i)}
        numbered += len(jobs)
        results: list[list[RunSummary]] = [[] for _ in jobs]
        for i in sorted(mine):
            variant, seed, holdout = jobs[i]
            bar.set_postfix_str(_job_name(variant, seed, holdout))
            plan = SimulationPlan(strategies=[], variants=[variant], seeds=[seed], holdout_site=holdout,
                                  engine=e.engine, skip_done=True, pretrain_epochs=e.pretrain_epochs or None)
            results[i] = run_simulations(out, cfg, plan, **inputs)
            bar.update(1)
        for i in (i for i in range(len(jobs)) if i not in mine):
            variant, seed, holdout = jobs[i]
            done = _await_run(out, variant, seed, holdout, part if wait else None)
            bar.update(1)
            if done is None:
                missing.append(_job_name(variant, seed, holdout))
            else:
                results[i] = [done]
        return results

    search_jobs = [(v, e.lr_seed, None) for v in search]
    searched = [(v, s) for (v, _, _), done in zip(search_jobs, phase(search_jobs, wait=True)) for s in done]
    chosen = choose_learning_rates(searched, e.lr_metric)
    lr_of = {m: {"train.lr": chosen[m]} for m in chosen}
    settings = [Variant(m, m, {**lr_of.get(m, {}), **(select if m == "fedtar" else {})}) for m in e.methods]
    settings += [Variant(a.name, a.strategy, {**lr_of.get(a.strategy, {}), **(select if a.strategy == "fedtar" else {}),
                                              **a.overrides}) for a in sweep.ablations]
    main = [s for done in phase([(v, seed, None) for v in settings for seed in e.seeds], wait=False) for s in done]
    # Held-out runs are scored once at the end, on the held-out site (no per-round curves).
    loso_jobs = [(Variant(m, m, {**lr_of.get(m, {}), "federation.eval_every": 0}), seed, k)
                 for k in range(n_sites) for m in e.loso_methods for seed in e.loso_seeds or e.seeds]
    loso: dict[int, list[RunSummary]] = {}
    for (_, _, k), done in zip(loso_jobs, phase(loso_jobs, wait=False)):
        loso.setdefault(k, []).extend(done)
    bar.close()
    if missing:
        log.warning("part %d/%d finished its runs; %d run(s) of other parts are not finished yet (%s): the "
                    "tables are written by the part that finishes last, or by the same command without --part",
                    part.k, part.n, len(missing), ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else ""))
        return out
    with waiting_lock(out / "report.lock", part.wait_s):  # two parts ending together write one after the other
        start = measure_start(out, apply_overrides(cfg, select),
                              Path(e.base) if e.base else out / "base", e.data or str(out / "federation"))
        write_report(out, sweep, main, loso, searched, chosen, ceiling, start)
    return out


def _job_name(variant: Variant, seed: int, holdout: int | None) -> str:
    return f"{variant.name} seed {seed}" + (f" holdout {holdout}" if holdout is not None else "")


def measure_sweep_ceiling(out: Path, cfg: Any, base_dir: Path, data: str) -> dict[str, Any]:
    """The change probe's ceiling on the sweep's federation (cached in OUT/ceiling.json for the same data,
    reading size and seed)."""
    cache = out / "ceiling.json"
    key = {"data": str(Path(data).resolve()), "image_size": cfg.data.image_size, "seed": cfg.train.seed}
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.pop("key", None) == key:
            return cached
    from fedtar.data.exams import concat_exams
    from fedtar.data.site import load_site
    from fedtar.data.tokenizer import ReportTokenizer
    from fedtar.scoring.change_probe import measure_ceiling, train_probe

    tokenizer = ReportTokenizer.load(base_dir)
    sites = [load_site(m, tokenizer, cfg) for m in _manifests(data)]
    probe = train_probe(concat_exams([s.split("train") for s in sites]), seed=cfg.train.seed)
    found = dataclasses.asdict(measure_ceiling(probe, concat_exams([s.split("test") for s in sites])))
    cache.write_text(json.dumps({**found, "key": key}, indent=1))
    log.info("cmp_acc ceiling (change probe): %.3f overall", found["overall"])
    return found


def measure_start(out: Path, cfg: Any, base_dir: Path, data: str) -> dict[str, dict[str, float]]:
    """Where every setting starts: the base with fresh adapters (no federated round), scored on the test
    split (and on federation.select_split when set); cached in OUT/start.json for the same base and data."""
    cache = out / "start.json"
    base_file = base_dir / "model.safetensors"
    key = {"data": str(Path(data).resolve()), "base": str(base_dir.resolve()),
           "base_mtime": base_file.stat().st_mtime if base_file.is_file() else None,
           "splits": [cfg.federation.eval_split, cfg.federation.select_split]}
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.pop("key", None) == key:
            return cached
    import torch

    from fedtar.data.site import load_site
    from fedtar.generator.model import adapt_model, load_model
    from fedtar.scoring.evaluation import evaluate_model, flat_metrics

    base, tokenizer = load_model(base_dir)
    torch.manual_seed(cfg.train.seed)
    model = adapt_model(base, cfg)
    sites = [load_site(m, tokenizer, cfg) for m in _manifests(data)]
    found = {}
    for split in dict.fromkeys(x for x in (cfg.federation.eval_split, cfg.federation.select_split) if x):
        found[split] = flat_metrics(evaluate_model(model, [s.split(split) for s in sites], tokenizer,
                                                   num_beams=cfg.client.eval_beams, with_meteor=cfg.client.eval_meteor))
    cache.write_text(json.dumps({**found, "key": key}, indent=1, default=float))
    log.info("the start (base, no federated round): CIDEr %.3f on %s", found[cfg.federation.eval_split]["cider"],
             cfg.federation.eval_split)
    return found


def start_table(start: dict[str, float]) -> str:
    return format_table(["", *REPORT_COLUMNS], [["base, no federated round", *(
        "n/a" if math.isnan(float(start.get(c, math.nan))) else f"{float(start[c]):.3f}" for c in REPORT_COLUMNS)]],
        markdown=True)


def ceiling_table(ceiling: dict[str, Any], main: list[RunSummary]) -> str:
    """The probe's accuracy beside each setting's cmp_acc (the generators' share of what can be seen)."""
    rows = [["change probe (ceiling)", ceiling["overall"]]]
    for name in dict.fromkeys(s.strategy for s in main):
        values = [s.metrics["cmp_acc"] for s in main if s.strategy == name and "cmp_acc" in s.metrics]
        if values:
            rows.append([name, statistics.fmean(values)])
    per_obs = [[o, acc, ceiling["statements"][o]] for o, acc in ceiling["per_observation"].items()]
    return (format_table(["", "cmp_acc"], rows, markdown=True) + "\n\nThe probe per observation (test pairs whose "
            f"reference states a change; majority class {ceiling['chance']:.3f}):\n\n"
            + format_table(["observation", "probe accuracy", "statements"], per_obs, markdown=True))


def _await_run(out: Path, variant: Variant, seed: int, holdout: int | None, part: Part | None) -> RunSummary | None:
    """Another part's run: its summary once finished; with `part`, wait for it (bounded by part.wait_s)."""
    deadline = time.monotonic() + (part.wait_s if part else 0.0)
    announced = False
    while (done := finished_run(out, variant, seed, holdout, final_only=False)) is None:
        if part is None or time.monotonic() >= deadline:
            if part is not None:
                raise TimeoutError(f"part {part.k}/{part.n}: {variant.name} seed {seed} (another part's run) did not "
                                   f"finish within {part.wait_s:.0f} s; is that part running?")
            return None
        if not announced:
            log.info("part %d/%d: waiting for %s seed %d (another part's run)", part.k, part.n, variant.name, seed)
            announced = True
        time.sleep(part.poll_s)
    return done


@contextmanager
def waiting_lock(path: Path, timeout_s: float, poll_s: float = 2.0) -> Iterator[None]:
    """An exclusive lock on `path` (fcntl), waited for up to `timeout_s`; released by the OS if we die."""
    import fcntl

    deadline = time.monotonic() + timeout_s
    with open(path, "a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path}: held by another process for over {timeout_s:.0f} s") from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def lr_search_jobs(e: ExperimentConfig) -> list[Variant]:
    """One run per method and learning rate, scored on the validation split."""
    rounds = {"federation.rounds": e.lr_rounds} if e.lr_rounds else {}
    return [Variant(f"{m}-lr{lr:g}", m, {"train.lr": lr, "federation.eval_split": "validate",
                                          "federation.eval_every": 0, **rounds})
            for m in e.methods for lr in e.lr_grid]


def choose_learning_rates(searched: list[tuple[Variant, RunSummary]], metric: str) -> dict[str, float]:
    """Per method, the searched rate with the best validation `metric` (ties: the smaller rate)."""
    best: dict[str, tuple[float, float]] = {}
    for variant, summary in searched:
        score = float(summary.metrics.get(metric, math.nan))
        lr = float(variant.overrides["train.lr"])
        if math.isnan(score):
            continue
        current = best.get(variant.strategy)
        if current is None or score > current[0] or (score == current[0] and lr < current[1]):
            best[variant.strategy] = (score, lr)
    return {m: lr for m, (_, lr) in best.items()}


def lr_search_table(searched: list[tuple[Variant, RunSummary]], chosen: dict[str, float], metric: str) -> str:
    rates = sorted({float(v.overrides["train.lr"]) for v, _ in searched})
    rows = []
    for m in dict.fromkeys(v.strategy for v, _ in searched):
        scores = {float(v.overrides["train.lr"]): float(s.metrics.get(metric, math.nan))
                  for v, s in searched if v.strategy == m}
        rows.append([m, *(f"{scores.get(r, math.nan):.3f}{' *' if chosen.get(m) == r else ''}" for r in rates)])
    return format_table(["method", *(f"lr {r:g}" for r in rates)], rows, markdown=True)


def _manifests(data: str) -> list[Path]:
    from data_adapters.records import find_manifests

    return find_manifests(data)


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else float("nan")


def loso_table(loso: dict[int, list[RunSummary]], metric: str) -> str:
    sites = sorted(loso)
    methods = list(dict.fromkeys(s.strategy for runs in loso.values() for s in runs))
    rows = []
    for m in methods:
        per_site = [_mean([float(s.metrics.get(metric, math.nan)) for s in loso[k] if s.strategy == m])
                    for k in sites]
        rows.append([m, *per_site, _mean(per_site)])
    return format_table(["method", *(f"site {k + 1} held out" for k in sites), "mean"], rows, markdown=True)


def honest_summary(main: list[RunSummary], reference: str = "fedtar") -> list[str]:
    """Per metric: the best setting and where the reference is behind (mean over seeds)."""
    names = list(dict.fromkeys(s.strategy for s in main))
    if reference not in names:
        return []
    means = {n: {c: _mean([float(s.metrics.get(c, math.nan)) for s in main if s.strategy == n])
                 for c in REPORT_COLUMNS} for n in names}
    lines = []
    for c in REPORT_COLUMNS:
        ranked = sorted((n for n in names if not math.isnan(means[n][c])), key=lambda n: -means[n][c])
        if not ranked or math.isnan(means[reference][c]):
            continue
        ref = means[reference][c]
        tied = [n for n in ranked if n != reference and abs(means[n][c] - ref) < 5e-4]
        ahead = [n for n in ranked if means[n][c] >= ref + 5e-4]
        if ahead:
            best = ranked[0]
            lines.append(f"- {c}: {reference} {ref:.3f} is behind {', '.join(ahead)} (best: {best} "
                         f"{means[best][c]:.3f}).")
        elif tied:
            lines.append(f"- {c}: {reference} {ref:.3f} is level with {', '.join(tied)} (within 0.0005).")
        else:
            runner = next((n for n in ranked if n != reference), None)
            tail = f" (next: {runner} {means[runner][c]:.3f})" if runner else ""
            lines.append(f"- {c}: {reference} is best with {ref:.3f}{tail}.")
    return lines


def _machine() -> str:
    import torch

    return (f"{platform.node() or 'host'}: {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")


def write_report(out: Path, sweep: Sweep, main: list[RunSummary], loso: dict[int, list[RunSummary]],
                 searched: list[tuple[Variant, RunSummary]] | None = None,
                 chosen: dict[str, float] | None = None, ceiling: dict[str, Any] | None = None,
                 start: dict[str, dict[str, float]] | None = None) -> Path:
    e = sweep.experiment
    plots = write_plots(out / "plots", main)
    data = e.data or f"synthetic {e.sites} sites x {e.patients} patients x {e.visits} visits"
    if sweep.synthetic:
        data += " (" + ", ".join(f"{k} = {v}" for k, v in sweep.synthetic.items()) + ")"
    lines = [f"# Comparison: {sweep.source.name}", "",
             f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {_machine()}.", "",
             f"Command: `fedtar experiment compare --config {sweep.source}`; {e.rounds} round(s), seed(s) "
             f"{', '.join(map(str, e.seeds))}, data: {data}. "
             "Every setting uses the same model, base, local epochs and rounds.", "",
             "## Final global model on the sites' test patients (mean ± std over seeds)", "",
             comparison_table(main, markdown=True), ""]
    if start:
        split = next(iter(start))
        lines += [f"Where every setting starts (the base and fresh adapters, scored on the same {split} exams; "
                  "a setting below it lost ground in its rounds):", "", start_table(start[split]), ""]
        above = [n for n in dict.fromkeys(s.strategy for s in main)
                 if _mean([float(s.metrics.get("cider", math.nan)) for s in main if s.strategy == n])
                 > float(start[split].get("cider", math.nan))]
        lines += [f"Settings whose mean CIDEr is above the start: {', '.join(above) if above else 'none'}.", ""]
    if ceiling:
        lines += ["## What can be seen: the cmp_acc ceiling (fedtar.scoring.change_probe)", "", ceiling_table(ceiling, main), ""]
    summary = honest_summary(main)
    if summary:
        lines += ["Where FedTAR stands, metric by metric:", "", *summary, ""]
    selected = None
    if e.select_metric:
        fedtar_settings = ["fedtar", *(a.name for a in sweep.ablations if a.strategy == "fedtar")]
        selected, table = select_setting(main, fedtar_settings, e.select_metric)
        lines += [f"## Model selection: FedTAR settings by validation {e.select_metric} (mean ± std over seeds)", "",
                  f"The rule, fixed in the sweep file before any result: the best mean validation "
                  f"{e.select_metric}. Selected: **{selected}**.", "", table, ""]
    if searched:
        lines += [f"## Learning-rate search: validation {e.lr_metric} (seed {e.lr_seed}; * = chosen)", "",
                  "Ablations use FedTAR's rate.", "", lr_search_table(searched, chosen or {}, e.lr_metric), ""]
    for metric in PLOT_METRICS:
        lines += [f"## {metric} per visit index (mean over seeds)", "", per_visit_table(main, metric, markdown=True),
                  ""]
    if any(k.startswith("cider-year-") for s in main for k in s.metrics):
        for metric in PLOT_METRICS:
            lines += [f"## {metric} per study year of the test exams (mean over seeds)", "",
                      per_visit_table(main, metric, markdown=True, group="year"), ""]
    if loso:
        for metric in ("cider", "ce_f1"):
            lines += [f"## Cross-site generalization: {metric} on a held-out site (trained on the others)", "",
                      loso_table(loso, metric), ""]
    lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    report = out / "results.md"
    report.write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps({
        "learning_rates": chosen or {},
        **({"selected": selected} if selected else {}),
        **({"ceiling": ceiling} if ceiling else {}),
        **({"start": start} if start else {}),
        "main": [{"setting": s.strategy, "seed": s.seed, "status": s.status, "metrics": s.metrics,
                  **({"validation": s.select_metrics} if s.select_metrics else {})} for s in main],
        "loso": {str(k): [{"setting": s.strategy, "seed": s.seed, "metrics": s.metrics} for s in v]
                 for k, v in loso.items()},
    }, indent=1, default=float))
    log.info("wrote %s", report)
    return report


def select_setting(main: list[RunSummary], settings: list[str], metric: str) -> tuple[str, str]:
    """(the setting with the best mean validation `metric`, a markdown table of all of them)."""
    scores = {name: [s.select_metrics[metric] for s in main if s.strategy == name and metric in s.select_metrics]
              for name in settings}
    scores = {k: v for k, v in scores.items() if v}
    if not scores:
        raise ValueError(f"no run was scored on the validation split ({metric}): cannot select")
    best = max(scores, key=lambda k: statistics.fmean(scores[k]))
    rows = [[k, f"{statistics.fmean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.3f}", str(len(v))]
            for k, v in sorted(scores.items(), key=lambda kv: -statistics.fmean(kv[1]))]
    return best, format_table(["setting", f"validation {metric}", "seeds"], rows, markdown=True)


def write_plots(folder: Path, main: list[RunSummary]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(s.strategy for s in main))
    written = []
    # One colour per setting (more than the default ten), ablations dashed.
    plt.rcParams["axes.prop_cycle"] = matplotlib.cycler(color=plt.get_cmap("tab20").colors[::2]
                                                        + plt.get_cmap("tab20").colors[1::2])
    style = {n: ("--" if n.startswith("fedtar-") else "-") for n in names}

    if any("cider" in h.get("eval", {}) for s in main for h in s.history):  # federation.eval_every > 0
        fig, ax = plt.subplots(figsize=(6, 4))
        for n in names:
            curves = [[h.get("eval", {}).get("cider", math.nan) for h in s.history] for s in main if s.strategy == n]
            if curves and curves[0]:
                rounds = range(1, len(curves[0]) + 1)
                ax.plot(list(rounds), [_mean([c[i] for c in curves if i < len(c)]) for i in range(len(curves[0]))],
                        marker="o", label=n, linestyle=style[n])
        ax.set(xlabel="round", ylabel="CIDEr (test patients)", title="CIDEr against rounds")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
        written.append(_save(fig, folder / "cider_vs_rounds.png"))

    fig, axes = plt.subplots(1, len(PLOT_METRICS), figsize=(4 * len(PLOT_METRICS), 3.5))
    for ax, metric in zip(axes, PLOT_METRICS):
        prefix = f"{metric}-visit-"
        visits = sorted({int(k[len(prefix):]) for s in main for k in s.metrics if k.startswith(prefix)})
        for n in names:
            ax.plot(visits, [_mean([float(s.metrics.get(f"{prefix}{t}", math.nan)) for s in main if s.strategy == n])
                             for t in visits], marker="o", label=n, linestyle=style[n])
        ax.set(xlabel="visit index", title=metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=7)
    written.append(_save(fig, folder / "metrics_vs_visit.png"))

    with_alpha = [n for n in names if any(s.history and "alpha" in s.history[0] for s in main if s.strategy == n)]
    fig, axes = plt.subplots(1, max(1, len(with_alpha)), figsize=(3.2 * max(1, len(with_alpha)), 3.2),
                             squeeze=False, sharey=True)
    for ax, n in zip(axes[0], with_alpha):
        runs = [s for s in main if s.strategy == n and s.history and "alpha" in s.history[0]]
        visits = runs[0].history[0].get("visits", list(range(1, len(runs[0].history[0]["alpha"]) + 1)))
        for j, t in enumerate(visits):
            series = [_mean([s.history[r]["alpha"][j] for s in runs if r < len(s.history)])
                      for r in range(len(runs[0].history))]
            ax.plot(range(1, len(series) + 1), series, marker="o", label=f"visit {t}")
        ax.set(xlabel="round", title=n)
        ax.title.set_fontsize(8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].set_ylabel("alpha")
    if axes[0][0].get_legend_handles_labels()[0]:  # no FedTAR setting: nothing to label
        axes[0][0].legend(fontsize=7)
    fig.suptitle("Learned alpha per visit, per setting (mean over seeds)", fontsize=9)
    written.append(_save(fig, folder / "alpha_vs_rounds.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
