"""The `fedtar` command: parse arguments, then call the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedtar.operations.console_logging import configure_console_logging

# Parsing stays import-free (fast --help): the library holds the default.
PRETRAIN_EPOCHS_HELP = "pretraining epochs of the base (default: fedtar.learning.pretrain.DEFAULT_PRETRAIN_EPOCHS)"


def _int_at_least(low: int):
    """An argparse type: an integer >= low, else argparse's usage error naming the option and the value."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is not allowed (want an integer >= {low})")
        return value
    parse.__name__ = "integer"
    return parse


POSITIVE, NONNEGATIVE = _int_at_least(1), _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed (want a number > 0)")
    return value


def _synth(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from data_adapters.synthetic import SyntheticConfig, generate_federation
    from fedtar.operations.federation_summary import summary_text
    from fedtar.operations.output_folder import claim_output, content_hash

    cfg = SyntheticConfig(sites=args.sites, patients=args.patients, visits=args.visits, seed=args.seed,
                          image_size=args.image_size, timeline_spread=args.timeline_spread,
                          drift_events=args.drift_events, demographic_signal=args.demographic_signal,
                          split=args.split)
    with claim_output(args.out, "synth", overwrite=args.overwrite, stamp={"config_sha256": content_hash(asdict(cfg))}):
        manifests = generate_federation(args.out, cfg)
    print(f"Wrote {len(manifests)} site manifests under {Path(args.out).resolve()}")
    print(summary_text(manifests))
    return 0


def _synth_mimic(args: argparse.Namespace) -> int:
    from data_adapters.mimic_rehearsal import MIMIC_CXR_JPG, RehearsalConfig, write_rehearsal

    counts = {**MIMIC_CXR_JPG, "studies": args.studies or MIMIC_CXR_JPG["studies"]} if args.mimic_counts \
        else {"studies": args.studies or 200}
    archive = write_rehearsal(args.out, RehearsalConfig(**counts, image_size=args.image_size, seed=args.seed,
                                                        workers=args.workers),
                              progress=not args.no_progress)
    print(f"Wrote a MIMIC-CXR-JPG rehearsal archive: {archive.subjects} subjects, {archive.studies} studies, "
          f"{archive.images} images\n  --root {archive.root.resolve()}\n  --patients {archive.patients.resolve()}")
    return 0


def _config(args: argparse.Namespace, synthetic: bool = False):
    from fedtar.config import SYNTHETIC_PRESET, load_config, parse_set_args
    from fedtar.generator.model import base_architecture

    # A named base sets the model's size, under a preset, --config and --set (which may still clash with it).
    preset = {**(SYNTHETIC_PRESET if synthetic else {}), **base_architecture(getattr(args, "base", None))}
    return load_config(args.config, parse_set_args(args.set), preset, named=getattr(args, "preset", None))


def _pretrain(args: argparse.Namespace) -> int:
    from fedtar.learning.pretrain import pretrain_base

    folder = pretrain_base(args.out, _config(args, synthetic=True), epochs=args.epochs, data=args.data)
    print(f"Pretrained base in {folder}")
    return 0


def _base_hash(args: argparse.Namespace) -> int:
    from fedtar.trust.base_hash import base_sha256

    print(base_sha256(args.dir))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from data_adapters.synthetic import SyntheticConfig
    from fedtar.demo import by_visit_table, metrics_table, run_demo
    from fedtar.operations.output_folder import claim_output

    cfg = _config(args, synthetic=True)
    synth = SyntheticConfig(sites=args.sites, patients=args.patients, visits=args.visits)
    with claim_output(args.out, "demo", _base_input(args), args.overwrite, _run_stamp(cfg, args)):
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
    from data_adapters.records import find_manifests
    from data_adapters.synthetic import SyntheticConfig
    from fedtar.config import apply_overrides
    from fedtar.operations.output_folder import claim_output, manifest_inputs

    overrides = {"federation.rounds": args.rounds} if args.rounds is not None else {}
    cfg = apply_overrides(_config(args, synthetic=True), overrides)
    plan = SimulationPlan(strategies=args.strategies.split(","), seeds=[int(s) for s in args.seeds.split(",")],
                          holdout_site=args.holdout_site, engine=args.engine, pretrain_epochs=args.pretrain_epochs,
                          resume=args.resume, resume_override=args.resume_override or "")
    synth = SyntheticConfig(sites=args.sites, patients=args.patients, visits=args.visits)
    inputs = {**_base_input(args), **(manifest_inputs("--data", find_manifests(args.data)) if args.data else {})}
    with claim_output(args.out, "simulate", inputs, args.overwrite, _run_stamp(cfg, args)):
        summaries = run_simulations(args.out, cfg, plan, synth, base_dir=args.base, data=args.data,
                                    overwrite=args.overwrite)
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


def _pseudonymizer(args: argparse.Namespace):
    from data_adapters.deid import Pseudonymizer, load_or_create_secret

    return Pseudonymizer(load_or_create_secret(Path(args.secret).expanduser(), args.out), args.date_shift_days)


def _prepare_mimic(args: argparse.Namespace) -> int:
    from data_adapters.mimic_cxr import MimicOptions, prepare_mimic_cxr
    from fedtar.operations.output_folder import claim_output, ensure_not_inside

    opts = MimicOptions(sites=args.sites, partition=args.partition, dirichlet_alpha=args.alpha, views=args.views,
                        per_study=args.per_study, image_size=args.image_size, seed=args.seed, workers=args.workers)
    inputs = {"--root": args.root, "--patients": args.patients, **({"--reports": args.reports} if args.reports else {})}
    ensure_not_inside(args.out, inputs)  # inputs first: a missing --root is named before a secret is made
    pseudonymizer = _pseudonymizer(args)
    with claim_output(args.out, "prepare mimic-cxr", inputs, args.overwrite):
        prepared = prepare_mimic_cxr(args.root, args.patients, args.out, pseudonymizer, opts, args.reports,
                                     progress=not args.no_progress)
    print(prepared.summary)
    print(f"\nWrote {len(prepared.manifests)} site manifest(s) under {Path(args.out).resolve()}")
    return 0 if prepared.manifests else 1


def _prepare_dicom(args: argparse.Namespace) -> int:
    from data_adapters.dicom import DicomOptions, prepare_dicom
    from fedtar.operations.output_folder import claim_output, ensure_not_inside, safe_child

    opts = DicomOptions(site_id=args.site_id, modality=args.modality, views=args.views, per_study=args.per_study,
                        image_size=args.image_size, allow_burned_in=args.allow_burned_in, workers=args.workers)
    safe_child(args.out, args.site_id, "--site-id")
    inputs = {"--root": args.root, **({"--reports-csv": args.reports_csv} if args.reports_csv else {})}
    ensure_not_inside(args.out, inputs)
    pseudonymizer = _pseudonymizer(args)
    with claim_output(args.out, "prepare dicom", inputs, args.overwrite):
        prepared = prepare_dicom(args.root, args.out, pseudonymizer, opts, args.reports_csv,
                                 progress=not args.no_progress)
    print(prepared.summary)
    print(f"\nWrote {len(prepared.manifests)} site manifest(s) under {Path(args.out).resolve()}")
    return 0 if prepared.manifests else 1


def _evaluate(args: argparse.Namespace) -> int:
    from aggregator.checkpoint import load_trained
    from data_adapters.records import find_manifests
    from fedtar.data.tokenizer import unknown_rate
    from fedtar.operations.output_folder import claim_output_file, manifest_inputs
    from fedtar.operations.tables import format_table
    from fedtar.scoring.evaluation import (
        GENERATED_COLUMNS,
        STANDARD_COLUMNS,
        clinical_protocol_rows,
        evaluate_manifests,
        write_generated,
    )
    from fedtar.scoring.metrics.chexbert import chexbert_labeler
    from fedtar.scoring.metrics.clinical import rule_labels

    # The optional CheXbert weights first: a missing file is named before any other work.
    labeler = chexbert_labeler(args.chexbert_weights) if args.chexbert_weights else rule_labels
    manifests = find_manifests(args.data)
    inputs = {"--model": args.model, **manifest_inputs("--data", manifests),
              **({"--chexbert-weights": args.chexbert_weights} if args.chexbert_weights else {})}
    with claim_output_file(args.out, "evaluate", ",".join(GENERATED_COLUMNS), inputs, args.overwrite):
        model, tokenizer = load_trained(args.model)
        ev, parts = evaluate_manifests(model, tokenizer, manifests, args.split, args.beams, not args.no_meteor,
                                       labeler)
        path = write_generated(args.out, parts, ev)
    unknown = unknown_rate(tokenizer, [r.report(model.cfg.data.section) for p in parts for r in p.records])
    print(f"{args.split} split: {len(ev.generated)} exams from {len(parts)} site(s); unknown-token rate of the "
          f"model's tokenizer on their reports: {unknown}"
          + (" -- above data.max_unknown_rate: the scores are measured on [UNK]s"
             if unknown.rate > model.cfg.data.max_unknown_rate else ""))
    print(format_table(list(STANDARD_COLUMNS), [[ev.overall.get(c, float("nan")) for c in STANDARD_COLUMNS]]))
    source = "CheXbert" if args.chexbert_weights else "the rule-based CheXpert labeler (fedtar.scoring.labeler)"
    print(f"\nce_precision / ce_recall / ce_f1 above: micro-averaged, 14 observations, uncertain as negative; "
          f"labels from {source}. Every protocol:")
    print(format_table(["clinical-efficacy protocol", "precision", "recall", "F1"], clinical_protocol_rows(ev.overall)))
    print(f"\nTemporal: cmp_acc {ev.overall.get('cmp_acc', float('nan')):.3f} (n={int(ev.overall.get('cmp_n', 0))}); "
          f"TEM (BioViL-T change words, per-report F1) {ev.overall.get('tem', float('nan')):.3f}; "
          f"first-visit reports that mention a prior {ev.overall.get('prior_halluc', float('nan')):.3f}")
    print(f"\nGenerated reports: {path.resolve()}")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from aggregator.certs import make_certificates, server_names

    made = make_certificates(args.out, args.host, args.site, days=args.days)
    print(f"CA and SuperLink certificate (SANs: {', '.join(server_names(args.host))}) in {made.folder.resolve()}")
    for site, key in made.node_keys.items():
        print(f"  {site}: private key {key} (to the site), public key {key}.pub (to server.toml node_keys)")
    print("Keep ca.key offline; give each site ca.crt and its own private key only.")
    return 0


def _server(args: argparse.Namespace) -> int:
    """Exit codes (docs/guides/deploy.md): 0 the run completed every round (or serving ended by a signal);
    1 the run ended without completing (stopped, failed); 2 a usage or config error, before any run;
    3 no end state within run_timeout / stall_timeout; 4 the SuperLink or the `flwr` CLI failed
    (start, key registration, submission); 128+N stopped by signal N during --run."""
    import time

    from aggregator.checkpoint import RESULTS_FILE
    from aggregator.flower_app import check_run_config, write_app
    from aggregator.superlink import (
        EXIT_FLOWER,
        SuperLinkStartError,
        checkpoint_progress,
        console_log,
        load_server_config,
        parse_run_config,
        register_nodes,
        run_outcome,
        start_superlink,
        submit_run,
        wait_run,
    )
    from fedtar.config import parse_set_args
    from fedtar.operations.flower_processes import Stopped, raise_on_signals, stop

    cfg, _ = load_server_config(args.config)
    if cfg.insecure and not args.insecure:
        raise ValueError(f"{args.config}: insecure = true needs --insecure on the command line as well")
    values, fed_cfg = {}, None
    if args.run:  # the whole run config is checked before anything starts
        values = parse_run_config(parse_set_args(args.run_config))
        values.setdefault("out-dir", "runs/federation")
        if args.resume:
            values["resume"] = True
        values, fed_cfg = check_run_config(values, app=args.app)
    raise_on_signals()
    proc = None
    try:
        try:
            proc = start_superlink(cfg)
            register_nodes(cfg)
        except (SuperLinkStartError, TimeoutError, RuntimeError) as e:
            print(f"fedtar server: error: {e}", file=sys.stderr, flush=True)
            return EXIT_FLOWER
        print(f"SuperLink running at {cfg.host}:{cfg.port} (FLWR_HOME={cfg.flwr_home}, connection "
              f"'{cfg.connection}'); {len(cfg.node_keys)} site key(s) registered.", flush=True)
        if args.run:
            if args.app:
                app = args.app
            else:  # the installed app: written fresh for this run from the installed package
                app = str(write_app(Path(cfg.database).parent / "app"))  # beside the SuperLink's state
            since = time.time()
            try:
                run_id = submit_run(cfg, app, values)
            except RuntimeError as e:
                print(f"fedtar server: error: {e}", file=sys.stderr, flush=True)
                return EXIT_FLOWER
            print(f"submitted run {run_id} ({'app ' + args.app if args.app else 'the installed FedTAR app'}); "
                  f"waiting (FLWR_HOME={cfg.flwr_home} flwr list {cfg.connection} --run-id {run_id})", flush=True)
            out_dir = str(values["out-dir"])
            rounds, seen = checkpoint_progress(out_dir), {}

            def progress() -> int:  # each round's checkpoint, as it appears
                done = rounds()
                if seen.setdefault("rounds", done) != done:
                    seen["rounds"] = done
                    print(f"run {run_id}: round {done} of {fed_cfg.federation.rounds} checkpointed in {out_dir}",
                          flush=True)
                return done

            results = Path(out_dir) / RESULTS_FILE  # the ServerApp writes it as the run ends: read the status then
            status = wait_run(cfg, run_id, progress=progress, stall_timeout=cfg.stall_timeout or None,
                              ended=results.is_file, status_every=10.0)
            outcome = run_outcome(cfg, run_id, status, out_dir, fed_cfg.federation.rounds if fed_cfg else None,
                                  since)
            print(outcome.line(run_id), flush=True)
            if outcome.code:
                print(f"fedtar server: run {run_id} did not complete (exit {outcome.code}): {outcome.reason}",
                      file=sys.stderr, flush=True)
            return outcome.code
        while proc.poll() is None:  # serve until stopped
            time.sleep(1.0)
        print(f"fedtar server: the SuperLink exited with code {proc.returncode} (see {console_log(cfg)})",
              file=sys.stderr)
        return EXIT_FLOWER
    except Stopped as s:
        print(f"fedtar server: stopped by {s}; stopping the SuperLink and its processes", file=sys.stderr,
              flush=True)
        return 128 + s.signum if args.run else 0
    finally:
        if proc is not None:
            stop(proc)


def _node(args: argparse.Namespace) -> int:
    """Exit codes (docs/guides/deploy.md): 0 stopped by SIGTERM/SIGINT; 2 a usage or config error; 3 a
    configuration error no restart fixes (named with Flower's code); 4 give_up_after without a connection."""
    import signal

    from clients.supernode import NodeRunner, load_node_config

    cfg = load_node_config(args.config)
    if cfg.insecure and not args.insecure:
        raise ValueError(f"{args.config}: insecure = true needs --insecure on the command line as well")
    if not Path(cfg.manifest).is_file():
        raise FileNotFoundError(f"{cfg.manifest}: the site's manifest is missing (see `fedtar prepare`)")
    runner = NodeRunner(cfg)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda n, _f: runner.stop(n))
    return runner.run()


def _experiment(args: argparse.Namespace) -> int:
    from aggregator.experiment import Part, load_sweep, run_sweep
    from data_adapters.records import find_manifests
    from fedtar.config import parse_set_args
    from fedtar.operations.output_folder import claim_output, content_hash, manifest_inputs

    sweep = load_sweep(args.config, parse_set_args(args.set))
    e = sweep.experiment
    inputs = {"--config": args.config, **({"base": e.base} if e.base else {}),
              **(manifest_inputs("data", find_manifests(e.data)) if e.data else {})}
    part = Part.parse(args.part, args.part_wait) if args.part else Part()
    with claim_output(args.out or e.out, "experiment compare", inputs, args.overwrite,
                      {"sweep_sha256": content_hash(Path(args.config).read_text())},
                      lock_name=f".part-{part.k}-of-{part.n}.lock" if args.part else None):
        out = run_sweep(sweep, args.out, progress=not args.no_progress, part=part)
    print(f"Tables: {out / 'results.md'}\nPlots: {out / 'plots'}\nAll runs: {out / 'summary.json'}")
    return 0


def _base_input(args: argparse.Namespace) -> dict[str, str]:
    return {"--base": args.base} if args.base else {}


def _run_stamp(cfg, args: argparse.Namespace) -> dict[str, str]:
    """What a run folder's results depend on: the config, and the base when one is given."""
    from fedtar.operations.output_folder import content_hash
    from fedtar.trust.base_hash import base_sha256

    return {"config_sha256": content_hash(cfg.to_flat()), **({"base_sha256": base_sha256(args.base)}
                                                             if args.base else {})}


def _add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="write into an output folder (or file) another "
                   "command wrote, or that holds files no fedtar command stamped; a run folder's old "
                   "checkpoints are removed")


def _add_federation_size_args(p: argparse.ArgumentParser) -> None:
    """Size of the synthetic federation written under OUT (when OUT has none yet)."""
    p.add_argument("--sites", type=POSITIVE, default=4)
    p.add_argument("--patients", type=POSITIVE, default=40, help="patients per site")
    p.add_argument("--visits", type=POSITIVE, default=5, help="exams per patient")


PRESET_NAMES = ("paper",)  # fedtar.config.PRESETS (not imported here: the CLI starts fast)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (dotted sections as in fedtar/config.py)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, repeatable")
    p.add_argument("--preset", choices=sorted(PRESET_NAMES),
                   help="a named configuration under the file and --set (paper: the method as the paper states it; "
                   "docs: reference/configuration.md, 'Presets')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedtar", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="every log line, DEBUG included, of FedTAR and the libraries (Flower, Ray...); "
                        "by default other libraries show only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write the synthetic longitudinal federation and print its summary")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sites", type=POSITIVE, default=4)
    p.add_argument("--patients", type=POSITIVE, default=40, help="patients per site")
    p.add_argument("--visits", type=POSITIVE, default=5, help="exams per patient")
    p.add_argument("--seed", type=NONNEGATIVE, default=0)
    p.add_argument("--image-size", type=_int_at_least(8), default=128)
    fta = p.add_argument_group("FTA conditions (all off by default; docs: guides/simulate.md, 'The synthetic federation')")
    fta.add_argument("--timeline-spread", type=NONNEGATIVE, default=0, metavar="YEARS",
                     help="site cohorts start spread over this many years, each with its own follow-up density")
    fta.add_argument("--drift-events", action="store_true",
                     help="each site changes scanner and reporting template at its own year")
    fta.add_argument("--demographic-signal", action="store_true",
                     help="add an age-only statement (aortic calcification from 75)")
    fta.add_argument("--split", choices=("patient", "prospective"), default="patient",
                     help="prospective: per site, the last exams by date (from a cut date on) are the test split")
    _add_overwrite_arg(p)
    p.set_defaults(func=_synth)

    p = sub.add_parser("synth-mimic", help="write a MIMIC-CXR-JPG rehearsal archive (layout, tables, report "
                       "text) of any size, for prepare -> simulate without MIMIC")
    p.add_argument("--out", required=True, help="output folder (mimic-cxr-jpg/ and mimiciv/ are written in it)")
    p.add_argument("--studies", type=POSITIVE, help="number of studies (default 200; MIMIC-CXR has 227,835)")
    p.add_argument("--mimic-counts", action="store_true",
                   help="MIMIC-CXR-JPG's proportions: its official split, images and views per study, studies per "
                        "subject; with its 227,835 studies unless --studies says otherwise")
    p.add_argument("--image-size", type=_int_at_least(8), default=512, help="JPG height in pixels")
    p.add_argument("--seed", type=NONNEGATIVE, default=0)
    p.add_argument("--workers", type=NONNEGATIVE, default=0, help="processes (default 0: the machine's cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth_mimic)

    p = sub.add_parser("pretrain", help="make the base: trained on a public pool (synthetic, or --data), or "
                       "assembled from pretrained backbones (model.encoder / model.decoder); cached")
    p.add_argument("--out", default="runs/base", help="folder for the base (reused when it matches)")
    p.add_argument("--data", help="a prepared federation folder as the public pool (its train split trains "
                   "the base and the tokenizer), e.g. MIMIC-CXR's official train split")
    p.add_argument("--epochs", type=POSITIVE, help=PRETRAIN_EPOCHS_HELP)
    _add_config_args(p)
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("base-hash", help="SHA-256 of a base folder, for node.toml's base_sha256")
    p.add_argument("dir", help="the base folder (a `fedtar pretrain` output or a real backbone's folder)")
    p.set_defaults(func=_base_hash)

    p = sub.add_parser("demo", help="central patient-adaptive training on the synthetic federation, with metrics")
    p.add_argument("--out", default="runs/demo", help="working folder (federation, base, outputs)")
    p.add_argument("--base", help="pretrained base folder (default: OUT/base, created if needed); the model's size "
                   "is the base's unless --config or --set give it")
    p.add_argument("--epochs", type=POSITIVE, default=8)
    p.add_argument("--pretrain-epochs", type=POSITIVE, help=PRETRAIN_EPOCHS_HELP)
    _add_federation_size_args(p)
    _add_config_args(p)
    _add_overwrite_arg(p)
    p.set_defaults(func=_demo)

    p = sub.add_parser("simulate", help="run a local multi-site federation on the synthetic data and compare")
    p.add_argument("--out", default="runs/simulate", help="working folder (federation, base, runs)")
    p.add_argument("--base", help="pretrained base folder (default: OUT/base, created if needed); the model's size "
                   "is the base's unless --config or --set give it")
    p.add_argument("--strategies", default="fedtar,fedavg",
                   help="comma list of fedtar, fedavg, fedprox, fedadam, fedyogi, scaffold, local, centralized")
    p.add_argument("--seeds", default="0", help="comma list of training seeds")
    p.add_argument("--rounds", type=POSITIVE, help="federation rounds (default: federation.rounds)")
    _add_federation_size_args(p)
    p.add_argument("--holdout-site", type=NONNEGATIVE, help="train on the other sites, evaluate on this one (0-based)")
    p.add_argument("--data", help="prepared manifests instead of the synthetic federation: a folder written by "
                   "`fedtar prepare` (or with */manifest.csv) or a comma list of manifest files")
    p.add_argument("--engine", choices=("ray", "inprocess"), default="ray")
    p.add_argument("--resume", action="store_true", help="continue each run from its last round checkpoint "
                   "(refused when the base or the config differ from the checkpoint's)")
    p.add_argument("--resume-override", metavar="KEYS", help="with --resume: config keys (comma list, under "
                   "train/client/federation/meta/privacy) that may differ from the checkpoint's; recorded per round")
    p.add_argument("--pretrain-epochs", type=POSITIVE, help=PRETRAIN_EPOCHS_HELP)
    _add_config_args(p)
    _add_overwrite_arg(p)
    p.set_defaults(func=_simulate)

    p = sub.add_parser("prepare", help="turn a real archive into de-identified site manifests")
    kinds = p.add_subparsers(dest="kind", required=True)
    m = kinds.add_parser("mimic-cxr", help="MIMIC-CXR-JPG or MIMIC-CXR DICOM + MIMIC-IV patients.csv")
    m.add_argument("--root", required=True, help="folder with files/ and the mimic-cxr-2.0.0-*.csv(.gz) tables")
    m.add_argument("--patients", required=True, help="MIMIC-IV hosp/patients.csv(.gz)")
    m.add_argument("--reports", help="folder whose files/pXX/pSUBJECT/sSTUDY.txt are the reports (default: ROOT)")
    m.add_argument("--sites", type=POSITIVE, default=4)
    m.add_argument("--partition", choices=("iid", "demographic", "year"), default="iid")
    m.add_argument("--alpha", type=_positive_float, default=0.5, help="Dirichlet concentration of --partition demographic")
    m.add_argument("--seed", type=NONNEGATIVE, default=0)
    d = kinds.add_parser("dicom", help="a hospital DICOM export (any layout) with SR or text reports")
    d.add_argument("--root", required=True, help="the exported DICOM folder (read only)")
    d.add_argument("--reports-csv", help="CSV: report_path and study_instance_uid or accession_number")
    d.add_argument("--site-id", default="site1")
    d.add_argument("--modality", choices=("xray", "ct"), default="xray",
                   help="radiographs (CR, DX) as PNG, or CT series as NIfTI volumes in HU")
    d.add_argument("--allow-burned-in", action="store_true", help="keep images that may carry burned-in text "
                   "(BurnedInAnnotation YES, US/OT/SC, secondary captures, screen saves): the site reviews them")
    for q in (m, d):
        q.add_argument("--out", required=True, help="output folder (refused inside the source archive)")
        q.add_argument("--secret", default="~/.fedtar/site-secret",
                       help="site secret for keyed pseudonyms (created, owner-only, if missing; keep it)")
        q.add_argument("--date-shift-days", type=NONNEGATIVE, default=0, help="shift each patient's dates by a keyed "
                       "offset in [-N, N] days (intervals are kept)")
        q.add_argument("--views", choices=("frontal", "all"), default="frontal")
        q.add_argument("--per-study", choices=("one", "all"), default="one", help="images kept per study")
        q.add_argument("--image-size", type=NONNEGATIVE, default=512, help="longer side of written PNGs (0: keep)")
        q.add_argument("--workers", type=NONNEGATIVE, default=0, help="processes decoding images (default 0: the "
                       "machine's cores); an interrupted prepare rerun with the same arguments continues")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")
        _add_overwrite_arg(q)
    m.set_defaults(func=_prepare_mimic)
    d.set_defaults(func=_prepare_dicom)

    p = sub.add_parser("experiment", help="sweeps that produce the comparison tables and plots")
    kinds = p.add_subparsers(dest="kind", required=True)
    q = kinds.add_parser("compare", help="all methods and ablations over seeds (resumable)")
    q.add_argument("--config", required=True, help="sweep file, e.g. experiments/synthetic.toml")
    q.add_argument("--out", help="output folder (default: [experiment] out)")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="FedTAR config key for every run")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--part", metavar="K/N", help="run every N-th run, from the K-th (start N processes with "
                   "1/N..N/N on one OUT; the last to finish writes the tables)")
    q.add_argument("--part-wait", type=float, default=6 * 3600.0, metavar="SECONDS",
                   help="with --part: how long to wait for another part's learning-rate search run (default 6 h)")
    _add_overwrite_arg(q)
    q.set_defaults(func=_experiment)

    p = sub.add_parser("certs", help="a CA, the SuperLink's TLS certificate and one key pair per site")
    p.add_argument("--out", default="certs", help="output folder (owner-only permissions)")
    p.add_argument("--host", action="append", required=True,
                   help="DNS name or IP address the sites use for the SuperLink (repeatable; SANs)")
    p.add_argument("--site", action="append", default=[], help="a site name to make a node key for (repeatable)")
    p.add_argument("--days", type=POSITIVE, default=365, help="validity of the certificates")
    p.set_defaults(func=_certs)

    p = sub.add_parser("server", help="start the SuperLink (TLS + node authentication) and register site keys")
    p.add_argument("--config", required=True, help="server.toml ([superlink] table)")
    p.add_argument("--run", action="store_true", help="also submit the FedTAR app and wait for it to finish")
    p.add_argument("--app", help="development: a Flower app folder (e.g. a checkout: --app .) instead of the "
                   "installed FedTAR app")
    p.add_argument("--run-config", action="append", metavar="KEY=VALUE", help="run config for --run, repeatable")
    p.add_argument("--resume", action="store_true", help="with --run: continue from the last round checkpoint")
    p.add_argument("--insecure", action="store_true", help="allow insecure = true in the config (test networks)")
    p.set_defaults(func=_server)

    p = sub.add_parser("node", help="start a site's SuperNode (TLS, node key, the site's manifest)")
    p.add_argument("--config", required=True, help="node.toml ([supernode] table)")
    p.add_argument("--insecure", action="store_true", help="allow insecure = true in the config (test networks)")
    p.set_defaults(func=_node)

    p = sub.add_parser("evaluate", help="generate reports for a split of prepared manifests and score them")
    p.add_argument("--model", required=True, help="a saved model folder or a finished run's folder")
    p.add_argument("--data", required=True, help="federation folder or comma list of manifests")
    p.add_argument("--split", default="test", choices=("train", "validate", "test"))
    p.add_argument("--beams", type=POSITIVE, default=1, help="beam width (1: greedy)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    p.add_argument("--chexbert-weights", help="a local chexbert.pth: label with CheXbert (needs the optional "
                   "f1chexbert package; never downloaded) instead of the rule-based labeler")
    p.add_argument("--out", default="generated_reports.csv", help="CSV of generated and reference reports")
    _add_overwrite_arg(p)
    p.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_console_logging(args.verbose)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"fedtar: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
