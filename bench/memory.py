"""Peak memory of `vlcurate clean` against input size, per input format: memory must stay flat as the input
grows, which holds where kept images are read back at the writer instead of carried through its shuffle
(pipelines/image_spans.py; Beam's local runner holds a shuffle in memory).

    python bench/memory.py [--pairs 2000 20000] [--formats webdataset parquet jsonl csv parquet-carried]

Makes 256x256 JPEGs (distinct, ~11 KB each) and writes the same pairs as WebDataset tars, Parquet with the
image bytes in a column, JSONL + an image folder and CSV + an image folder (1,000 records per file), then
runs `python -m vlcurate.cli clean --disable clip_score,clip_filter` on each in a child process of a fresh
wrapper process: the wrapper's RUSAGE_CHILDREN ru_maxrss is the run's peak RSS (the largest process of the
run's tree; local runs are one process). `parquet-carried` is Parquet with `output.reread_images: false`,
the way Parquet images travelled before they were read back. Every run must keep every pair. Prints a table
(with MB per 1,000 extra pairs between the smallest and largest input) and writes
bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from report import write_results

PER_FILE = 1000
FORMATS = ("webdataset", "parquet", "jsonl", "csv", "parquet-carried")


def make_images(n: int) -> list[bytes]:
    """n distinct 256x256 JPEGs: smooth random colour fields (a 16x16 random image scaled up)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        small.resize((256, 256), Image.BILINEAR).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def caption(i: int) -> str:
    return f"A photo of scene number {i} with coloured shapes on a plain background"


def write_inputs(folder: str, images: list[bytes]) -> dict[str, dict]:
    """Every format's input of the same pairs; returns {format: source config}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlcurate.formatters.webdataset import TarShardWriter

    n = len(images)
    chunks = [range(start, min(start + PER_FILE, n)) for start in range(0, n, PER_FILE)]
    for name in ("wds", "parquet", "rows", "rows/images"):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
    for part, rows in enumerate(chunks):
        with open(os.path.join(folder, "wds", f"{part:05d}.tar"), "wb") as fh, TarShardWriter(fh) as writer:
            for i in rows:
                meta = json.dumps({"key": f"{i:09d}"}).encode()
                writer.add(f"{i:09d}", {"jpg": images[i], "txt": caption(i).encode(), "json": meta})
        table = pa.table(
            {
                "key": [f"{i:09d}" for i in rows],
                "caption": [caption(i) for i in rows],
                "image": pa.array([images[i] for i in rows], pa.binary()),
            }
        )
        pq.write_table(table, os.path.join(folder, "parquet", f"{part:05d}.parquet"))
        with (
            open(os.path.join(folder, "rows", f"{part:05d}.jsonl"), "w") as jsonl,
            open(os.path.join(folder, "rows", f"{part:05d}.csv"), "w", newline="") as csv_file,
        ):
            writer = csv.writer(csv_file)
            writer.writerow(["key", "caption", "image"])
            for i in rows:
                path = f"images/{i:09d}.jpg"
                with open(os.path.join(folder, "rows", path), "wb") as fh:
                    fh.write(images[i])
                jsonl.write(json.dumps({"key": f"{i:09d}", "caption": caption(i), "image": path}) + "\n")
                writer.writerow([f"{i:09d}", caption(i), path])
    paths = {
        "webdataset": ("webdataset", "wds/*.tar"),
        "parquet": ("parquet", "parquet/*.parquet"),
        "jsonl": ("jsonl", "rows/*.jsonl"),
        "csv": ("csv", "rows/*.csv"),
        "parquet-carried": ("parquet", "parquet/*.parquet"),
    }
    return {
        name: {"name": "bench", "format": fmt, "paths": [os.path.join(folder, pattern)]}
        for name, (fmt, pattern) in paths.items()
    }


def input_mb(source: dict) -> float:
    import glob

    files = glob.glob(source["paths"][0])
    if source["format"] in ("jsonl", "csv"):
        files += glob.glob(os.path.join(os.path.dirname(source["paths"][0]), "images", "*.jpg"))
    return sum(os.path.getsize(f) for f in files) / 2**20


def one_run(config: str) -> dict:
    """`vlcurate clean` on a config in a child process; its peak RSS and wall time."""
    command = [sys.executable, "-m", "vlcurate.cli", "clean", "--config", config]
    command += ["--disable", "clip_score,clip_filter", "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vlcurate clean failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # this wrapper's only child tree
    return {"seconds": seconds, "peak_mb": peak_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--one", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one)))
        return
    import yaml

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(max(args.pairs))
        for pairs in sorted(args.pairs):
            folder = os.path.join(tmp, f"in-{pairs}")
            sources = write_inputs(folder, images[:pairs])
            for name in args.formats:
                out = os.path.join(tmp, "out")
                config = os.path.join(tmp, "clean.yaml")
                output = {"dir": out, "overwrite": True, "reread_images": name != "parquet-carried"}
                with open(config, "w") as fh:
                    yaml.safe_dump({"sources": [sources[name]], "output": output}, fh)
                done = subprocess.run(
                    [sys.executable, __file__, "--one", config], check=True, capture_output=True, text=True
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                with open(os.path.join(out, "stats.json")) as fh:
                    totals = json.load(fh)["totals"]
                if totals["kept"] != pairs or totals["read"] != pairs:
                    raise SystemExit(f"{name} at {pairs}: kept {totals['kept']} of {totals['read']} read")
                rows.append(
                    {
                        "format": name,
                        "pairs": pairs,
                        "input_mb": round(input_mb(sources[name]), 1),
                        "seconds": round(result["seconds"], 1),
                        "peak_rss_mb": round(result["peak_mb"]),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    small, large = min(args.pairs), max(args.pairs)
    peaks = {(r["format"], r["pairs"]): r["peak_rss_mb"] for r in rows}
    for row in rows:
        if row["pairs"] == large and large > small:
            extra = peaks[(row["format"], large)] - peaks[(row["format"], small)]
            row["mb_per_1k_extra_pairs"] = round(extra / ((large - small) / 1000), 1)
    print(
        f"{'format':16} {'pairs':>6} {'input MB':>9} {'seconds':>8} {'peak RSS MB':>12} {'MB / 1k pairs':>14}"
    )
    for r in rows:
        print(
            f"{r['format']:16} {r['pairs']:>6} {r['input_mb']:>9} {r['seconds']:>8} {r['peak_rss_mb']:>12} "
            f"{r.get('mb_per_1k_extra_pairs', ''):>14}"
        )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(write_results("memory", rows, machine))


if __name__ == "__main__":
    main()
