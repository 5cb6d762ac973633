"""`vlcurate dedup --semantic OUT_DIR`: the semantic duplicates of a finished clean output's embeddings,
as a list a loader filters by (pipelines/semantic_job.py)."""

from __future__ import annotations

import argparse
from typing import Any

from vlcurate.filters.semantic_dedup import KEEP_POLICIES
from vlcurate.schemas.errors import ConfigError


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
    p.add_argument(
        "--threshold", type=float, default=0.95, help="cosine at or above which images are duplicates"
    )
    p.add_argument("--clusters", type=int, default=1000, help="k-means centroids (fewer for a small sample)")
    p.add_argument("--sample", type=int, default=100_000, help="embeddings the centroids are trained on")
    p.add_argument(
        "--keep", choices=KEEP_POLICIES, default="smallest_uid", help="which of two duplicates stays"
    )
    p.add_argument("--seed", type=int, default=0, help="k-means seed")
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
    step = semantic_step(
        threshold=args.threshold, clusters=args.clusters, sample=args.sample, keep=args.keep, seed=args.seed
    )
    run_semantic_dedup(
        args.directory, args.output, step, args.workers, args.overwrite, beam_args, not args.no_progress
    )
    return 0
