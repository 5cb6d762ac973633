"""`vlcurate synth`: its arguments and summary line (the data: synth/dataset.py). No Beam flags."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vlcurate.synth.dataset import write_synthetic_dataset


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic image-text dataset with planted defects and ground truth",
        description="A synthetic web image-text dataset carrying every defect the Qwen-VL cleaning steps target.",
    )
    p.add_argument("--out", required=True, help="output directory (local)")
    p.add_argument("--n", type=int, default=2000, help="number of pairs (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--workers", type=int, help="processes (default: CPUs, up to 8; 1 below 500 pairs)")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    summary = write_synthetic_dataset(
        args.out,
        args.n,
        args.seed,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=sys.stderr,
    )
    rejected = sum(summary["expected_rejected"].values())
    print(
        f"[vlcurate] wrote {summary['n']:,} synthetic pairs in {summary['seconds']:.1f}s to {args.out} "
        f"(expected without CLIP: kept {summary['expected_kept']:,}, rejected {rejected:,}; clean.yaml's CLIP "
        f"filter also targets the planted mismatched captions: kept {summary['expected_kept_with_clip']:,} if "
        "it catches all of them; see ground_truth.jsonl)",
        file=sys.stderr,
    )
    return 0
