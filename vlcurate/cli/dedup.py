"""`vlcurate dedup --semantic OUT_DIR`: the semantic duplicates of a finished clean output's embeddings,
as a list a loader filters by (pipelines/semantic_job.py)."""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from vlcurate.filters.semantic_dedup import KEEP_POLICIES, SemanticDedup
from vlcurate.schemas.errors import ConfigError

# The step's own defaults (filters/semantic_dedup.py): the command states none of its own.
STEP_DEFAULTS = {n: p.default for n, p in inspect.signature(SemanticDedup).parameters.items()}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dedup",
        help="list the semantic duplicates of a clean output's CLIP image embeddings",
        description="With --semantic: clusters the image embeddings of a finished `vlcurate clean` output "
        "(written with output.embeddings: true) and lists the pairs within --threshold cosine of a "
        "better-ranked pair in <OUT_DIR>/semantic-dedup/duplicates.parquet. The shards are not rewritten. "
        "Other flags go to Beam.",
    )
    p.add_argument("directory", metavar="OUT_DIR", help="a completed `vlcurate clean` output with embeddings")
    p.add_argument("--semantic", action="store_true", help="semantic (embedding) duplicates: required")
    for name, kind, what in (
        ("threshold", float, "cosine at or above which images are duplicates"),
        ("clusters", int, "k-means centroids (fewer for a small sample)"),
        ("sample", int, "embeddings the centroids are trained on"),
        ("seed", int, "k-means seed"),
    ):
        p.add_argument(f"--{name}", type=kind, help=f"{what} (default {STEP_DEFAULTS[name]:,})")
    p.add_argument(
        "--keep",
        choices=KEEP_POLICIES,
        help=f"which of two duplicates stays (default {STEP_DEFAULTS['keep']})",
    )
    p.add_argument("--output", help="where the list is written (default: <OUT_DIR>/semantic-dedup)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: in-process)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier list in --output")
    p.add_argument("--no-progress", action="store_true", help="do not print progress lines")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from vlcurate.pipelines.semantic_job import run_semantic_dedup, semantic_step

    if not args.semantic:
        raise ConfigError(
            "vlcurate dedup needs --semantic: exact and near duplicates are removed by `vlcurate clean` itself"
        )
    given = {name: getattr(args, name) for name in STEP_DEFAULTS if getattr(args, name) is not None}
    step = semantic_step(**given)
    run_semantic_dedup(
        args.directory, args.output, step, args.workers, args.overwrite, beam_args, not args.no_progress
    )
    return 0
