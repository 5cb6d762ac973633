"""I/O benchmark: pairs/s for read -> probe_image -> write on synthetic data, in-process vs --workers 2.

    python bench/io.py [--n 4000] [--formats webdataset parquet jsonl]

Prints a table and writes bench/results/io.json. Whole-pipeline wall time, Beam start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from vlcurate.filters.chain import DEFAULT_CHAIN
from vlcurate.pipelines.clean import run_clean
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.synth.dataset import write_synthetic_dataset

PATHS = {"webdataset": "wds/*.tar", "parquet": "parquet/*.parquet", "jsonl": "jsonl/*.jsonl"}


def measure(data: str, fmt: str, workers: int, out: str) -> dict:
    keep = {"probe_image"}
    config = CleanConfig(
        sources=[SourceConfig(name="synth", format=fmt, paths=[os.path.join(data, PATHS[fmt])])],
        output=OutputConfig(dir=out, overwrite=True),
        disable=[s for s in DEFAULT_CHAIN if s not in keep],
        workers=workers,
    )
    start = time.perf_counter()
    stats = run_clean(config, progress=False)
    seconds = time.perf_counter() - start
    read = stats["totals"]["read"]
    return {
        "format": fmt,
        "workers": workers,
        "pairs": read,
        "seconds": round(seconds, 2),
        "pairs_per_s": round(read / seconds, 1),
    }


def probe_speed(n: int = 1000) -> list[dict]:
    """us per image of the JPEG header probe: the own marker walk vs PIL's parse, on 512x384 scenes."""
    import io as bytes_io
    import random

    from vlcurate.filters.image_probe import header_size, pil_header_size
    from vlcurate.model.scenes import random_scene, render

    rng = random.Random(3)
    jpegs = []
    for _ in range(n):
        buffer = bytes_io.BytesIO()
        render(random_scene(rng), 512, 384).save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    rows = []
    for name, fn in (("jpeg_probe_own", header_size), ("jpeg_probe_pil", pil_header_size)):
        best = min(_timed(fn, jpegs) for _ in range(3))
        rows.append({"probe": name, "images": n, "us_per_image": round(best / n * 1e6, 2)})
    return rows


def _timed(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--formats", nargs="+", default=["webdataset", "parquet", "jsonl"])
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "io.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        write_synthetic_dataset(data, n=args.n, seed=0)
        rows = [
            measure(data, fmt, workers, os.path.join(tmp, f"out-{fmt}-{workers}"))
            for fmt in args.formats
            for workers in (1, 2)
        ]
    print(f"{'format':<11} {'workers':>7} {'pairs':>7} {'seconds':>8} {'pairs/s':>9} {'vs 1 worker':>11}")
    for row in rows:
        base = next(r for r in rows if r["format"] == row["format"] and r["workers"] == 1)
        row["speedup_vs_1_worker"] = round(row["pairs_per_s"] / base["pairs_per_s"], 2)
        print(
            f"{row['format']:<11} {row['workers']:>7} {row['pairs']:>7} {row['seconds']:>8} "
            f"{row['pairs_per_s']:>9} {row['speedup_vs_1_worker']:>10}x"
        )
    probes = probe_speed()
    for row in probes:
        print(f"{row['probe']:<16} {row['us_per_image']:>6} us per image")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "n": args.n,
                "rows": rows,
                "probe": probes,
            },
            fh,
            indent=1,
        )


if __name__ == "__main__":
    main()
