"""Whole-process text cleaning: `vlcurate clean` (caption-only source) vs Data-Juicer's `dj-process`.

    python bench/text_process.py --dj-process PATH/TO/venv/bin/dj-process [--n 100000] [--repeats 3]

Both read the same JSONL of web captions (tests/data/web_captions_10k.parquet repeated to --n) and write
their cleaned output; wall time and peak resident memory of each whole process (start-up included) are
measured in the same run; with --repeats the commands alternate and each row reports its median run
(every run is kept in the JSON). Data-Juicer runs its equivalent five operators with np=1; vlcurate runs its
text chain (normalize, HTML, patterns, tags, script, emoji, length, language, dedup) in-process, and once
more with only the steps that match Data-Juicer's five (tags, emoji, language and dedup disabled; stats,
report and reject files are still written), for a like-for-like row.
Writes bench/results/text_process.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "web_captions_10k.parquet"
RESULTS = Path(__file__).resolve().parent / "results" / "text_process.json"
# Peak RSS of a command and its children, measured by a tiny wrapper process.
MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(r.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)
# vlcurate's steps without a counterpart among DJ_OPS.
LIKE_DJ_DISABLED = "strip_tags,emoji,language,dedup"
DJ_OPS = [
    "fix_unicode_mapper",
    "clean_html_mapper",
    "clean_links_mapper",
    "special_characters_filter",
    "text_length_filter",
]


def measure(cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True)
    code, seconds, rss_kb = out.stdout.split()
    if code != "0":
        raise RuntimeError(f"{cmd[0]} failed with exit code {code}")
    return {"seconds": round(float(seconds), 2), "peak_rss_mb": round(int(rss_kb) / 1024, 1)}


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time, plus every run's seconds."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_seconds": [r["seconds"] for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dj-process", required=True, help="path of Data-Juicer's dj-process executable")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each command, alternating")
    args = parser.parse_args()
    import pyarrow.parquet as pq

    texts = pq.read_table(DATA, columns=["TEXT"]).column("TEXT").to_pylist()
    texts = (texts * (args.n // len(texts) + 1))[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "captions.jsonl")
        data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
        ours_cfg = Path(tmp, "vlcurate.yaml")
        ours_cfg.write_text(
            json.dumps(
                {
                    "sources": [
                        {
                            "name": "web",
                            "format": "jsonl",
                            "paths": [str(data)],
                            "caption_column": "text",
                            "image_column": None,
                        }
                    ],
                    "output": {"dir": str(Path(tmp, "ours")), "pairs_per_shard": 50000},
                }
            )
        )
        dj_cfg = Path(tmp, "dj.yaml")
        dj_cfg.write_text(
            json.dumps(
                {
                    "project_name": "bench",
                    "dataset_path": str(data),
                    "export_path": str(Path(tmp, "dj.jsonl")),
                    "np": 1,
                    "text_keys": "text",
                    "process": [{op: {}} for op in DJ_OPS],
                }
            )
        )
        vlcurate = str(Path(sys.executable).with_name("vlcurate"))
        commands = {
            "data-juicer dj-process": [args.dj_process, "--config", str(dj_cfg)],
            "vlcurate clean": [vlcurate, "clean", "--config", str(ours_cfg), "--no-progress", "--overwrite"],
            "vlcurate clean, DJ's 5 steps": [
                vlcurate,
                "clean",
                "--config",
                str(ours_cfg),
                "--no-progress",
                "--overwrite",
                "--disable",
                LIKE_DJ_DISABLED,
            ],
        }
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                runs[name].append(measure(cmd))
        rows = {name: median_run(found) for name, found in runs.items()}
    base = rows["data-juicer dj-process"]
    print(f"{args.n:,} captions, whole process, {os.cpu_count()} cores\n")
    print(f"{'command':<30} {'seconds':>8} {'captions/s':>11} {'peak RSS MB':>12} {'speed vs DJ':>12}")
    for name, row in rows.items():
        row["captions_per_s"] = round(args.n / row["seconds"], 1)
        row["speedup_vs_dj"] = round(base["seconds"] / row["seconds"], 2)
        print(
            f"{name:<30} {row['seconds']:>8} {row['captions_per_s']:>11,.0f} {row['peak_rss_mb']:>12} "
            f"{row['speedup_vs_dj']:>11}x"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "n": args.n, "rows": rows}, indent=1
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
