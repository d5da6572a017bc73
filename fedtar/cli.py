"""The `fedtar` command: parse arguments, then call the library."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from data_adapters.summary import summary_text
    from data_adapters.synthetic import SyntheticConfig, generate_federation

    cfg = SyntheticConfig(sites=args.sites, patients=args.patients, visits=args.visits, seed=args.seed,
                          image_size=args.image_size)
    manifests = generate_federation(args.out, cfg)
    print(f"Wrote {len(manifests)} site manifests under {Path(args.out).resolve()}")
    print(summary_text(manifests))
    return 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"fedtar: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
