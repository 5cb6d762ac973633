"""Text-stage throughput, single core, in-process: captions/s through the cleaning steps on Pair records.

Runs the 10k web alt texts (tests/data/web_captions_10k.parquet) repeated to >= --n captions through
- `text stage`: every text step of DEFAULT_CHAIN (normalize_caption ... language) through the pipeline's
  own step engine (filters/runner.py, which RunSteps wraps: batches of 512, stats included, no Beam; a
  pair stops at its first reject),
- `text stage w/o language`: the same without the language tag, the counterpart of the Data-Juicer
  chain below (which has no language identification),
- one row per step (time spent inside that step over the whole run, captions it saw),
and, with `--dj-python PATH/TO/venv/bin/python` (a venv with py-data-juicer), Data-Juicer's equivalent
chain (fix_unicode_mapper, clean_html_mapper, clean_links_mapper, special_characters_filter,
text_length_filter) in that venv through `process_batched` / `compute_stats_batched` in one process,
measured in the same run.

Pair records are built before the clock starts (reading builds them in the pipeline); the language
model is loaded before it too (its load time is reported). Each variant runs --repeats times; the best
run is reported (other processes on a shared machine only ever slow a run down). Prints a table and
writes bench/results/text_stage.json.

    python bench/text_stage.py [--n 100000] [--dj-python PATH/TO/venv/bin/python]
"""

from __future__ import annotations

import os
import sys

# bench/ is sys.path[0] when this file runs as a script; a bench module named like a standard-library one
# (a bench/tokenize.py once did) must not shadow it.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]
# One core means one thread too: no BLAS thread pool behind the language model's small products.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent / "tests" / "data" / "web_captions_10k.parquet"
DJ_BATCH = 1000


def load_captions(path: Path, n: int) -> list[str]:
    import pyarrow.parquet as pq

    texts = pq.read_table(path, columns=["TEXT"]).column("TEXT").to_pylist()
    reps = -(-n // len(texts))
    return (texts * reps)[: max(n, len(texts))]


def pin_one_core(pin: bool) -> None:
    # Single core: the pipeline scales by workers, so per-core speed is what we compare. Pinning is
    # optional: on a shared machine a pinned process cannot move away from a busy core.
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


# --- vlcurate ---------------------------------------------------------------------------------------------
def run_ours(texts: list[str], step_names: list[str]) -> float:
    """The pipeline's own step engine (StepRunner, with its stats bookkeeping) over batches, no Beam."""
    from vlcurate.filters.registry import build_step
    from vlcurate.filters.runner import StepRunner
    from vlcurate.schemas.batch import batched
    from vlcurate.schemas.record import Pair

    runner = StepRunner({"web": [build_step(name) for name in step_names]})
    pairs = [Pair(uid=f"web/{i}", source="web", caption=t, caption_raw=t) for i, t in enumerate(texts)]
    batches = list(batched(pairs))
    start = time.perf_counter()
    for batch in batches:
        runner.run(batch)
    return time.perf_counter() - start


def per_step(texts: list[str], step_names: list[str]) -> dict[str, dict[str, float]]:
    from vlcurate.filters.registry import build_step
    from vlcurate.schemas.record import Pair

    steps = [build_step(name) for name in step_names]
    spent = dict.fromkeys(step_names, 0.0)
    seen = dict.fromkeys(step_names, 0)
    clock = time.perf_counter
    for i, text in enumerate(texts):
        pair = Pair(uid=f"web/{i}", source="web", caption=text, caption_raw=text)
        for step in steps:
            start = clock()
            step.apply(pair)
            spent[step.name] += clock() - start
            seen[step.name] += 1
            if pair.reject is not None:
                break
    return {name: {"seconds": spent[name], "seen": seen[name]} for name in step_names}


# --- Data-Juicer (runs in its own venv: `--dj-worker`) -----------------------------------------------------
def dj_worker(data: Path, n: int, repeats: int, pin: bool) -> None:
    pin_one_core(pin)
    from data_juicer.ops.filter.special_characters_filter import SpecialCharactersFilter
    from data_juicer.ops.filter.text_length_filter import TextLengthFilter
    from data_juicer.ops.mapper.clean_html_mapper import CleanHtmlMapper
    from data_juicer.ops.mapper.clean_links_mapper import CleanLinksMapper
    from data_juicer.ops.mapper.fix_unicode_mapper import FixUnicodeMapper
    from data_juicer.utils.constant import Fields

    texts = load_captions(data, n)
    ops = [
        FixUnicodeMapper(),
        CleanHtmlMapper(),
        CleanLinksMapper(),
        SpecialCharactersFilter(),
        TextLengthFilter(),
    ]

    def run() -> tuple[float, int]:
        batches = [
            {"text": texts[i : i + DJ_BATCH], Fields.stats: [{} for _ in texts[i : i + DJ_BATCH]]}
            for i in range(0, len(texts), DJ_BATCH)
        ]
        kept = 0
        start = time.perf_counter()
        for batch in batches:
            for op in ops:
                if hasattr(op, "compute_stats_batched"):  # a filter: stats, then keep the passing rows
                    batch = op.compute_stats_batched(batch)
                    keep = list(op.process_batched(batch))
                    batch = {key: [v for v, k in zip(values, keep) if k] for key, values in batch.items()}
                else:
                    batch = op.process_batched(batch)
            kept += len(batch["text"])
        return time.perf_counter() - start, kept

    run()  # first use of an op may install its extras and import them: not part of the measurement
    times, kept = [], 0
    for _ in range(repeats):
        seconds, kept = run()
        times.append(seconds)
    import data_juicer

    print(json.dumps({"times": times, "kept": kept, "n": len(texts), "version": data_juicer.__version__}))


def run_dj(dj_python: str, data: Path, n: int, repeats: int, pin: bool) -> dict:
    cmd = [dj_python, str(Path(__file__).resolve()), "--dj-worker", "--data", str(data), "--n", str(n)]
    cmd += ["--repeats", str(repeats)] + (["--pin"] if pin else [])
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- main ---------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=100_000, help="captions per run (the 10k repeated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dj-python", help="python of a venv with py-data-juicer, to measure it too")
    parser.add_argument("--pin", action="store_true", help="pin the process(es) to one CPU core")
    parser.add_argument("--dj-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "text_stage.json")
    args = parser.parse_args()
    if args.dj_worker:
        dj_worker(args.data, args.n, args.repeats, args.pin)
        return

    pin_one_core(args.pin)
    from vlcurate.filters import language
    from vlcurate.filters.chain import DEFAULT_CHAIN

    text_steps = list(DEFAULT_CHAIN[: DEFAULT_CHAIN.index("probe_image")])
    texts = load_captions(args.data, args.n)
    start = time.perf_counter()
    language.identify_language("load the model")
    model_load = time.perf_counter() - start

    variants = {
        "text stage": text_steps,
        "text stage w/o language": [s for s in text_steps if s != "language"],
    }
    rows: dict[str, dict] = {}
    dj = run_dj(args.dj_python, args.data, args.n, args.repeats, args.pin) if args.dj_python else None
    for name, steps in variants.items():
        times = [run_ours(texts, steps) for _ in range(args.repeats)]
        rows[name] = {"steps": steps, "times": times, "captions_per_s": len(texts) / min(times)}
    if dj is not None:
        rows["data-juicer chain"] = {
            "steps": [
                "fix_unicode_mapper",
                "clean_html_mapper",
                "clean_links_mapper",
                "special_characters_filter",
                "text_length_filter",
            ],
            "times": dj["times"],
            "captions_per_s": dj["n"] / min(dj["times"]),
            "version": dj["version"],
            "kept": dj["kept"],
        }
    steps = per_step(texts, text_steps)

    print(
        f"{len(texts):,} captions, 1 core, best of {args.repeats} (language model load {model_load:.2f} s)\n"
    )
    print(f"{'chain':34s} {'captions/s':>12s} {'vs data-juicer':>15s}")
    dj_rate = rows.get("data-juicer chain", {}).get("captions_per_s")
    for name, row in rows.items():
        ratio = f"{row['captions_per_s'] / dj_rate:.2f}x" if dj_rate else "-"
        print(f"{name:34s} {row['captions_per_s']:12,.0f} {ratio:>15s}")
    print(f"\n{'step (one run, timed per call)':34s} {'seen':>10s} {'us/caption seen':>16s} {'share':>7s}")
    total = sum(s["seconds"] for s in steps.values())
    for name, s in steps.items():
        per = s["seconds"] / s["seen"] * 1e6 if s["seen"] else 0.0
        print(f"{name:34s} {s['seen']:10,d} {per:16.2f} {s['seconds'] / total:7.1%}")

    result = {
        "captions": len(texts),
        "repeats": args.repeats,
        "language_model_load_s": model_load,
        "chains": rows,
        "per_step": steps,
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
