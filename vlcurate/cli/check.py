"""`vlcurate check`, and the `--check` flag of the jobs that can check their output when they end."""

from __future__ import annotations

import argparse
from typing import Any

from vlcurate.pipelines.check_job import CheckOptions, run_check
from vlcurate.schemas.model_spec import DEFAULT_CHECK_MODEL


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="sanity-check a completed output before training (tokens, images, a compact Qwen-VL's loss)",
        description="Checks a completed clean, format or sft output before training: every record's tokens "
        "and images, and a compact Qwen-VL's loss on its samples. Writes findings.parquet, check.json and "
        "report.html into --output.",
    )
    p.add_argument("--input", required=True, help="a completed clean, format or sft output directory")
    p.add_argument("--output", help="where the check is written (default: <input>/check)")
    p.add_argument(
        "--model",
        default=DEFAULT_CHECK_MODEL,
        help=f"model for the loss checks: {DEFAULT_CHECK_MODEL} (default), local-dir:PATH, qwen-vl:PATH "
        "(a local Qwen-VL checkpoint), or none (structural checks only)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--sample", type=int, help="model checks on N samples (default: all)")
    group.add_argument("--fraction", type=float, help="model checks on this share of the samples")
    p.add_argument("--image-root", help="where image paths resolve (default: as info.json says)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any structural finding exists")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier check in --output")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    options = CheckOptions(
        model=None if args.model == "none" else args.model,
        sample=args.sample,
        fraction=args.fraction,
        image_root=args.image_root,
    )
    run_check(args.input, args.output, options, args.workers, args.overwrite, beam_args, args.strict)
    return 0


def add_check_flag(p: argparse.ArgumentParser) -> None:
    """`--check` of a job's parser: check_after runs when it is given."""
    p.add_argument(
        "--check",
        action="store_true",
        help="afterwards run `vlcurate check` on the output (into <output>/check); exit 1 on a structural finding",
    )


def check_after(output: str, workers: int, beam_args: list[str] | None) -> None:
    """`vlcurate check --strict` on a job's finished output, into <output>/check."""
    run_check(output, workers=workers, overwrite=True, beam_args=beam_args, strict=True)
