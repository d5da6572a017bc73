"""The `fedtar` command: parse arguments, then call the library."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

# Parsing stays import-free (fast --help): the library holds the default.
PRETRAIN_EPOCHS_HELP = "pretraining epochs of the base (default: fedtar.pretrain.DEFAULT_PRETRAIN_EPOCHS)"


def _synth(args: argparse.Namespace) -> int:
    from data_adapters.summary import summary_text
    from data_adapters.synthetic import SyntheticConfig, generate_federation

    cfg = SyntheticConfig(sites=args.sites, patients=args.patients, visits=args.visits, seed=args.seed,
                          image_size=args.image_size)
    manifests = generate_federation(args.out, cfg)
    print(f"Wrote {len(manifests)} site manifests under {Path(args.out).resolve()}")
    print(summary_text(manifests))
    return 0


def _config(args: argparse.Namespace, synthetic: bool = False):
    from fedtar.config import SYNTHETIC_PRESET, load_config, parse_set_args

    return load_config(args.config, parse_set_args(args.set), SYNTHETIC_PRESET if synthetic else None)


def _pretrain(args: argparse.Namespace) -> int:
    from fedtar.pretrain import pretrain_base

    folder = pretrain_base(args.out, _config(args, synthetic=True), epochs=args.epochs)
    print(f"Pretrained base in {folder}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from data_adapters.synthetic import SyntheticConfig
    from fedtar.demo import by_visit_table, metrics_table, run_demo

    cfg = _config(args, synthetic=True)
    synth = SyntheticConfig(sites=args.sites, patients=args.patients, visits=args.visits)
    result = run_demo(args.out, cfg, epochs=args.epochs, pretrain_epochs=args.pretrain_epochs, synth=synth,
                      base_dir=args.base)
    print("\nHeld-out patients (test split of every site), greedy decoding:")
    print(metrics_table([("pretrained base, adapters untrained", result.before),
                         ("patient-adaptive LoRA, central", result.after)]))
    print("\nPer visit index (adapted model):")
    print(by_visit_table(result.after))
    s = result.sizes
    print(f"\nTravelling set: {int(s['travelling_params']):,} of {int(s['total_params']):,} parameters "
          f"({100 * s['share']:.1f}%), {s['travelling_bytes'] / 2**20:.2f} MiB per state. "
          f"Took {result.seconds:.0f} s.\nAdapted model saved in {result.model_dir}.")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from aggregator.simulation import (
        SimulationPlan,
        comparison_table,
        per_site_table,
        per_visit_table,
        run_simulations,
    )
    from data_adapters.synthetic import SyntheticConfig
    from fedtar.config import apply_overrides

    overrides = {"federation.rounds": args.rounds} if args.rounds else {}
    cfg = apply_overrides(_config(args, synthetic=True), overrides)
    plan = SimulationPlan(strategies=args.strategies.split(","), seeds=[int(s) for s in args.seeds.split(",")],
                          holdout_site=args.holdout_site, engine=args.engine, pretrain_epochs=args.pretrain_epochs,
                          resume=args.resume)
    synth = SyntheticConfig(sites=args.sites, patients=args.patients, visits=args.visits)
    summaries = run_simulations(args.out, cfg, plan, synth, base_dir=args.base)
    where = f"held-out site {args.holdout_site}" if args.holdout_site is not None else "test patients of every site"
    print(f"\nFinal global model on {where} (mean ± std over seeds {args.seeds}):")
    print(comparison_table(summaries))
    for metric in ("cider", "ce_f1", "cmp_acc"):
        print(f"\n{metric} per visit index (mean over seeds):")
        print(per_visit_table(summaries, metric))
    if args.holdout_site is None and any(s.strategy != "centralized" for s in summaries):
        print("\nPer site (first seed):")
        print(per_site_table([s for s in summaries if s.strategy != "centralized"]))
    failed = [s for s in summaries if s.status != "completed"]
    for s in failed:
        print(f"run {s.strategy} seed {s.seed} did not complete; see {s.out_dir / 'results.json'}")
    return 1 if failed else 0


def _add_federation_size_args(p: argparse.ArgumentParser) -> None:
    """Size of the synthetic federation written under OUT (when OUT has none yet)."""
    p.add_argument("--sites", type=int, default=4)
    p.add_argument("--patients", type=int, default=40, help="patients per site")
    p.add_argument("--visits", type=int, default=5, help="exams per patient")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (dotted sections as in fedtar/config.py)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedtar", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write the synthetic longitudinal federation and print its summary")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sites", type=int, default=4)
    p.add_argument("--patients", type=int, default=40, help="patients per site")
    p.add_argument("--visits", type=int, default=5, help="exams per patient")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128)
    p.set_defaults(func=_synth)

    p = sub.add_parser("pretrain", help="train the small base on the synthetic public pool (cached)")
    p.add_argument("--out", default="runs/base", help="folder for the base (reused when it matches)")
    p.add_argument("--epochs", type=int, help=PRETRAIN_EPOCHS_HELP)
    _add_config_args(p)
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("demo", help="central patient-adaptive training on the synthetic federation, with metrics")
    p.add_argument("--out", default="runs/demo", help="working folder (federation, base, outputs)")
    p.add_argument("--base", help="pretrained base folder (default: OUT/base, created if needed)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--pretrain-epochs", type=int, help=PRETRAIN_EPOCHS_HELP)
    _add_federation_size_args(p)
    _add_config_args(p)
    p.set_defaults(func=_demo)

    p = sub.add_parser("simulate", help="run a local multi-site federation on the synthetic data and compare")
    p.add_argument("--out", default="runs/simulate", help="working folder (federation, base, runs)")
    p.add_argument("--base", help="pretrained base folder (default: OUT/base, created if needed)")
    p.add_argument("--strategies", default="fedtar,fedavg",
                   help="comma list of fedtar, fedavg, fedprox, fedadam, fedyogi, scaffold, local, centralized")
    p.add_argument("--seeds", default="0", help="comma list of training seeds")
    p.add_argument("--rounds", type=int, help="federation rounds (default: federation.rounds)")
    _add_federation_size_args(p)
    p.add_argument("--holdout-site", type=int, help="train on the other sites, evaluate on this one (0-based)")
    p.add_argument("--engine", choices=("ray", "inprocess"), default="ray")
    p.add_argument("--resume", action="store_true", help="continue each run from its last round checkpoint")
    p.add_argument("--pretrain-epochs", type=int, help=PRETRAIN_EPOCHS_HELP)
    _add_config_args(p)
    p.set_defaults(func=_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # MONAI announces an optional GPU DICOM decoder it cannot find: noise for a user.
    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    logging.getLogger("monai").setLevel(logging.ERROR)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"fedtar: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
