"""`vlcurate sft --config FILE`: its arguments, applied over the config (the job: pipelines/sft.py)."""

from __future__ import annotations

import argparse
from typing import Any

from vlcurate.cli.check import add_check_flag, check_after
from vlcurate.pipelines.sft import run_sft
from vlcurate.schemas.sft_config import load_sft_config


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sft",
        help="build Qwen-VL SFT dialogue shards (finetune.py JSON) from cleaned pairs, VQA, grounding, text",
        description="Unknown flags are passed to Beam (e.g. --runner=DataflowRunner).",
    )
    p.add_argument("--config", required=True, help="YAML config (see schemas/sft_config.py)")
    p.add_argument("--output", help="output directory (overrides output.dir)")
    p.add_argument("--workers", type=int, help="local worker processes (default: the config's, 1)")
    p.add_argument("--seed", type=int, help="construction seed (overrides the config's)")
    p.add_argument("--overwrite", action="store_true", help="replace a completed output directory")
    p.add_argument("--no-progress", action="store_true", help="do not print progress lines")
    add_check_flag(p)


def run(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    config = load_sft_config(args.config)
    if args.output:
        config.output.dir = args.output
    if args.workers is not None:
        config.workers = args.workers
    if args.seed is not None:
        config.seed = args.seed
    config.output.overwrite = config.output.overwrite or args.overwrite
    config.__post_init__()
    run_sft(config, beam_args, progress=not args.no_progress)
    if args.check:
        check_after(config.output.dir, config.workers, beam_args)
    return 0
