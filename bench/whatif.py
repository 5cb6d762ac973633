"""What the what-if curves cost: CountWhatIf.add_input (pipelines/whatif.py) per pair, against the final
accounting every pair already goes through (RunStats.observe_final), on the same pairs in one process.

Pairs carry the default chain's scored steps (min_side, aspect_ratio, clip_filter), two languages and a
realistic mix of fates (kept, rejected by each scored step, rejected by another step); curves as a
default run builds them. Best of --repeats; prints a table and writes bench/results/whatif.json.

    python bench/whatif.py [--pairs 200000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time

from vlcurate.filters.chain import build_chain
from vlcurate.pipelines.clean import default_config
from vlcurate.pipelines.whatif import CountWhatIf, curves_for
from vlcurate.schemas.record import Pair
from vlcurate.schemas.stats import RunStats

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "whatif.json")
FATES = [None] * 6 + ["too_small", "aspect_ratio", "clip_low_score", "language", "too_short"]


def make_pairs(n: int) -> list[Pair]:
    rng = random.Random(0)
    pairs = []
    for i in range(n):
        pair = Pair(uid=f"web/{i}", source="web", lang=rng.choice(["en", "zh"]), reject=rng.choice(FATES))
        chinese = pair.lang == "zh"
        pair.scores = {
            "n_chars": rng.randint(3, 200),
            "n_words": 1 if chinese else rng.randint(1, 40),
            "n_cjk": rng.randint(2, 60) if chinese else 0,
            "chinese": int(chinese),
            "lang_prob": rng.random(),
            "min_side": rng.randint(50, 1200),
            "aspect_ratio": 1 + rng.random() * 4,
            "clip": rng.random(),
        }
        pairs.append(pair)
    return pairs


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=RESULTS)
    args = parser.parse_args()
    pairs = make_pairs(args.pairs)
    batches = [pairs[i : i + 512] for i in range(0, len(pairs), 512)]
    chain = build_chain(default_config(["in.tar"], "out", "webdataset"))
    before, model, after = chain.split()
    curves = curves_for({"web": [before["input"], [model["input"]], after["input"]]}, audit=False)
    combine = CountWhatIf(curves)

    def whatif() -> None:
        acc = combine.create_accumulator()
        for batch in batches:
            acc = combine.add_input(acc, batch)
        combine.extract_output(acc)

    def final_accounting() -> None:
        stats = RunStats()
        for pair in pairs:
            stats.observe_final(pair)

    whatif_s, final_s = best(whatif, args.repeats), best(final_accounting, args.repeats)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "pairs": args.pairs,
        "curves": sum(len(c) for c in curves.values()),
        "whatif_us_per_pair": round(whatif_s / args.pairs * 1e6, 2),
        "final_accounting_us_per_pair": round(final_s / args.pairs * 1e6, 2),
        "ratio": round(whatif_s / final_s, 2),
    }
    print(f"pairs {args.pairs:,}, {result['curves']} curves, one core, best of {args.repeats}")
    print(f"what-if combiner      {result['whatif_us_per_pair']:>6.2f} us/pair")
    print(
        f"final accounting      {result['final_accounting_us_per_pair']:>6.2f} us/pair  (ratio {result['ratio']}x)"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
