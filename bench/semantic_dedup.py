"""Semantic dedup's cost (filters/semantic_dedup.py, pipelines/semantic_groups.py) on synthetic CLIP-like
embeddings, without Beam at 100k and 1M, and the SemanticDuplicatePairs transform in-process.

    python bench/semantic_dedup.py [--sizes 100000 1000000] [--dim 512] [--beam-pairs 100000] [--threads 1]
                                   [--quick]

Data: unit vectors of --dim values stored as float16, drawn from a mixture of 2,000 gaussian components
(centre + noise of the same norm: cosine ~0.5 inside a component, ~0 across), 5% of them planted
near-copies of a random earlier vector (noise of norm 0.1: cosine ~0.995), uids `s/<8 digits>`.

1. core, each size in a fresh process (peak RSS is the process's ru_maxrss): the sample (the 100k
   smallest stable_hash(uid), as the pipeline takes it), train_centroids on it (1,000 centroids, faiss
   CPU), nearest_centroid for every embedding, then losers_in_cluster on every cluster (entries built
   as the transform builds them). Checked: planted copies found, other losers.
2. beam: SemanticDuplicatePairs (FnApiRunner in-process, pipeline_options()) on --beam-pairs Pairs with
   only uid, source and embedding, fresh process: pairs/s and peak RSS.

Prints a table and writes bench/results/semantic_dedup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from report import write_results

from vlcurate.filters.near_dedup import as_key
from vlcurate.filters.semantic_dedup import (
    SemanticDedup,
    losers_in_cluster,
    nearest_centroid,
    train_centroids,
)
from vlcurate.schemas.record import stable_hash

MACHINE = "2-core x86_64 dev machine, shared"
COMPONENTS, COPY_SHARE, CHUNK = 2000, 0.05, 100_000


def embeddings(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, dict[int, int]]:
    """[n, dim] float16 unit rows and {copy row: original row}, made in chunks (1M x 512 is 1 GB)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(COMPONENTS, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        rows = centres[rng.integers(0, COMPONENTS, size)] + rng.normal(size=(size, dim)).astype(np.float32)
        out[start : start + size] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    copies = {}
    for row in rng.choice(np.arange(1, n), size=int(n * COPY_SHARE), replace=False):
        original = int(rng.integers(0, row))
        noise = rng.normal(size=dim).astype(np.float32) * (0.1 / np.sqrt(dim))
        vector = out[original].astype(np.float32) + noise
        out[row] = vector / np.linalg.norm(vector)
        copies[int(row)] = original
    return out, copies


def uid(i: int) -> str:
    return f"s/{i:08d}"


def core(n: int, dim: int, step: SemanticDedup) -> dict:
    vectors, copies = embeddings(n, dim)
    started = time.perf_counter()
    hashes = np.array([stable_hash(uid(i)) for i in range(n)], dtype=np.uint64)
    sample = np.sort(np.argsort(hashes, kind="stable")[: step.sample])
    t_sample = time.perf_counter()
    centroids = train_centroids(vectors[sample], step.clusters, step.seed)
    t_train = time.perf_counter()
    nearest = np.empty(n, dtype=np.int64)
    for start in range(0, n, CHUNK):
        nearest[start : start + CHUNK], _ = nearest_centroid(vectors[start : start + CHUNK], centroids)
    t_assign = time.perf_counter()
    losers = {}
    order = np.argsort(nearest, kind="stable")
    bounds = np.searchsorted(nearest[order], np.arange(len(centroids) + 1))
    sizes = np.diff(bounds)
    for cluster in range(len(centroids)):
        rows = order[bounds[cluster] : bounds[cluster + 1]]
        entries = [((as_key(uid(i)),), vectors[i].tobytes()) for i in rows]
        for loser, winner, _ in losers_in_cluster(entries, step.threshold):
            losers[loser] = winner
    t_losers = time.perf_counter()
    planted = {as_key(uid(c)) for c in copies}
    found = len(planted & set(losers))
    total = t_losers - started
    return {
        "part": "core",
        "embeddings": n,
        "dim": dim,
        "clusters": len(centroids),
        "sample": len(sample),
        "sample_s": round(t_sample - started, 2),
        "train_s": round(t_train - t_sample, 2),
        "assign_s": round(t_assign - t_train, 2),
        "losers_s": round(t_losers - t_assign, 2),
        "total_s": round(total, 2),
        "embeddings_per_s": round(n / total),
        "largest_cluster": int(sizes.max()),
        "median_cluster": int(np.median(sizes)),
        "planted": len(planted),
        "planted_found": found,
        "other_losers": len(losers) - found,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def beam_run(n: int, dim: int, step: SemanticDedup) -> dict:
    import apache_beam as beam

    from vlcurate.pipelines.options import pipeline_options
    from vlcurate.pipelines.semantic_groups import SemanticDuplicatePairs
    from vlcurate.pipelines.steps import STATS, MergeStats
    from vlcurate.schemas.batch import PairBatch
    from vlcurate.schemas.record import Pair

    vectors, copies = embeddings(n, dim)
    pairs = [Pair(uid=uid(i), source="s", embedding=vectors[i].tobytes()) for i in range(n)]
    batches = [PairBatch(pairs[i : i + 512]) for i in range(0, n, 512)]
    del pairs
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        with beam.Pipeline(options=pipeline_options()) as p:
            grouped = p | beam.Create(batches) | SemanticDuplicatePairs({"s": step}, 8, out)
            (
                grouped[STATS]
                | beam.CombineGlobally(MergeStats())
                | beam.Map(lambda s: sum(s.rejected.values()))
                | beam.io.WriteToText(f"{out}/rejected", shard_name_template="")
            )
        seconds = time.perf_counter() - started
        with open(f"{out}/rejected") as fh:
            rejected = int(fh.read())
    return {
        "part": "beam",
        "embeddings": n,
        "dim": dim,
        "buckets": 8,
        "seconds": round(seconds, 1),
        "pairs_per_s": round(n / seconds),
        "rejected": rejected,
        "planted": len(copies),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_mb": round(before),
    }


def fresh(part: str, n: int, dim: int, threads: int) -> dict:
    """One part in a fresh process, so each peak RSS is its own, with `threads` BLAS/OpenMP threads (0:
    the libraries' default, one per core)."""
    command = [sys.executable, __file__, "--one", part, str(n), "--dim", str(dim)]
    env = dict(os.environ)
    if threads:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "blas_threads": threads or "default"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--beam-pairs", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20k embeddings, 10k through Beam")
    # On a shared machine, BLAS threads waiting for a busy core turn a cluster's small products from
    # microseconds into milliseconds (40x512 by 512x40: 0.15 ms with 1 thread, 25 ms with 2 under load).
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads per process (0: default)")
    parser.add_argument("--one", nargs=2, metavar=("PART", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    step = SemanticDedup()
    if args.one:
        part, n = args.one[0], int(args.one[1])
        print(json.dumps((core if part == "core" else beam_run)(n, args.dim, step)))
        return
    sizes, beam_pairs = ([20_000], 10_000) if args.quick else (args.sizes, args.beam_pairs)
    rows = [fresh("core", n, args.dim, args.threads) for n in sizes]
    if beam_pairs:
        rows.append(fresh("beam", beam_pairs, args.dim, args.threads))
    print(
        f"{'part':<5} {'N':>9} {'train s':>8} {'assign s':>9} {'losers s':>9} {'total s':>8} {'emb/s':>8} "
        f"{'found':>13} {'other':>6} {'peak MB':>8}"
    )
    for r in rows:
        if r["part"] == "core":
            print(
                f"core  {r['embeddings']:>9,} {r['train_s']:>8} {r['assign_s']:>9} {r['losers_s']:>9} "
                f"{r['total_s']:>8} {r['embeddings_per_s']:>8,} {r['planted_found']:>6,}/{r['planted']:<6,} "
                f"{r['other_losers']:>6} {r['peak_rss_mb']:>8,}"
            )
        else:
            print(
                f"beam  {r['embeddings']:>9,} {'':>8} {'':>9} {'':>9} {r['seconds']:>8} {r['pairs_per_s']:>8,} "
                f"{r['rejected']:>6,}/{r['planted']:<6,} {'':>6} {r['peak_rss_mb']:>8,}"
            )
    machine = f"{MACHINE} ({platform.machine()}, {os.cpu_count()} cores)"
    print(write_results("semantic_dedup", rows, machine))


if __name__ == "__main__":
    main()
