"""The image pipeline's cost outside the model: kept images carried through the writer's shuffle vs read
back from the input tars (output.reread_images, pipelines/image_spans.py).

    python bench/e2e_cpu.py [--pairs 16000] [--workers 1 2] [--repeats 3]

512x384 JPEG scenes in WebDataset tars (as bench/clip_gpu.py's e2e makes them) -> `vlcurate clean` with
probe_image only (every pair kept) -> shards. Each run is a fresh process (peak RSS is per run); the arms
alternate so machine noise hits both. Writes bench/results/e2e_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from report import write_results

ARMS = {"carry": False, "reread": True}  # arm: output.reread_images


def one_run(tars: str, out: str, workers: int, reread: bool) -> dict:
    from vlcurate.filters.chain import DEFAULT_CHAIN
    from vlcurate.pipelines.clean import run_clean
    from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig

    config = CleanConfig(
        sources=[SourceConfig(name="bench", format="webdataset", paths=[os.path.join(tars, "*.tar")])],
        output=OutputConfig(dir=out, overwrite=True, pairs_per_shard=5000, reread_images=reread),
        disable=[s for s in DEFAULT_CHAIN if s != "probe_image"],
        workers=workers,
    )
    started = time.perf_counter()
    totals = run_clean(config, progress=False)["totals"]
    seconds = time.perf_counter() - started
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return {"seconds": seconds, "kept": totals["kept"], "read": totals["read"], "peak_mb": peak_kb / 1024}


def shard_digest(out: str) -> str:
    """One digest of every shard file: both arms must write the same bytes."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    folder = os.path.join(out, "shards")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as fh:
            digest.update(name.encode() + fh.read())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=16000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=4, metavar=("TARS", "OUT", "WORKERS", "ARM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        tars, out, workers, arm = args.one
        print(json.dumps(one_run(tars, out, int(workers), ARMS[arm])))
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from clip_gpu import make_jpeg_tars

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tars = os.path.join(tmp, "tars")
        make_jpeg_tars(tars, args.pairs)
        input_mb = sum(os.path.getsize(os.path.join(tars, n)) for n in os.listdir(tars)) / 2**20
        for workers in args.workers:
            runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
            digests = {}
            for _ in range(args.repeats):
                for arm in ARMS:
                    out = os.path.join(tmp, f"out-{arm}")
                    done = subprocess.run(
                        [sys.executable, __file__, "--one", tars, out, str(workers), arm],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    runs[arm].append(json.loads(done.stdout.strip().splitlines()[-1]))
                    digests[arm] = shard_digest(out)
            if len(set(digests.values())) != 1:
                raise SystemExit(f"the arms wrote different shards: {digests}")
            for arm, results in runs.items():
                seconds = statistics.median(r["seconds"] for r in results)
                rows.append(
                    {
                        "arm": arm,
                        "workers": workers,
                        "pairs": args.pairs,
                        "input_mb": round(input_mb),
                        "median_s": round(seconds, 2),
                        "runs_s": [round(r["seconds"], 2) for r in results],
                        "pairs_s": round(args.pairs / seconds),
                        "peak_rss_mb": round(max(r["peak_mb"] for r in results)),
                        "all_kept": all(r["kept"] == r["read"] == args.pairs for r in results),
                    }
                )
            base, new = rows[-2], rows[-1]
            new["speedup_vs_carry"] = round(base["median_s"] / new["median_s"], 2)
    print(f"{'arm':8} {'workers':>7} {'median s':>9} {'pairs/s':>8} {'peak RSS MB':>12} {'x carry':>8}")
    for r in rows:
        print(
            f"{r['arm']:8} {r['workers']:>7} {r['median_s']:>9} {r['pairs_s']:>8} {r['peak_rss_mb']:>12} "
            f"{r.get('speedup_vs_carry', ''):>8}"
        )
    path = write_results("e2e_cpu", rows, f"{platform.machine()}, {os.cpu_count()} cores")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
