"""`vlcurate format --stage 1|2`: its arguments (the job: pipelines/format.py)."""

from __future__ import annotations

import argparse
from typing import Any

from vlcurate.cli.check import add_check_flag, check_after
from vlcurate.formatters.packing import DEFAULT_MAX_TOKENS
from vlcurate.pipelines import format as format_job


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "format",
        help="stage-1/2 training samples and packed sequences",
        description=format_job.__doc__.split("\n\n")[0],
    )
    p.add_argument("--stage", type=int, required=True, choices=[1, 2])
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="stage 1: completed `clean` output directories; stage 2: JSONL files or globs",
    )
    p.add_argument("--output", required=True)
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="packed length (default 2048)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="do not print progress lines")
    add_check_flag(p)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    format_job.run_format(
        args.stage,
        args.input,
        args.output,
        args.max_tokens,
        args.overwrite,
        args.workers,
        beam_args,
        progress=not args.no_progress,
    )
    if args.check:
        check_after(args.output, args.workers, beam_args)
    return 0
