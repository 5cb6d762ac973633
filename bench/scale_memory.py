"""Peak memory of a whole `vlcurate clean --workers N` process tree against input size, caption-only.

    python bench/scale_memory.py [--sizes 125000 250000 500000 1000000] [--workers 2]
                                 [--variants full no-dedup all-rejected] [--probe-sizes N ...]
                                 [--per-file 25000] [--interval 0.2]

Writes N records of real web captions (tests/data/web_captions_10k.parquet, each with a numeric suffix so
that the captions are distinct as written; clean_patterns strips the number from ~2%, which dedup then
meets) as JSONL files of --per-file records each, then runs `python -m vlcurate.cli clean --workers N` on
them in a child process, sampling VmRSS of the launcher and every process below it (its Beam workers)
from /proc every --interval seconds: the peak of their sum (tree), of the launcher, of the workers' sum
and of the largest single process, when the tree peaked, the kernel's ru_maxrss of the launcher and the
workers it reaped (exact, not sampled), wall time, pairs/s and the 1-minute load average as the run began
(the machine may be shared). Variants, to tell which shuffle holds the memory (Beam's local runner keeps
every shuffle in memory):
- full: the default text chain and dedup; ~92% of the pairs are kept and go through dedup's and the shard
  writer's shuffles;
- no-dedup: `--disable dedup`: the shard writer's shuffle only;
- all-rejected: `length` asks for 1,000 words (or ideographs), so the text steps reject every pair and it
  goes through the rejects' shuffle only.
Prints a table with each variant's least-squares slope (MB per 100k records) and writes
bench/results/scale_memory.json. VmRSS counts shared pages (libraries) once per process, so the sum
slightly overstates the tree; the slope is unaffected.

`--record-bytes` prints instead what one kept record weighs in a shuffle (its pickled share of a batch of
512, as Beam encodes PairBatches), after the text steps on 10k of the records above: caption-only, and as
an image pair whose bytes were detached (a tar span with its CRC and digest, size, format, CLIP score)
plus the image bytes when they are carried.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_results

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "web_captions_10k.parquet"
VARIANTS = ("full", "no-dedup", "all-rejected")


def captions() -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(DATA, columns=["TEXT"]).column("TEXT").to_pylist()


def write_records(path: Path, start: int, stop: int, texts: list[str]) -> None:
    """Records start..stop-1: caption i is web caption i mod 10k with " i" appended (distinct)."""
    with path.open("w") as fh:
        for i in range(start, stop):
            record = {"key": f"{i:09d}", "text": f"{texts[i % len(texts)]} {i}"}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def input_files(folder: Path, n: int, per_file: int, texts: list[str]) -> list[str]:
    """The first n records as whole files of per_file records (shared by every size), plus a tail file."""
    paths = []
    for part in range(n // per_file):
        path = folder / f"part-{part:05d}.jsonl"
        if not path.exists():
            write_records(path, part * per_file, (part + 1) * per_file, texts)
        paths.append(str(path))
    if n % per_file:
        tail = folder / f"tail-{n}.jsonl"
        write_records(tail, n - n % per_file, n, texts)
        paths.append(str(tail))
    return paths


def tree_rss_kb(root: int) -> dict[int, int]:
    """VmRSS (kB) of `root` and every process below it, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone since the scan
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # the name may hold spaces or ')'
        children.setdefault(ppid, []).append(int(entry.name))
    rss, todo = {}, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        rss[pid] = int(line.split()[1])
                        break
        except OSError:
            pass
    return rss


def run_sampled(command: list[str], log: Path, interval: float) -> dict:
    """Runs `command`, sampling its process tree until it exits; peaks in MB, wall seconds, and the
    kernel's ru_maxrss of the launcher and the workers it reaped (wait4: exact, not sampled)."""
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    peak_sum = peak_single = peak_launcher = peak_workers = peak_at = 0.0
    most_processes = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        rss = tree_rss_kb(proc.pid)
        total = sum(rss.values())
        if total > peak_sum:
            peak_sum, peak_at = total, time.perf_counter() - started
        peak_single = max(peak_single, max(rss.values(), default=0))
        peak_launcher = max(peak_launcher, rss.get(proc.pid, 0))
        peak_workers = max(peak_workers, total - rss.get(proc.pid, 0))
        most_processes = max(most_processes, len(rss))
        time.sleep(interval)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode != 0:
        raise SystemExit(f"vlcurate clean failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return {
        "seconds": seconds,
        "peak_tree_mb": peak_sum / 1024,
        "peak_single_mb": peak_single / 1024,
        "peak_launcher_mb": peak_launcher / 1024,
        "peak_workers_mb": peak_workers / 1024,
        "peak_tree_at_s": peak_at,
        "processes": most_processes,
        "maxrss_mb": usage.ru_maxrss / 1024,
    }


def config_for(variant: str, paths: list[str], out: Path) -> dict:
    source = {
        "name": "web",
        "format": "jsonl",
        "paths": paths,
        "caption_column": "text",
        "image_column": None,
    }
    config: dict = {"sources": [source], "output": {"dir": str(out), "overwrite": True}}
    if variant == "all-rejected":  # no caption is this long: every pair is rejected by `length`
        words, cjk = {"min_words": 1000, "max_words": 1000}, {"min_cjk_chars": 1000, "max_cjk_chars": 1000}
        config["steps"] = {"length": {**words, **cjk}}
    return config


def record_bytes(texts: list[str]) -> dict[str, float]:
    """Pickled bytes per kept record in batches of 512, caption-only and as a detached image pair."""
    import pickle

    from vlcurate.filters.chain import DEFAULT_CHAIN
    from vlcurate.filters.registry import build_step
    from vlcurate.filters.runner import StepRunner
    from vlcurate.schemas.batch import PairBatch, batched
    from vlcurate.schemas.record import ImageSpan, Pair

    text_steps = DEFAULT_CHAIN[: DEFAULT_CHAIN.index("probe_image")]
    runner = StepRunner({"web": [build_step(name) for name in text_steps]})
    kept: list[Pair] = []
    for batch in batched(
        Pair(
            uid=f"web/{i:09d}",
            source="web",
            caption=f"{t} {i}",
            caption_raw=f"{t} {i}",
            meta={"key": f"{i:09d}"},
        )
        for i, t in enumerate(texts)
    ):
        kept.extend(runner.run(batch))

    def per_record() -> float:
        chunks = [PairBatch(kept[i : i + 512]) for i in range(0, len(kept), 512)]
        return sum(len(pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL)) for c in chunks) / len(kept)

    caption_only = per_record()
    for pair in kept:  # what detach_images leaves of a WebDataset pair that probe_image and CLIP saw
        pair.image_span = ImageSpan(
            "/data/shards/000123.tar", 123_456_789, 40_000, crc32=2**31, digest="ab" * 16
        )
        pair.image_ref = f"/data/shards/000123.tar#{pair.meta['key']}.jpg"
        pair.width, pair.height, pair.image_format = 512, 384, "JPEG"
        pair.scores["clip"] = 0.3123
    return {"records": len(kept), "caption_only": caption_only, "image_detached": per_record()}


def slope_per_100k(rows: list[dict], field: str) -> float | None:
    """Least-squares slope of `field` against records, in MB per 100k records."""
    if len({r["records"] for r in rows}) < 2:
        return None
    xs, ys = [r["records"] for r in rows], [r[field] for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return round(slope * 100_000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[125_000, 250_000, 500_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--probe-sizes",
        type=int,
        nargs="+",
        help="sizes for the variants other than full (default: the smallest and largest of --sizes)",
    )
    parser.add_argument("--per-file", type=int, default=25_000, help="records per input file")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--record-bytes", action="store_true", help="print a record's shuffle bytes only")
    args = parser.parse_args()
    import yaml

    texts = captions()
    if args.record_bytes:
        sizes = record_bytes(texts)
        print(f"{sizes['records']:,} kept records: {sizes['caption_only']:.0f} B caption-only, ", end="")
        print(
            f"{sizes['image_detached']:.0f} B as an image pair without its bytes (+ the image when carried)"
        )
        return
    probe_sizes = set(args.probe_sizes or [min(args.sizes), max(args.sizes)])
    planned = {n: [v for v in args.variants if v == "full" or n in probe_sizes] for n in args.sizes}
    rows: list[dict] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "in")
        folder.mkdir()
        for n in sorted(n for n in planned if planned[n]):
            paths = input_files(folder, n, args.per_file, texts)
            input_mb = sum(os.path.getsize(p) for p in paths) / 2**20
            for variant in planned[n]:
                out, config = Path(tmp, "out"), Path(tmp, "clean.yaml")
                config.write_text(yaml.safe_dump(config_for(variant, paths, out)))
                command = [sys.executable, "-m", "vlcurate.cli", "clean", "--config", str(config)]
                command += ["--workers", str(args.workers), "--no-progress"]
                if variant == "no-dedup":
                    command += ["--disable", "dedup"]
                load = os.getloadavg()[0]  # the machine is shared: how busy it was as the run began
                run = run_sampled(command, Path(tmp, "clean.log"), args.interval)
                totals = json.loads((out / "stats.json").read_text())["totals"]
                if totals["read"] != n:
                    raise SystemExit(f"{variant} at {n}: read {totals['read']} of {n} records")
                rows.append(
                    {
                        "variant": variant,
                        "records": n,
                        "input_mb": round(input_mb, 1),
                        "kept": totals["kept"],
                        "rejected": totals["rejected"],
                        "seconds": round(run["seconds"], 1),
                        "pairs_per_s": round(n / run["seconds"]),
                        "peak_tree_mb": round(run["peak_tree_mb"]),
                        "peak_single_mb": round(run["peak_single_mb"]),
                        "peak_launcher_mb": round(run["peak_launcher_mb"]),
                        "peak_workers_mb": round(run["peak_workers_mb"]),
                        "peak_tree_at_s": round(run["peak_tree_at_s"], 1),
                        "maxrss_mb": round(run["maxrss_mb"]),
                        "processes": run["processes"],
                        "workers": args.workers,
                        "load_1min": round(load, 1),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    total_seconds = time.perf_counter() - began
    for variant in args.variants:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        largest = max(mine, key=lambda r: r["records"])
        for field in ("peak_tree_mb", "peak_launcher_mb", "peak_workers_mb", "peak_single_mb"):
            largest[f"{field.removesuffix('_mb')}_mb_per_100k"] = slope_per_100k(mine, field)
    header = f"{'variant':13} {'records':>9} {'kept':>9} {'seconds':>8} {'pairs/s':>8} {'tree MB':>8}"
    print(f"{header} {'launcher MB':>12} {'workers MB':>11} {'largest MB':>11} {'tree MB / 100k':>15}")
    for r in rows:
        print(
            f"{r['variant']:13} {r['records']:>9,} {r['kept']:>9,} {r['seconds']:>8} {r['pairs_per_s']:>8,} "
            f"{r['peak_tree_mb']:>8} {r['peak_launcher_mb']:>12} {r['peak_workers_mb']:>11} {r['peak_single_mb']:>11} "
            f"{r.get('peak_tree_mb_per_100k', '') or '':>15}"
        )
    print(f"simulation total: {total_seconds:.0f} s (inputs written included)")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    path = write_results("scale_memory", rows, machine)
    with open(path) as fh:  # the whole simulation's time, beside the rows
        results = json.load(fh)
    with open(path, "w") as fh:
        json.dump({**results, "total_seconds": round(total_seconds)}, fh, indent=1)
    print(path)


if __name__ == "__main__":
    main()
