"""Summarizes a py-spy raw profile (`py-spy record -f raw`, with or without --subprocesses): per process,
its seconds of samples and the functions with the most total (cumulative) and own time.

    python bench/spy_summary.py PROFILE --rate 50 [--top 25]

Profiles of a multi-worker GPU run are too large to copy back from a remote GPU machine; run this there
and bring back its summary.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

_LINE_NUMBER = re.compile(r":\d+\)$")


def summarize(path: str) -> dict[str, tuple[int, Counter, Counter]]:
    """process -> (samples, total per function, own per function), line numbers dropped."""
    samples: Counter = Counter()
    total: dict[str, Counter] = defaultdict(Counter)
    own: dict[str, Counter] = defaultdict(Counter)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            frames = [_LINE_NUMBER.sub(")", f) for f in stack.split(";")]
            process = "process"
            while frames and frames[0].startswith("process "):  # a child is nested under its parents
                process = frames.pop(0)[:100]
            n = int(count)
            samples[process] += n
            for frame in set(frames):
                total[process][frame] += n
            if frames:
                own[process][frames[-1]] += n
    return {p: (samples[p], total[p], own[p]) for p in samples}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile")
    parser.add_argument("--rate", type=float, required=True, help="py-spy's samples per second (-r)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for process, (n, total, own) in sorted(summarize(args.profile).items(), key=lambda kv: -kv[1][0]):
        print(f"== {process}: {n / args.rate:.1f} s sampled")
        for title, counter in (("total", total), ("own", own)):
            print(f"-- {title}")
            for frame, count in counter.most_common(args.top):
                print(f"{count / args.rate:7.2f}s {frame[:150]}")


if __name__ == "__main__":
    main()
