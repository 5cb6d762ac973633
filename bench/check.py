"""What `vlcurate check` costs: structural checks per core, model checks per device, and the whole check
job against the job that wrote the output.

    python bench/check.py --build DIR [--scenes 300] [--model-sample N]   # builds outputs, times jobs
    python bench/check.py --outputs DIR [--device cuda]   # anywhere: component rates (no Beam needed)

--build writes DIR/sft and DIR/stage2 (the demo's synthetic inputs, --scenes scenes) with the real jobs,
timing each, then times `vlcurate check` on each (structural only, and with the bundled model) on the same
machine, and then runs the component rates below. --outputs reads such a DIR (copy it to a GPU machine).

Component rows (one process; a "per core" rate pins torch and the process to one thread):
- structural: check_sft_sample / check_stage_sample on every sample, check_pack on every pack, and
  check_image on every distinct image (full decode), samples/s; the decode share is the image time over
  the sum;
- model: the bundled compact Qwen-VL's two losses (own and partner images) per sample, batched as the
  job batches (qwenvl_losses.loss_batches, --batch-tokens a batch), samples/s as the job runs them
  (losses_in_order: each image decoded in threads, the next batch's while one runs, and encoded once), and the share of tokenizing (building the trainer's view),
  images (decode + vision tower) and the decoder (a pass with every image's features cached). The job's
  pass runs --passes times, each with the image cache emptied: the first meets most padded shapes for the
  first time (kernel selection on a GPU), the later ones give the steady rate of a long job;
  --profile adds torch.profiler's view of the decoder-only pass (GPU busy time, costliest host ops).
Prints a table and writes bench/results/check.json (or --json PATH).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "check.json")


def _jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _load(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, "info.json"), encoding="utf-8") as fh:
        info = json.load(fh)
    out: dict[str, Any] = {"info": info}
    if info["kind"] == "vlcurate.sft":
        out["samples"] = []
        for shard in info["shards"]:
            with open(os.path.join(directory, shard["json"]), encoding="utf-8") as fh:
                out["samples"] += json.load(fh)
    else:
        out["samples"] = [r for f in info["files"]["samples"] for r in _jsonl(os.path.join(directory, f))]
        out["packs"] = [r for f in info["files"]["packed"] for r in _jsonl(os.path.join(directory, f))]
    return out


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds else 0.0


def structural_rates(directory: str, image_root: str) -> dict[str, Any]:
    from vlcurate.formatters.check_images import check_image
    from vlcurate.formatters.check_samples import check_pack, check_stage_sample
    from vlcurate.formatters.check_sft import check_sft_sample
    from vlcurate.model.qwen_tokenizer import get_tokenizer

    tok = get_tokenizer()
    data = _load(directory)
    sft = data["info"]["kind"] == "vlcurate.sft"
    max_len = data["info"].get("model_max_length") or data["info"].get("max_tokens", 2048)
    for sample in data["samples"][:50]:  # warm-up: the tokenizer's first calls build its caches
        (check_sft_sample if sft else check_stage_sample)(sample, max_len, tok)
    start = time.perf_counter()
    views = []
    for sample in data["samples"]:
        _, view = (check_sft_sample if sft else check_stage_sample)(sample, max_len, tok)
        views.append(view)
    tokens_s = time.perf_counter() - start
    row: dict[str, Any] = {"samples": len(data["samples"]), "samples_per_s": _rate(len(views), tokens_s)}
    if not sft:
        by_id = {s["id"]: s for s in data["samples"]}
        start = time.perf_counter()
        for pack in data["packs"]:
            check_pack(pack, {i: by_id[i] for i in pack["ids"]}, max_len, tok)
        pack_s = time.perf_counter() - start
        row.update(packs=len(data["packs"]), packs_per_s=_rate(len(data["packs"]), pack_s))
    paths = sorted({p for v in views if v is not None for p in v.images})
    start = time.perf_counter()
    for path in paths:
        with open(os.path.join(image_root, path), "rb") as fh:
            check_image(fh.read())
    image_s = time.perf_counter() - start
    row.update(
        images=len(paths),
        images_per_s=_rate(len(paths), image_s),
        with_images_samples_per_s=_rate(len(views), tokens_s + image_s),
        decode_share=round(image_s / (tokens_s + image_s), 3) if paths else 0.0,
    )
    return row


class _Record:
    def __init__(self, sample_id: str, task: str, view: Any) -> None:
        self.id, self.task, self.view, self.images = sample_id, task, view, tuple(view.images)


def model_rates(
    directory: str,
    image_root: str,
    device: str | None,
    spec: str,
    limit: int | None = None,
    batch_tokens: int = 16384,
    passes: int = 3,
    profiled: bool = False,
    sequential: bool = False,
) -> dict[str, Any]:
    import numpy
    import torch

    from vlcurate.formatters.check_samples import check_stage_sample
    from vlcurate.formatters.check_sft import check_sft_sample
    from vlcurate.model import qwenvl_losses
    from vlcurate.model.qwenvl_images import normalize_pixels
    from vlcurate.model.qwenvl_weights import load_model

    data = _load(directory)
    sft = data["info"]["kind"] == "vlcurate.sft"
    max_len = data["info"].get("model_max_length") or data["info"].get("max_tokens", 2048)
    started = time.perf_counter()
    records = []
    for sample in data["samples"][:limit]:
        _, view = (check_sft_sample if sft else check_stage_sample)(sample, max_len)
        if view is not None:
            task = sample["id"].split("/", 1)[0] if sft else sample["task"]
            records.append(_Record(sample["id"], task, view))
    by_task: dict[str, list] = {}
    for r in records:
        by_task.setdefault(r.task, []).append(r)
    batches = [
        b for group in by_task.values() for b in qwenvl_losses.loss_batches(group, image_root, batch_tokens)
    ]
    tokenize_s = time.perf_counter() - started
    model, _ = load_model(spec, device)
    size = model.config.vision.image_size
    device = next(model.parameters()).device

    def read(path: str) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    sync = (
        torch.cuda.synchronize if str(next(model.parameters()).device).startswith("cuda") else (lambda: None)
    )
    if sequential:  # the baseline: each batch's images decoded when it comes (no decoding ahead)

        def run_batches(model, batches, read):
            return (qwenvl_losses.sample_losses(model, b, read) for b in batches)
    else:
        run_batches = qwenvl_losses.losses_in_order
    paths = sorted({p for b in batches for item in b.items for p in (*item.images, *item.partner_images)})
    start = time.perf_counter()  # decoding alone, one thread (what a core costs per image)
    for path in paths:
        qwenvl_losses.decode_image(path, read, size)
    decode_s = time.perf_counter() - start
    qwenvl_losses.sample_losses(model, batches[0], read)  # warm-up (kernels, allocator)
    pass_s = []  # as the job runs: every image decoded (threads) and encoded once, each pass afresh
    for _ in range(passes):
        qwenvl_losses.clear_feature_cache()
        sync()
        start = time.perf_counter()
        results = [r for rs in run_batches(model, batches, read) for r in rs]
        sync()
        pass_s.append(time.perf_counter() - start)
    # The first pass meets most padded shapes for the first time (kernel selection); a job of millions of
    # samples meets them once, so the later passes are its steady rate.
    cold_s = pass_s[0]
    steady_s = statistics.median(pass_s[1:]) if passes > 1 else cold_s
    start = time.perf_counter()  # the images' two parts apart: decoding in the job's thread pool ...
    with concurrent.futures.ThreadPoolExecutor(qwenvl_losses.DECODE_THREADS) as pool:
        decoded = list(pool.map(lambda p: qwenvl_losses.decode_image(p, read, size), paths))
    threaded_decode_s = time.perf_counter() - start
    sync()
    start = time.perf_counter()  # ... and the vision tower, 32 images at a time
    with torch.inference_mode():
        for i in range(0, len(decoded), 32):
            pixels = torch.from_numpy(numpy.stack(decoded[i : i + 32])).to(device)
            model.visual(normalize_pixels(pixels))
    sync()
    vision_s = time.perf_counter() - start
    start = time.perf_counter()  # again, every image's features cached: the decoder alone
    for _ in qwenvl_losses.losses_in_order(model, batches, read):
        pass
    sync()
    decoder_s = time.perf_counter() - start
    profile = (
        _profile(lambda: list(qwenvl_losses.losses_in_order(model, batches, read))) if profiled else None
    )
    return {
        "device": str(next(model.parameters()).device),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "samples": len(results),
        "batches": len(batches),
        "batch_tokens": batch_tokens,
        "images": len(paths),
        "decode_threads": qwenvl_losses.DECODE_THREADS,
        "decode_ahead": not sequential,
        "tokenize_s": round(tokenize_s, 3),
        "decode_one_thread_s": round(decode_s, 3),
        "decode_threads_s": round(threaded_decode_s, 3),
        "vision_tower_s": round(vision_s, 3),
        "model_s": round(cold_s, 3),
        "pass_s": [round(s, 3) for s in pass_s],
        "decoder_only_s": round(decoder_s, 3),
        "samples_per_s": _rate(len(results), cold_s),
        "steady_samples_per_s": _rate(len(results), steady_s),
        "decoder_only_samples_per_s": _rate(len(results), decoder_s),
        "with_tokenize_samples_per_s": _rate(len(results), cold_s + tokenize_s),
        "share": {  # of a steady pass plus tokenizing
            "tokenize": round(tokenize_s / (tokenize_s + steady_s), 3),
            "images (decode + vision tower)": round(
                max(0.0, steady_s - decoder_s) / (tokenize_s + steady_s), 3
            ),
            "decoder": round(min(decoder_s, steady_s) / (tokenize_s + steady_s), 3),
        },
        **({"profile_decoder_only": profile} if profile else {}),
    }


def _profile(run: Callable[[], Any], top: int = 15) -> dict[str, Any]:
    """torch.profiler over `run` (the decoder-only pass): wall time, the GPU's busy time (the sum of its
    kernels) and the operators that cost the most host time, to tell launch- and Python-bound from
    GPU-bound."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    wall = time.perf_counter() - start
    events = prof.key_averages()
    device_us = sum(getattr(e, "self_device_time_total", 0) or 0 for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "wall_s": round(wall, 3),
        "device_busy_s": round(device_us / 1e6, 3),
        "top_host_ops": [
            {"op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1)}
            for e in ranked
        ],
    }


def build(
    directory: str, scenes: int, model_sample: int | None, spec: str, job_workers: list[int] | None = None
) -> dict[str, Any]:
    """Writes the outputs with the real jobs and times them, then the check job on each: structural only,
    and with the bundled model on `model_sample` samples (None: all). `job_workers`: the check job with
    the model is also timed at each of these worker counts (each worker loads its own model; on one GPU
    run the bench under bench/with_mps.sh so that they share it)."""
    from vlcurate.pipelines.format import run_format
    from vlcurate.pipelines.sft import run_sft
    from vlcurate.schemas.sft_config import load_sft_config
    from vlcurate.synth.sft_inputs import write_demo_sft_inputs
    from vlcurate.synth.stage2_inputs import write_demo_stage2_inputs

    if os.path.exists(directory):
        shutil.rmtree(directory)
    inputs = os.path.join(directory, "inputs")
    config = load_sft_config(write_demo_sft_inputs(inputs, seed=0, n=scenes))
    config.output.dir = os.path.join(directory, "sft")
    jobs: dict[str, Any] = {}
    start = time.perf_counter()
    run_sft(config, progress=False)
    jobs["sft"] = {"write_s": round(time.perf_counter() - start, 2)}
    start = time.perf_counter()
    run_format(2, [write_demo_stage2_inputs(inputs)], os.path.join(directory, "stage2"), progress=False)
    jobs["stage2"] = {"write_s": round(time.perf_counter() - start, 2)}
    for name in ("sft", "stage2"):
        one = _timed_check_job(directory, name, spec, model_sample, 1)
        for label in ("structural", "with_model"):
            jobs[name][f"check_{label}_s"] = one[f"{label}_s"]
            jobs[name][f"check_{label}_over_write"] = round(one[f"{label}_s"] / jobs[name]["write_s"], 3)
        jobs[name]["samples"] = one["samples"]
        jobs[name]["model_sample"] = model_sample
        for workers in job_workers or []:
            jobs[name][f"workers_{workers}"] = _timed_check_job(directory, name, spec, model_sample, workers)
    return jobs


def _timed_check_job(
    directory: str, name: str, spec: str, model_sample: int | None, workers: int
) -> dict[str, Any]:
    """The check job at `workers` workers, structural only and with the model: seconds, samples/s, and the
    model part's rate (the samples it scored over the time the model added to the job)."""
    from vlcurate.pipelines.check_job import CheckOptions, run_check

    row: dict[str, Any] = {}
    for label, options in (
        ("structural", CheckOptions(model=None)),
        ("with_model", CheckOptions(model=spec, sample=model_sample)),
    ):
        start = time.perf_counter()
        check = run_check(
            os.path.join(directory, name),
            os.path.join(directory, f"check-{name}-{label}-w{workers}"),
            options,
            workers=workers,
            overwrite=True,
            quiet=True,
        )
        row[f"{label}_s"] = round(time.perf_counter() - start, 2)
        row[f"{label}_samples_per_s"] = _rate(check["samples"], row[f"{label}_s"])
    row["samples"] = check["samples"]
    scored = model_sample if model_sample is not None else check["samples"]
    row["model_added_s"] = round(row["with_model_s"] - row["structural_s"], 2)
    row["model_samples_per_s"] = _rate(scored, max(row["model_added_s"], 1e-9))
    print(f"[bench] check job {name} workers {workers}: {row}", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--build", help="write outputs into this folder with the real jobs, then measure")
    where.add_argument("--outputs", help="a folder --build wrote")
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument(
        "--model-sample", type=int, default=None, help="--build: the check job's model checks on N samples"
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--model", default="bundled:compact-qwenvl")
    parser.add_argument(
        "--model-rate-samples", type=int, default=None, help="model rows on the first N samples"
    )
    parser.add_argument("--batch-tokens", type=int, default=16384, help="model rows: rows x length per batch")
    parser.add_argument(
        "--passes", type=int, default=3, help="model rows: passes over the samples (1st cold)"
    )
    parser.add_argument("--decode-threads", type=int, default=None, help="model rows: image decode threads")
    parser.add_argument("--profile", action="store_true", help="model rows: torch.profiler on the decoder")
    parser.add_argument(
        "--sequential", action="store_true", help="model rows: no decoding ahead (the baseline before it)"
    )
    parser.add_argument(
        "--job-workers",
        type=int,
        nargs="*",
        default=[],
        help="--build: also time the check job at these worker counts",
    )
    parser.add_argument("--jobs-only", action="store_true", help="--build: skip the component rows")
    parser.add_argument("--json", default=RESULTS)
    args = parser.parse_args()
    import torch

    directory = args.build or args.outputs
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.build:
        result["jobs"] = build(directory, args.scenes, args.model_sample, args.model, args.job_workers)
    if args.jobs_only:
        _write(result, args.json)
        print(json.dumps(result["jobs"], indent=1))
        return 0
    roots = {"sft": os.path.join(directory, "sft"), "stage2": os.path.join(directory, "inputs")}
    torch.set_num_threads(1)
    result["structural_per_core"] = {
        name: structural_rates(os.path.join(directory, name), roots[name]) for name in ("sft", "stage2")
    }
    torch.set_num_threads(os.cpu_count() or 1)
    if args.decode_threads:
        from vlcurate.model import qwenvl_losses

        qwenvl_losses.DECODE_THREADS = args.decode_threads
    result["model"] = {
        name: model_rates(
            os.path.join(directory, name),
            roots[name],
            args.device,
            args.model,
            args.model_rate_samples,
            args.batch_tokens,
            args.passes,
            args.profile,
            args.sequential,
        )
        for name in ("sft", "stage2")
    }
    print(table(result))
    _write(result, args.json)
    return 0


def _write(result: dict[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)
        fh.write("\n")


def table(result: dict[str, Any]) -> str:
    lines = ["output   part                       rate             note"]
    for name, row in result["structural_per_core"].items():
        lines.append(
            f"{name:8} structural (tokens)         {row['samples_per_s']:>9,.0f} /s     {row['samples']} samples, 1 core"
        )
        if "packs_per_s" in row:
            lines.append(
                f"{name:8} packs                      {row['packs_per_s']:>9,.0f} /s     {row['packs']} packs"
            )
        lines.append(
            f"{name:8} image full decode          {row['images_per_s']:>9,.0f} /s     {row['images']} images"
        )
        lines.append(
            f"{name:8} structural incl. images    {row['with_images_samples_per_s']:>9,.0f} /s     decode share {row['decode_share']:.0%}"
        )
    for name, row in result["model"].items():
        where = row["gpu"] or row["device"]
        share = ", ".join(f"{k} {v:.0%}" for k, v in row["share"].items())
        lines.append(
            f"{name:8} model (2 losses/sample)    {row['samples_per_s']:>9,.0f} /s     {where}, {row['images']} images"
        )
        lines.append(
            f"{name:8} model, steady passes       {row['steady_samples_per_s']:>9,.0f} /s     passes {row['pass_s']} s"
        )
        lines.append(
            f"{name:8} model incl. tokenizing     {row['with_tokenize_samples_per_s']:>9,.0f} /s     {share}"
        )
        lines.append(
            f"{name:8} decoder only (cached imgs) {row['decoder_only_samples_per_s']:>9,.0f} /s     {row['batches']} batches"
        )
    for name, row in result.get("jobs", {}).items():
        lines.append(
            f"{name:8} job wrote in {row['write_s']:.1f}s; check {row['check_structural_s']:.1f}s structural "
            f"({row['check_structural_over_write']:.0%}), {row['check_with_model_s']:.1f}s with model on "
            f"{row['model_sample'] or 'all'} samples ({row['check_with_model_over_write']:.0%})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
