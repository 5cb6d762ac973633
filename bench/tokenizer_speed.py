"""Formatting + exact Qwen-VL tokenization speed, one process vs a 2-process pool.

    python bench/tokenizer_speed.py [--data CAPTIONS.parquet] [--repeat 3]

--data defaults to tests/data/web_captions_10k.parquet (10k real web alt texts, vendored with the tests).

Captions: the TEXT column of the web captions file, --copies times over (enough work to amortize the
pool's start of a run), with fake image paths `images/00000042.jpg`.
Rows measured (samples/s, median of --repeat runs, tokenizer already loaded in every process):
- stage1: `format_caption` (scrub, checks, prefix/target strings, both halves tokenized);
- stage2: `format_stage2_line` on JSONL captioning records (adds JSON parsing);
- pack: `pack_samples` with token ids on the stage-1 samples (re-tokenizes; one process only).
Pool workers return counts, not samples, so the numbers are compute only. Prints a table and writes
bench/results/tokenize.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time

import pyarrow.parquet as pq
import tiktoken
from timing import timed, warm_tokenizer

from vlcurate.formatters.packing import pack_samples
from vlcurate.formatters.stage1 import format_caption
from vlcurate.formatters.stage2 import format_stage2_line

DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "web_captions_10k.parquet"
)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "tokenize.json")
CHUNK = 1000  # items per pool task: enough to amortize pickling, small enough to balance two workers


def stage1_chunk(items: list[tuple[str, str]]) -> tuple[int, int]:
    ok = tokens = 0
    for caption, path in items:
        result = format_caption(caption, "en", path)
        if result.ok:
            ok += 1
            tokens += result.sample["num_tokens"]
    return ok, tokens


def stage2_chunk(lines: list[str]) -> tuple[int, int]:
    ok = tokens = 0
    for line in lines:
        result = format_stage2_line(line)
        if result.ok:
            ok += 1
            tokens += result.sample["num_tokens"]
    return ok, tokens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copies", type=int, default=5, help="passes over the captions (fresh paths)")
    parser.add_argument("--json", default=RESULTS)
    args = parser.parse_args()

    captions = pq.read_table(args.data, columns=["TEXT"]).column("TEXT").to_pylist()
    items = [(c or "", f"images/{i:08d}.jpg") for i, c in enumerate(captions * args.copies)]
    lines = [
        json.dumps({"task": "captioning", "id": i, "image": p, "caption": c})
        for i, (c, p) in enumerate(items)
    ]
    load_start = time.perf_counter()
    warm_tokenizer()
    load_seconds = time.perf_counter() - load_start

    def chunks(seq: list) -> list[list]:
        return [seq[i : i + CHUNK] for i in range(0, len(seq), CHUNK)]

    rows = []

    def record(name: str, processes: int, seconds: float, ok: int, tokens: int) -> None:
        rows.append(
            {
                "bench": name,
                "processes": processes,
                "samples": len(items),
                "kept": ok,
                "tokens": tokens,
                "seconds": round(seconds, 3),
                "samples_per_s": round(len(items) / seconds),
                "tokens_per_s": round(tokens / seconds),
            }
        )

    for name, fn, data in (("stage1", stage1_chunk, items), ("stage2", stage2_chunk, lines)):
        seconds, (ok, tokens) = timed(lambda fn=fn, data=data: fn(data), args.repeat)
        record(name, 1, seconds, ok, tokens)
        with multiprocessing.Pool(2, initializer=warm_tokenizer) as pool:
            pool.map(warm_tokenizer, range(4))  # both workers up and warm before timing

            def run(fn=fn, data=data, pool=pool) -> tuple[int, int]:
                parts = pool.map(fn, chunks(data))
                return sum(p[0] for p in parts), sum(p[1] for p in parts)

            seconds, (ok, tokens) = timed(run, args.repeat)
        record(name, 2, seconds, ok, tokens)

    samples = [r.sample for r in (format_caption(c, "en", p) for c, p in items) if r.ok]
    seconds, (packs, _, stats) = timed(lambda: pack_samples(samples), args.repeat)
    record("pack", 1, seconds, stats.to_json()["packed"], stats.to_json()["tokens"])
    for row in rows:
        base = next(r for r in rows if r["bench"] == row["bench"] and r["processes"] == 1)
        row["speedup"] = round(row["samples_per_s"] / base["samples_per_s"], 2)

    print(
        f"{'bench':<8} {'procs':>5} {'samples':>8} {'seconds':>8} {'samples/s':>10} {'tokens/s':>10} {'speedup':>8}"
    )
    for r in rows:
        print(
            f"{r['bench']:<8} {r['processes']:>5} {r['samples']:>8} {r['seconds']:>8} {r['samples_per_s']:>10} "
            f"{r['tokens_per_s']:>10} {r['speedup']:>7}x"
        )
    print(
        f"tokenizer load: {load_seconds:.2f} s; pack fill ratio: {stats.fill_ratio():.4f} over {len(packs)} packs"
    )

    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "tiktoken": tiktoken.__version__,
        },
        "data": os.path.basename(args.data),
        "copies": args.copies,
        "repeat": args.repeat,
        "tokenizer_load_seconds": round(load_seconds, 3),
        "pack_fill_ratio": round(stats.fill_ratio(), 6),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
