"""`vlcurate retune`: a completed clean output with new thresholds, from its stored scores (no GPU)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "retune",
        help="re-apply new thresholds to a clean output's stored scores (no GPU)",
        description="Runs the clean job of --from again with new thresholds, the CLIP step replaced by the "
        "scores --from stored. Other flags go to Beam.",
    )
    p.add_argument("--from", dest="from_dir", required=True, help="a completed `vlcurate clean` output")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="[SOURCE:]STEP.PARAM[.LANG]=VALUE",
        help="a new threshold, e.g. clip_filter.threshold.en=0.31 or web:min_side.min_side=256 (repeatable)",
    )
    p.add_argument("--output", required=True, help="the new output directory")
    p.add_argument("--workers", type=int, help="local worker processes (default: as --from ran)")
    p.add_argument("--overwrite", action="store_true", help="replace a completed output directory")
    p.add_argument("--no-progress", action="store_true", help="do not print progress lines")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from vlcurate.pipelines.clean import run_clean
    from vlcurate.pipelines.retune import load_for_retune, refuse_unscored

    config = load_for_retune(args.from_dir, args.settings, args.output)
    if args.workers is not None:
        config.workers = args.workers
    config.output.overwrite = args.overwrite
    config.__post_init__()
    refuse_unscored(config, args.from_dir)
    run_clean(config, beam_args, progress=not args.no_progress, scores_from=args.from_dir)
    return 0
