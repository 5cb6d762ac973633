"""decontaminate.cosine's cost per pair (filters/decontaminate.py, EmbeddingMatcher) against the size of
the evaluation set, one core, without Beam.

    python bench/decontaminate.py [--evals 1000 5000 50000] [--dim 768] [--pairs 20000] [--batch 256]
                                  [--repeats 3]

Data: unit vectors of --dim values stored as float16 (as Pair.embedding and the .npz hold them), random
gaussian directions; 1% of the pairs are planted near-copies of an evaluation vector (noise of norm 0.1:
cosine ~0.995), so the float64 recheck runs as often as a contaminated crawl would make it. Pairs come in
batches of --batch, as the pipeline's batches reach EvalCosineMarks. Baseline, same data, same process:
the float32 product alone (the BLAS floor that any exhaustive comparison pays). Checked: every planted
copy is found at cosine 0.95 and nothing else.

Prints a table and writes bench/results/decontaminate.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, before numpy loads BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from report import write_results

from vlcurate.filters.decontaminate import EmbeddingMatcher
from vlcurate.filters.semantic_dedup import unit_rows

THRESHOLD = 0.95
PLANTED_SHARE = 0.01


def unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    rows = rng.normal(size=(n, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)


def data(evals: int, pairs: int, dim: int) -> tuple[np.ndarray, np.ndarray, list[str], dict[int, int]]:
    rng = np.random.default_rng(0)
    eval_rows = unit_vectors(evals, dim, rng)
    pair_rows = unit_vectors(pairs, dim, rng)
    planted = {}
    for row in rng.choice(pairs, int(pairs * PLANTED_SHARE), replace=False).tolist():
        source = int(rng.integers(evals))
        noise = rng.normal(size=dim)
        copy = eval_rows[source].astype(np.float64) + 0.1 * noise / np.linalg.norm(noise)
        pair_rows[row] = (copy / np.linalg.norm(copy)).astype(np.float16)
        planted[row] = source
    return pair_rows, eval_rows, [f"eval/{i:07d}" for i in range(evals)], planted


def timed(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure(evals: int, pairs: int, dim: int, batch: int, repeats: int) -> dict:
    pair_rows, eval_rows, ids, planted = data(evals, pairs, dim)
    found: dict[int, str] = {}
    matcher = EmbeddingMatcher(ids, eval_rows)  # once per worker (EvalCosineMarks.setup)

    def matches() -> None:
        found.clear()
        for start in range(0, pairs, batch):
            for row, eval_id, _ in matcher.matches(pair_rows[start : start + batch], THRESHOLD):
                found[start + row] = eval_id

    eval_units = unit_rows(eval_rows).T

    def product_only() -> None:
        for start in range(0, pairs, batch):
            (unit_rows(pair_rows[start : start + batch]) @ eval_units).max(axis=1)

    seconds = timed(matches, repeats)
    assert found == {row: ids[source] for row, source in planted.items()}, "planted copies not found exactly"
    floor = timed(product_only, repeats)
    return {
        "evals": evals,
        "dim": dim,
        "pairs": pairs,
        "batch": batch,
        "planted": len(planted),
        "found": len(found),
        "pairs_per_s": round(pairs / seconds, 1),
        "us_per_pair": round(seconds / pairs * 1e6, 2),
        "product_only_pairs_per_s": round(pairs / floor, 1),
        "overhead_vs_product": round(seconds / floor, 3),
        "eval_matrix_mb": round(eval_rows.nbytes / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evals", type=int, nargs="+", default=[1000, 5000, 50000])
    parser.add_argument("--dim", type=int, default=768, help="768: ViT-L-14's embedding")
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, 1 BLAS thread, numpy {np.__version__}"
    rows = [measure(n, args.pairs, args.dim, args.batch, args.repeats) for n in args.evals]
    print(
        f"decontaminate.cosine, {args.pairs:,} pairs in batches of {args.batch}, d={args.dim}, best of "
        f"{args.repeats} ({machine})"
    )
    print(f"{'evals':>8} {'pairs/s':>10} {'us/pair':>9} {'product only':>13} {'overhead':>9} {'found':>7}")
    for r in rows:
        print(
            f"{r['evals']:>8,} {r['pairs_per_s']:>10,.0f} {r['us_per_pair']:>9.1f} "
            f"{r['product_only_pairs_per_s']:>13,.0f} {r['overhead_vs_product']:>8.2f}x {r['found']:>4}/{r['planted']}"
        )
    print(write_results("decontaminate", rows, machine))


if __name__ == "__main__":
    main()
