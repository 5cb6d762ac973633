"""SFT dialogue building speed: construction + split + render + validation with exact token counts.

    python bench/sft.py [--data CAPTIONS.parquet] [--repeat 3] [--no-job]

--data defaults to tests/data/web_captions_10k.parquet (10k real web alt texts, vendored with the tests).

Work (built in memory, no image files): every web caption of --data as a caption dialogue (image paths
`images/ab/<20 hex>.jpg`, the job's naming), synthetic scenes as VQA dialogues (3-5 QAs), grounding dialogues
(1-3 phrases) and multi-image dialogues (2-3 VQA images), and pure-text dialogues (1-3 exchanges).
Rows (dialogues/s, median of --repeat runs, the tokenizer already loaded in every process):
- one row per kind and a `mixed` row, in 1 process and in a 2-process pool (chunks of 500 dialogues; the
  workers return counts, so the numbers are compute only);
- `job`: the whole `vlcurate sft` Beam job on demo inputs (images read, hashed and copied, shards written)
  with workers=1 and workers=2, once each (includes Beam's start-up).
Prints a table and writes bench/results/sft.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import random
import shutil
import tempfile
import time

import pyarrow.parquet as pq
from timing import timed, warm_tokenizer

from vlcurate.formatters.sft import SftSample, build_samples
from vlcurate.formatters.sft_records import caption_item, grounding_item, text_dialogue, vqa_item
from vlcurate.formatters.sft_strategies import multi_image_dialogue, single_dialogue
from vlcurate.formatters.stage1 import RejectSample
from vlcurate.model.qwen_tokenizer import get_tokenizer
from vlcurate.model.scenes import random_scene
from vlcurate.synth.scene_tasks import scene_phrases, scene_qas, text_dialogues

DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "web_captions_10k.parquet"
)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sft.json")
CHUNK = 500  # most dialogues per pool task
MAX_LEN = 2048


def _path(i: int) -> str:
    digest = f"{random.Random(i).getrandbits(80):020x}"
    return f"images/{digest[:2]}/{digest}.jpg"


def make_work(captions: list[str], n_scenes: int, seed: int = 0) -> dict[str, list[tuple]]:
    """Work units per kind: ("single", item) / ("multi", items) / ("text", id, record)."""
    rng = random.Random(seed)
    work: dict[str, list[tuple]] = {"caption": [], "vqa": [], "grounding": [], "multi_image": [], "text": []}
    for i, caption in enumerate(captions):
        with contextlib.suppress(RejectSample):  # empty after scrubbing: the job rejects it before building
            work["caption"].append(("single", caption_item(f"web/{i}", caption, None, _path(i))))
    vqa_items = []
    for i in range(n_scenes):
        scene, lang = random_scene(rng), "zh" if rng.random() < 0.3 else "en"
        width, height = rng.randint(256, 448), rng.randint(256, 448)
        record = {"qas": scene_qas(scene, lang, rng), "lang": lang}
        vqa_items.append(vqa_item(f"vqa/{i}", record, _path(100_000 + i)))
        grounding = {
            "width": width,
            "height": height,
            "lang": lang,
            "phrases": scene_phrases(scene, lang, width, height),
        }
        work["grounding"].append(("single", grounding_item(f"g/{i}", grounding, _path(200_000 + i))))
    work["vqa"] = [("single", item) for item in vqa_items]
    by_lang = {lang: [it for it in vqa_items if it.lang == lang] for lang in ("en", "zh")}
    for items in by_lang.values():
        start = 0
        while len(items) - start >= 2:
            size = rng.randint(2, 3)
            work["multi_image"].append(("multi", items[start : start + size]))
            start += size
    for record in text_dialogues(n_scenes, rng):
        work["text"].append(("text", f"chat/{record['id']}", record))
    return work


def build_chunk(units: list[tuple]) -> tuple[int, int, int, int]:
    """(dialogues, samples, tokens, rejects) of building every unit."""
    tok = get_tokenizer()
    dialogues = samples = tokens = rejects = 0
    for unit in units:
        if unit[0] == "single":
            dialogue = single_dialogue(unit[1], 0)
        elif unit[0] == "multi":
            dialogue = multi_image_dialogue(unit[1], 0)
        else:
            dialogue = text_dialogue(unit[1], unit[2])
        dialogues += 1
        for result in build_samples(dialogue, MAX_LEN, tokenizer=tok):
            if isinstance(result, SftSample):
                samples += 1
                tokens += result.length
            else:
                rejects += 1
    return dialogues, samples, tokens, rejects


def _sum(parts: list[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(sum(p[i] for p in parts) for i in range(4))


def bench_job(workers: int, folder: str) -> dict:
    from vlcurate.pipelines.sft import run_sft
    from vlcurate.schemas.sft_config import load_sft_config

    config = load_sft_config(os.path.join(folder, "sft.yaml"))
    config.workers, config.output.overwrite = workers, True
    start = time.perf_counter()
    stats = run_sft(config)
    seconds = time.perf_counter() - start
    totals = stats["totals"]
    return {
        "bench": "job",
        "processes": workers,
        "dialogues": totals["dialogues_built"],
        "samples": totals["samples_written"],
        "tokens": stats["tokens"]["total"],
        "rejects": totals["samples_rejected"],
        "seconds": round(seconds, 3),
        "dialogues_per_s": round(totals["dialogues_built"] / seconds),
        "tokens_per_s": round(stats["tokens"]["total"] / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--scenes", type=int, default=4000, help="synthetic images for VQA/grounding/multi")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--job-images", type=int, default=300, help="demo images for the job rows")
    parser.add_argument("--no-job", action="store_true", help="skip the Beam job rows")
    parser.add_argument("--json", default=RESULTS)
    args = parser.parse_args()

    captions = [c or "" for c in pq.read_table(args.data, columns=["TEXT"]).column("TEXT").to_pylist()]
    work = make_work(captions, args.scenes)
    work["mixed"] = [
        unit for kind in ("caption", "vqa", "grounding", "multi_image", "text") for unit in work[kind]
    ]
    random.Random(1).shuffle(work["mixed"])
    load_start = time.perf_counter()
    warm_tokenizer()
    load_seconds = time.perf_counter() - load_start

    rows = []

    def record(name: str, processes: int, seconds: float, counts: tuple[int, ...]) -> None:
        dialogues, samples, tokens, rejects = counts
        rows.append(
            {
                "bench": name,
                "processes": processes,
                "dialogues": dialogues,
                "samples": samples,
                "tokens": tokens,
                "rejects": rejects,
                "seconds": round(seconds, 3),
                "dialogues_per_s": round(dialogues / seconds),
                "tokens_per_s": round(tokens / seconds),
            }
        )

    with multiprocessing.Pool(2, initializer=warm_tokenizer) as pool:
        for name, units in work.items():
            size = min(CHUNK, max(25, -(-len(units) // 8)))  # >= 8 chunks keep both workers busy
            chunks = [units[i : i + size] for i in range(0, len(units), size)]
            seconds, counts = timed(lambda units=units: build_chunk(units), args.repeat)
            record(name, 1, seconds, counts)
            seconds, parts = timed(lambda chunks=chunks: pool.map(build_chunk, chunks), args.repeat)
            record(name, 2, seconds, _sum(parts))
    if not args.no_job:
        from vlcurate.synth.sft_inputs import write_demo_sft_inputs

        folder = tempfile.mkdtemp(prefix="vlcurate-bench-sft-")
        try:
            write_demo_sft_inputs(folder, seed=0, n=args.job_images)
            rows += [bench_job(1, folder), bench_job(2, folder)]
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    for row in rows:
        base = next(r for r in rows if r["bench"] == row["bench"] and r["processes"] == 1)
        row["speedup"] = round(base["seconds"] / row["seconds"], 2)

    header = f"{'bench':<12}{'proc':>5}{'dialogues':>11}{'samples':>9}{'tokens':>11}{'s':>8}{'dialog/s':>10}{'tok/s':>11}{'x':>6}"
    print(header)
    for r in rows:
        print(
            f"{r['bench']:<12}{r['processes']:>5}{r['dialogues']:>11,}{r['samples']:>9,}{r['tokens']:>11,}"
            f"{r['seconds']:>8.2f}{r['dialogues_per_s']:>10,}{r['tokens_per_s']:>11,}{r['speedup']:>6.2f}"
        )
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.machine(),
            "python": platform.python_version(),
        },
        "data": os.path.basename(args.data),
        "scenes": args.scenes,
        "max_len": MAX_LEN,
        "repeat": args.repeat,
        "tokenizer_load_seconds": round(load_seconds, 3),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
