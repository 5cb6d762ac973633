"""decode_check's cost per pair at each `threads` setting: the step through the step engine (StepRunner,
as RunSteps runs it in a worker), on batches of synthetic 512x384 JPEGs (bench/dedup.py's photo-like
images, quality 90), settings taking turns over --rounds rounds; best and median per setting, and each
setting's speed against one thread measured in the same rounds. Every setting's hashes are checked equal
to one thread's.

    python bench/decode_check.py [--images 400] [--batch 256] [--threads 1 2 4] [--rounds 5]

Prints a table and writes bench/results/decode_check.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from dedup import make_jpegs
from report import write_results

from vlcurate.filters.image_probe import DecodeCheck, ProbeImage
from vlcurate.filters.runner import StepRunner
from vlcurate.schemas.record import Pair


def probed(jpegs: list[bytes]) -> list[Pair]:
    pairs = [Pair(uid=f"b/{i:06d}", source="b", image=data) for i, data in enumerate(jpegs)]
    probe = ProbeImage()
    for pair in pairs:
        probe.apply(pair)
    return pairs


def one_pass(jpegs: list[bytes], batch: int, runner: StepRunner) -> tuple[float, list]:
    """Seconds for decode_check over every image in batches of `batch`, and the hashes it wrote."""
    pairs = probed(jpegs)
    start = time.perf_counter()
    for at in range(0, len(pairs), batch):
        runner.run(pairs[at : at + batch])
    seconds = time.perf_counter() - start
    return seconds, [pair.meta.get("image_phash") for pair in pairs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--batch", type=int, default=256, help="pairs per batch (the reader's batches)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} (shared dev machine)"
    jpegs = make_jpegs(args.images, 0)
    runners = {t: StepRunner({"b": [DecodeCheck(threads=t)]}) for t in args.threads}
    times: dict[int, list[float]] = {t: [] for t in args.threads}
    reference = None
    for _ in range(args.rounds):
        for threads in args.threads:
            seconds, hashes = one_pass(jpegs, args.batch, runners[threads])
            reference = reference or hashes
            if hashes != reference:
                raise SystemExit(f"threads {threads}: hashes differ from the first setting's")
            times[threads].append(seconds)
    base = args.threads[0]
    rows = []
    print(f"{machine}; {args.images} JPEGs 512x384 q90, batches of {args.batch}, {args.rounds} rounds")
    print(
        f"{'threads':>8} {'best us/pair':>13} {'median us/pair':>15} {'x vs ' + str(base) + ' (paired median)':>26}"
    )
    for threads in args.threads:
        paired = [b / t for b, t in zip(times[base], times[threads])]
        row = {
            "threads": threads,
            "images": args.images,
            "batch": args.batch,
            "best_us_per_pair": round(min(times[threads]) / args.images * 1e6, 1),
            "median_us_per_pair": round(statistics.median(times[threads]) / args.images * 1e6, 1),
            "speed_vs_first_paired_median": round(statistics.median(paired), 2),
            "hashes_equal_first": True,
        }
        rows.append(row)
        print(
            f"{threads:>8} {row['best_us_per_pair']:>13,.1f} {row['median_us_per_pair']:>15,.1f} "
            f"{row['speed_vs_first_paired_median']:>25.2f}x"
        )
    print("wrote", write_results("decode_check", rows, machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
