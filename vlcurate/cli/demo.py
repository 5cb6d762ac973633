"""`vlcurate demo`: every stage end to end on synthetic data (the run: pipelines/demo.py)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="every stage end to end on bundled synthetic data, offline")
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--n", type=int, default=600, help="synthetic pairs (default 600)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from vlcurate.pipelines.demo import run_demo  # loads every job: only for the demo

    run_demo(args.out, n=args.n, overwrite=args.overwrite, beam_args=beam_args)
    return 0
