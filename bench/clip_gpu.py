"""CLIP scoring speed on the GPU: model-only forward and end-to-end through the Beam pipeline.

    python bench/clip_gpu.py model --models ViT-L-14 [--variants compile fp8 ...]
    python bench/clip_gpu.py e2e --models ViT-B-32 ViT-L-14 --workers 1 [--carry-too] [--serial-too] [--share-too] [--mixed-sizes] [--cpu-decode] [--profile]
    python bench/clip_gpu.py paths --models ViT-B-32@random
    python bench/clip_gpu.py decode
    python bench/clip_gpu.py queue --models ViT-L-14
    python bench/clip_gpu.py resize [--device cpu]

`model`: image-tower img/s for the VARIANTS below (open_clip eager; SDPA attention; compile, autotune,
CUDA graphs; fp8 with dynamic row or tensor scales, or static calibrated scales as `precision: fp8` uses), plus full scoring (image + ~16-token captions), random weights in
bf16, with MFU against PEAK_TFLOPS.
`e2e`: encoded JPEGs in WebDataset tars -> `vlcurate clean` (probe_image, clip_score, clip_filter) ->
shards, timed at two input sizes so start-up (workers, model loads) cancels out of the steady rate
(`steady_reliable` is false where the two runs' start-ups differ by over a quarter of the time between
them, as with compile on several workers), and
(robust when start-up varies between runs, as with several workers) the large run's pairs/s after its
first kept pairs appeared, shard writing included; any reject is reported (the threshold keeps every real
score, so a reject means a NaN score). With --serial-too every run's scores are also compared pair by pair
with the serial run's, which no race between batches on the GPU can touch.
`paths`: score differences of the nvjpeg path and PIL draft decoding against a full PIL decode, and of
`precision: fp8` against bf16.
`decode`: img/s from JPEG bytes to model pixels, nvjpeg vs PIL on one and on all threads.
`resize`: ms per batch of JPEG decode + resize for one image size vs many distinct sizes (runs on the CPU
too).
`queue`: whether queueing a batch's scoring waits for the GPU (it must not, for clip_score.overlap).
Results go to bench/results/clip_gpu_<mode>.json; the README quotes them with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing
import os
import platform
import random
import tempfile
import time

from report import write_results

PEAK_TFLOPS = 800.0  # measured bf16 dense matmul peak on an H100 (bench/README.md)


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


def image_flops(model, size: int) -> float:
    """FLOPs of one image through the image tower, counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size, device=next(model.parameters()).device, dtype=torch.bfloat16)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.encode_image(x)
    return float(counter.get_total_flops())


def time_call(fn, warmup: int, iters: int) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


VARIANTS = {  # name: (SDPA, fp8 scaling or None, compile mode)
    "eager": (False, None, None),
    "sdpa": (True, None, None),
    "compile": (True, None, "default"),
    "autotune": (True, None, "max-autotune-no-cudagraphs"),
    "graphs": (True, None, "max-autotune"),  # autotuned kernels replayed as CUDA graphs
    "fp8": (True, "row", "default"),
    "fp8t": (True, "tensor", "default"),
    "fp8t-graphs": (True, "tensor", "max-autotune"),
    "fp8t-eager": (True, "tensor", None),
    "fp8s": (True, "static", "default"),  # activation scales calibrated once (calibrate_fp8)
    "fp8s-graphs": (True, "static", "max-autotune"),
}


def model_only(name: str, batch: int, iters: int, variants: list[str]) -> list[dict]:
    import open_clip
    import torch

    from vlcurate.model.clip_fast import calibrate_fp8, speed_up, use_sdpa
    from vlcurate.model.clip_handler import encode_captions
    from vlcurate.model.clip_models import LoadedClip
    from vlcurate.model.clip_tokens import FastClipTokenizer

    def fresh():
        torch.manual_seed(0)
        return open_clip.create_model(name, pretrained=None, device="cuda").to(torch.bfloat16).eval()

    reference = fresh()
    size = reference.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    use_sdpa(reference)
    flops = image_flops(reference, size)  # counted on SDPA: the fused MHA path hides attention FLOPs
    x = torch.randn(batch, 3, size, size, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        ref_emb = torch.nn.functional.normalize(reference.encode_image(x[:64]).float(), dim=-1)
    del reference
    rows = []
    for variant in variants:
        torch.compiler.reset()
        sdpa, fp8, mode = VARIANTS[variant]
        model = fresh()
        encode = (
            speed_up(model, fp8=fp8 is not None, compile_mode=mode, fp8_scaling=fp8 or "row")
            if sdpa
            else model.encode_image
        )
        if fp8 == "static":
            with torch.inference_mode():  # eager, on the timed inputs' distribution (random pixels)
                calibrate_fp8(model.visual, lambda m=model: m.encode_image(x[:64]))
        started = time.perf_counter()
        with torch.inference_mode():
            emb = torch.nn.functional.normalize(encode(x)[:64].float(), dim=-1)  # compile happens here
            compile_s = time.perf_counter() - started
            drift = float((1 - (emb * ref_emb).sum(-1)).abs().max())
            per_batch = time_call(lambda f=encode: f(x), warmup=3, iters=iters)
            loaded = LoadedClip(  # with the pipeline's tokenizer: open_clip's spends ~80 us per caption
                name,
                model,
                FastClipTokenizer(open_clip.get_tokenizer(name)),
                size,
                (0.5,) * 3,
                (0.5,) * 3,
                "cuda",
                torch.bfloat16,
            )
            captions = [f"a photo of {i} red circles on a blue background at the top" for i in range(batch)]
            full = time_call(
                lambda f=encode, m=loaded, c=captions: (f(x), encode_captions(m, c)), warmup=2, iters=iters
            )
        img_s = batch / per_batch
        rows.append(
            {
                "model": name,
                "variant": variant,
                "batch": batch,
                "image_size": size,
                "gflops_per_image": round(flops / 1e9, 1),
                "image_tower_img_s": round(img_s, 1),
                "mfu": round(img_s * flops / (PEAK_TFLOPS * 1e12), 3),
                "image_plus_text_pairs_s": round(batch / full, 1),
                "first_call_s": round(compile_s, 1),
                "max_embedding_drift_vs_bf16_sdpa": round(drift, 5),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        del model, encode
        torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------------------- e2e
def _render_shard(args: tuple[str, int, int, int, bool]) -> int:
    from vlcurate.formatters.webdataset import TarShardWriter
    from vlcurate.model.scenes import caption_en, random_scene, render

    path, start, count, seed, mixed = args
    rng = random.Random(seed * 1_000_003 + start)
    with open(path, "wb") as fh, TarShardWriter(fh) as writer:
        for i in range(start, start + count):
            scene = random_scene(rng)
            buffer = io.BytesIO()
            width, height = (rng.randint(300, 800), rng.randint(300, 800)) if mixed else (512, 384)
            render(scene, width, height).save(buffer, "JPEG", quality=90)
            writer.add(f"{i:09d}", {"jpg": buffer.getvalue(), "txt": caption_en(scene, rng).encode()})
    return count


def make_jpeg_tars(folder: str, n: int, per_tar: int = 1000, mixed: bool = False) -> None:
    """n JPEG scenes with captions in WebDataset tars: 512x384, or with `mixed` a random size per image
    (sides 300-800 px; web images come in many sizes, which the GPU path resizes size by size)."""
    os.makedirs(folder, exist_ok=True)
    jobs = [
        (os.path.join(folder, f"{s // per_tar:05d}.tar"), s, min(per_tar, n - s), 0, mixed)
        for s in range(0, n, per_tar)
    ]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        pool.map(_render_shard, jobs)


class _KeptTimes:
    """Stands in for clean's ProgressPrinter: samples the kept count every 0.2 s (wall time, count), so
    a run's start-up can be read off the run itself: the time its first kept pairs appear."""

    samples: list[tuple[float, int]] = []

    def __init__(self, interval: float = 0.2, stream=None) -> None:
        from vlcurate.pipelines.progress import ProgressPrinter

        self._printer = ProgressPrinter(interval=interval, stream=io.StringIO())
        self._printer.line = self._sample
        self.folder = self._printer.folder

    def _sample(self, elapsed: float) -> str:
        _KeptTimes.samples.append((time.perf_counter(), self._printer.totals()["kept"]))
        return ""

    def __enter__(self):
        self._printer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._printer.__exit__(*exc)


def run_clean_timed(
    tars: str, model: str, workers: int, batch: int, out: str, clip_params: dict
) -> tuple[float, int, float, float]:
    """Seconds, pairs kept, seconds until the first kept pairs appeared (start-up: worker start, model
    load, first batch; NaN when they showed only at the end), and the scoring stage's pairs/s
    (middle_rate)."""
    from vlcurate.filters.chain import DEFAULT_CHAIN
    from vlcurate.pipelines import clean
    from vlcurate.pipelines.clean import run_clean
    from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig

    keep = {"probe_image", "clip_score", "clip_filter"}
    clip_params = dict(clip_params)
    reread = clip_params.pop("reread_images")
    config = CleanConfig(
        sources=[SourceConfig(name="bench", format="webdataset", paths=[os.path.join(tars, "*.tar")])],
        output=OutputConfig(dir=out, overwrite=True, pairs_per_shard=5000, reread_images=reread),
        steps={
            "clip_score": {"models": f"{model}@random", "batch_size": batch, **clip_params},
            "clip_filter": {"threshold": -2.0},
        },
        disable=[s for s in DEFAULT_CHAIN if s not in keep],
        workers=workers,
    )
    clean.ProgressPrinter = _KeptTimes  # bench only: a progress "printer" that records kept counts
    _KeptTimes.samples = []
    start = time.perf_counter()
    stats = run_clean(config, progress=True)
    seconds = time.perf_counter() - start
    first_kept = next((t - start for t, kept in _KeptTimes.samples if kept > 0), math.nan)
    if not first_kept < 0.95 * seconds:  # kept pairs showed only at the end (one bundle): no start-up seen
        first_kept = math.nan
    with open(os.path.join(out, "info.json")) as fh:
        written = sum(s["pairs"] for s in json.load(fh)["shards"])
    totals = stats["totals"]
    if totals["rejected"]:  # the threshold keeps every real score: a reject means a NaN score
        print(f"UNEXPECTED REJECTS (NaN scores?): {stats['sources']}", flush=True)
    if not totals["read"] == totals["kept"] + totals["rejected"] == written + totals["rejected"]:
        report_loss(out, tars, totals, written)
    return seconds, totals["kept"], first_kept, middle_rate(_KeptTimes.samples, totals["kept"])


def middle_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Pairs/s while the kept count went from 10% to 90% of `total`: the rate of the stage that scores
    and keeps pairs (kept pairs are counted there), without start-up, the shard writing that follows,
    or the workers' exit."""
    low = next(((t, k) for t, k in samples if k >= 0.1 * total), None)
    high = next(((t, k) for t, k in samples if k >= 0.9 * total), None)
    if low is None or high is None or high[0] <= low[0]:
        return math.nan
    return (high[1] - low[1]) / (high[0] - low[0])


def report_loss(out: str, tars: str, totals: dict, written: int) -> None:
    """input == kept + rejects must hold; if it does not, say which pairs are missing."""
    import glob
    from collections import Counter

    seen = written_scores(out)
    keys = set()
    for path in glob.glob(os.path.join(tars, "*.tar")):
        import tarfile

        with tarfile.open(path) as tar:
            keys.update(m.name.split(".")[0] for m in tar.getmembers())
    missing = sorted(k for k in keys if f"bench/{k}" not in seen)
    by_tar = Counter(int(k) // 1000 for k in missing)
    print(
        f"LOST PAIRS: stats {totals}, written {written}, missing {len(missing)}: {missing[:5]} "
        f"per tar {sorted(by_tar.items())[:10]}",
        flush=True,
    )


@contextlib.contextmanager
def profiled(enabled: bool):
    """Prints the 30 functions with the most own time in this process (the in-process runner's work)."""
    if not enabled:
        yield
        return
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


def e2e(
    models: list[str],
    sizes: dict[str, int],
    workers: int,
    batch: int,
    settings: list[dict],
    profile: bool,
    mixed: bool = False,
) -> list[dict]:
    """Steady pairs/s per model and per clip_score settings (each a dict of its params), on the same tars."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            n = sizes[name]
            small, large = os.path.join(tmp, f"{name}-small"), os.path.join(tmp, f"{name}-large")
            started = time.perf_counter()
            make_jpeg_tars(small, n // 4, mixed=mixed)
            make_jpeg_tars(large, n, mixed=mixed)
            print(f"{name}: made {n + n // 4} JPEGs in {time.perf_counter() - started:.0f}s", flush=True)
            compared = any(map(is_serial, settings))
            scores = {}
            for i, clip_params in enumerate(settings):
                row = _e2e_row(name, small, large, tmp, workers, batch, clip_params, profile)
                if compared:  # read back only when a serial run is there to compare with
                    scores[i] = written_scores(os.path.join(tmp, "out-l"))
                rows.append({**row, "image_sizes": "300-800 px, mixed" if mixed else "512x384"})
                print(json.dumps(rows[-1]), flush=True)
            if compared:
                compare_with_serial(rows[-len(settings) :], settings, scores)
    return rows


def written_scores(out: str) -> dict[str, float]:
    """uid -> CLIP score of every pair a run wrote, kept or rejected (NaN where it has none)."""
    import glob

    import pyarrow.parquet as pq

    scores = {}
    for path in glob.glob(os.path.join(out, "shards", "*.parquet")) + glob.glob(
        os.path.join(out, "rejects", "*.parquet")
    ):
        for row in pq.read_table(path, columns=["uid", "scores"]).to_pylist():
            clip = (row["scores"] or {}).get("clip")  # a struct of the run's score names, null if none
            scores[row["uid"]] = math.nan if clip is None else clip
    return scores


def is_serial(clip_params: dict) -> bool:
    """Overlap off and a model of its own: every batch's scores are read before the next is queued."""
    return not clip_params["overlap"] and not clip_params["share_model"]


def compare_with_serial(rows: list[dict], settings: list[dict], scores: dict[int, dict]) -> None:
    """Each row gets how far its scores are from the serial run's (overlap off: every batch's scores are
    read before the next batch is queued, so nothing can race), pair by pair: a race between batches on
    the GPU shows as scores that differ, even where they look plausible."""
    serial = next(i for i, s in enumerate(settings) if is_serial(s))
    reference = scores[serial]
    for i, row in enumerate(rows):
        diffs = [abs(scores[i].get(uid, math.nan) - score) for uid, score in reference.items()]
        row["scores_vs_serial_max_abs"] = max((d for d in diffs if not math.isnan(d)), default=math.nan)
        row["scores_vs_serial_differ_1e-3"] = sum(1 for d in diffs if not d <= 1e-3)
        print(
            json.dumps(
                {k: row[k] for k in ("model", "overlap", "share_model", "reread_images")}
                | {k: row[k] for k in ("scores_vs_serial_max_abs", "scores_vs_serial_differ_1e-3")}
            ),
            flush=True,
        )


def _e2e_row(
    name: str, small: str, large: str, tmp: str, workers: int, batch: int, clip_params: dict, profile: bool
) -> dict:
    run_clean_timed(small, name, workers, batch, os.path.join(tmp, "out-w"), clip_params)  # warm caches
    t_small, k_small, first_kept_small, _ = run_clean_timed(
        small, name, workers, batch, os.path.join(tmp, "out-s"), clip_params
    )
    with profiled(profile):
        t_large, k_large, first_kept, scoring_rate = run_clean_timed(
            large, name, workers, batch, os.path.join(tmp, "out-l"), clip_params
        )
    # The steady rate assumes both runs started up alike; compile and several workers can make their
    # start-ups differ by more than the work between the two sizes takes, and the difference means nothing.
    startup_gap = abs(first_kept_small - first_kept)
    steady_reliable = None if math.isnan(startup_gap) else bool(startup_gap < 0.25 * (t_large - t_small))
    if steady_reliable is False:
        print(
            f"{name}: steady rate unreliable (first kept pairs {first_kept_small:.1f}s vs {first_kept:.1f}s "
            "into the two runs); read scoring_stage_pairs_s",
            flush=True,
        )
    return {
        "model": name,
        "workers": workers,
        **clip_params,
        "batch": batch,
        "pairs": k_large,
        "wall_s": round(t_large, 1),
        "wall_pairs_s": round(k_large / t_large, 1),
        "steady_pairs_s": round((k_large - k_small) / (t_large - t_small), 1),
        "steady_reliable": steady_reliable,
        "startup_s": round(t_small - (t_large - t_small) * k_small / (k_large - k_small), 1),
        # From the large run alone: robust where start-up differs between runs (several workers).
        "first_kept_s": round(first_kept, 1),
        "pairs_s_after_first_kept": round(k_large / (t_large - first_kept), 1),
        "scoring_stage_pairs_s": round(scoring_rate, 1),
    }


def scene_pairs(n: int, seed: int = 1, size: tuple[int, int] | None = None) -> list:
    """Pairs of synthetic scenes (JPEG, 300-640 px sides, or `size`) and their English captions."""
    from vlcurate.model.scenes import caption_en, random_scene, render
    from vlcurate.schemas.record import Pair

    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        scene = random_scene(rng)
        buffer = io.BytesIO()
        width, height = size or (rng.randint(300, 640), rng.randint(300, 640))
        render(scene, width, height).save(buffer, "JPEG", quality=90)
        pairs.append(Pair(uid=f"b/{i}", source="b", caption=caption_en(scene, rng), image=buffer.getvalue()))
    return pairs


def path_agreement(models: list[str], n: int = 512) -> list[dict]:
    """Scores of the same JPEGs through the CPU path (PIL, draft on and off) and the GPU path (nvjpeg +
    torch resize): the largest and mean absolute differences of the cosine scores."""
    import numpy as np

    from vlcurate.model.clip_handler import ClipInput, score_batch
    from vlcurate.model.clip_models import load_clip
    from vlcurate.model.clip_preprocess import pil_pixels

    pairs = scene_pairs(n)
    rows = []
    for spec in models:
        model = load_clip(spec, "cuda", compile=False)
        ref = score_batch(
            model, [ClipInput(p, pixels=pil_pixels(p.image, model.image_size, draft=False)) for p in pairs]
        )
        for label, inputs in (
            ("pil_draft", [ClipInput(p, pixels=pil_pixels(p.image, model.image_size)) for p in pairs]),
            ("gpu_nvjpeg", [ClipInput(p, jpeg=p.image) for p in pairs]),
        ):
            diff = np.abs(np.array(score_batch(model, inputs)) - np.array(ref))
            rows.append(
                {
                    "model": spec,
                    "path": label,
                    "vs": "pil_full_decode",
                    "max_abs_diff": round(float(diff.max()), 4),
                    "mean_abs_diff": round(float(diff.mean()), 5),
                    "images": n,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        # precision: fp8 as clip_score runs it (static scales calibrated on synthetic scenes), same inputs.
        gpu_inputs = [ClipInput(p, jpeg=p.image) for p in pairs]
        bf16 = np.array(score_batch(model, gpu_inputs))
        fp8 = np.array(score_batch(load_clip(spec, "cuda", compile=False, fp8=True), gpu_inputs))
        diff = np.abs(fp8 - bf16)
        rows.append(
            {
                "model": spec,
                "path": "gpu_nvjpeg_fp8",
                "vs": "gpu_nvjpeg_bf16",
                "max_abs_diff": round(float(diff.max()), 4),
                "mean_abs_diff": round(float(diff.mean()), 5),
                "images": n,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def resize_speed(device: str, batch: int = 512, repeats: int = 9) -> list[dict]:
    """Milliseconds per batch of gpu_decode_resize on `device`, and of its decoding alone, for images of
    one size and of `batch` distinct sizes (web images come in many sizes; each distinct size is resized
    on its own, so its kernel launches, or on the CPU its dispatches, add up). Small images (64-95 px to
    32 px) keep the arithmetic small, so the per-size cost shows; median of `repeats` batches."""
    import statistics

    import torch

    from vlcurate.model.clip_preprocess import _decode_torchvision, gpu_decode_resize
    from vlcurate.model.scenes import random_scene, render

    def median_ms(fn) -> float:
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        return round(1000 * statistics.median(seconds), 1)

    torch.set_num_threads(1)  # per-size costs, not thread scheduling
    rng = random.Random(5)
    shapes = {
        "one size": [(80, 72)] * batch,
        "mixed sizes": [(64 + i % 32, 64 + i // 32) for i in range(batch)],
        # Shorter side already 32: no resampling, so only the per-size cast and the crop gather remain.
        "mixed sizes, crop only": [(33 + i, 32) for i in range(batch)],
    }
    rows = []
    for label, sizes in shapes.items():
        jpegs = []
        for width, height in sizes:
            buffer = io.BytesIO()
            render(random_scene(rng), width, height).save(buffer, "JPEG", quality=90)
            jpegs.append(buffer.getvalue())
        total = median_ms(lambda jpegs=jpegs: gpu_decode_resize(jpegs, 32, device))
        decode = median_ms(lambda jpegs=jpegs: _decode_torchvision(jpegs, device))
        rows.append(
            {
                "device": device,
                "images": label,
                "distinct_sizes": len(set(sizes)),
                "batch": batch,
                "ms_per_batch": total,
                "of_which_decode_ms": decode,
                "resize_ms": round(total - decode, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def decode_speed(n: int = 2048, size: int = 224) -> list[dict]:
    """Images/s from JPEG bytes to size x size uint8 pixels: nvjpeg + torch resize on the GPU (batches of
    256) vs PIL (draft mode) on 1 and on all CPU threads; 512x384 scenes like the e2e data."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from vlcurate.model.clip_preprocess import gpu_decode_resize, pil_pixels
    from vlcurate.model.scenes import random_scene, render

    rng = random.Random(2)
    jpegs = []
    for _ in range(256):
        buffer = io.BytesIO()
        render(random_scene(rng), 512, 384).save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    jpegs = (jpegs * (n // len(jpegs) + 1))[:n]

    def gpu() -> None:
        for start in range(0, n, 256):
            gpu_decode_resize(jpegs[start : start + 256], size, "cuda")
        torch.cuda.synchronize()

    def pil(threads: int):
        def run() -> None:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda b: pil_pixels(b, size), jpegs))

        return run

    rows = []
    threads = min(16, os.cpu_count() or 1)
    for label, fn in (
        ("gpu_nvjpeg", gpu),
        ("pil_1_thread", pil(1)),
        (f"pil_{threads}_threads", pil(threads)),
    ):
        fn()  # warm-up
        start = time.perf_counter()
        fn()
        rows.append({"path": label, "images": n, "img_s": round(n / (time.perf_counter() - start), 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def queue_timing(models: list[str], batch: int, iters: int = 8) -> list[dict]:
    """Does queueing a batch's scoring wait for the GPU? Seconds to queue `iters` batches of JPEGs back to
    back (scores read only at the end), against the time until all scores are read; torch-level syncs
    inside queueing are printed once each with their stack."""
    import traceback
    import warnings

    import torch

    from vlcurate.model import clip_handler, clip_preprocess
    from vlcurate.model.clip_handler import ClipInput, PendingScores
    from vlcurate.model.clip_models import load_clip

    inputs_of = {  # web images come in many sizes (resized per size); the e2e data in one
        "mixed": [ClipInput(p, jpeg=p.image) for p in scene_pairs(batch, seed=4)],
        "512x384": [ClipInput(p, jpeg=p.image) for p in scene_pairs(batch, seed=4, size=(512, 384))],
    }
    seen: set[str] = set()
    spent: dict[str, float] = {}

    def timed(module, name: str) -> None:  # wall time inside `name`, to find a step that waits
        inner = getattr(module, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

        setattr(module, name, wrapper)

    for name in ("gpu_decode_resize", "to_device", "normalize", "_encode_images", "encode_captions"):
        timed(clip_handler, name)
    timed(clip_preprocess, "_decode_torchvision")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if str(message).startswith("Synchronization debug mode is a prototype"):
            return  # torch's notice on switching the mode on, not a sync
        if str(message) not in seen:
            seen.add(str(message))
            print(f"SYNC: {message}\n" + "".join(traceback.format_stack(limit=9)[:-1]), flush=True)

    rows = []
    for spec in models:
        model = load_clip(f"{spec}@random", "cuda", compile=False)
        for sizes, inputs in inputs_of.items():
            for _ in range(2):  # warm-up: kernels, pinned-memory cache
                PendingScores().queue(model, inputs)
            torch.cuda.synchronize()
            spent.clear()
            pending = [PendingScores() for _ in range(iters)]
            warnings.showwarning, saved = show, warnings.showwarning
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            start = time.perf_counter()
            queue_s = []
            for p in pending:
                p.queue(model, inputs)
                queue_s.append(time.perf_counter() - start - sum(queue_s))
            queued = time.perf_counter() - start
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = saved
            for p in pending:
                p.result()
            done = time.perf_counter() - start
            rows.append(
                {
                    "model": spec,
                    "image_sizes": sizes,
                    "batch": batch,
                    "batches": iters,
                    "queue_ms_each": [round(1000 * s, 1) for s in queue_s],
                    "all_queued_s": round(queued, 3),
                    "ms_per_batch_in": {k: round(1000 * v / iters, 1) for k, v in sorted(spent.items())},
                    "all_scored_s": round(done, 3),
                    "pairs_s": round(iters * batch / done, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["model", "e2e", "paths", "decode", "queue", "resize"])
    parser.add_argument("--device", default="cuda", help="resize: the device to run on (cuda or cpu)")
    parser.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-L-14", "ViT-bigG-14"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--compile", action="store_true", help="e2e: torch.compile the image tower")
    parser.add_argument("--cpu-decode", action="store_true", help="e2e: decode JPEGs with PIL threads")
    parser.add_argument(
        "--precision", default="bf16", choices=["bf16", "fp8"], help="e2e: clip_score.precision"
    )
    parser.add_argument("--profile", action="store_true", help="e2e: print where the large run spends time")
    parser.add_argument(
        "--carry-too",
        action="store_true",
        help="e2e: also run with output.reread_images false (kept images carried through the shuffle)",
    )
    parser.add_argument(
        "--mixed-sizes",
        action="store_true",
        help="e2e: JPEGs of random sizes (300-800 px sides) instead of all 512x384",
    )
    parser.add_argument(
        "--serial-too",
        action="store_true",
        help="e2e: also run with clip_score.overlap false (scores read as each batch is scored)",
    )
    parser.add_argument(
        "--share-too",
        action="store_true",
        help="e2e: also run with clip_score.share_model true (one model for all worker processes)",
    )
    parser.add_argument(
        "--pairs", type=json.loads, default={"ViT-B-32": 80000, "ViT-L-14": 24000, "ViT-bigG-14": 8000}
    )
    args = parser.parse_args()
    if args.mode == "model":
        rows = [r for m in args.models for r in model_only(m, args.batch, args.iters, args.variants)]
    elif args.mode == "paths":
        rows = path_agreement(args.models)
    elif args.mode == "decode":
        rows = decode_speed()
    elif args.mode == "queue":
        rows = queue_timing(args.models, args.batch)
    elif args.mode == "resize":
        rows = resize_speed(args.device, args.batch)
    else:
        settings = [
            {
                "compile": args.compile,
                "gpu_decode": not args.cpu_decode,
                "precision": args.precision,
                "overlap": overlap,
                "share_model": share,
                "reread_images": reread,
            }
            for reread in ([True, False] if args.carry_too else [True])
            for overlap in ([True, False] if args.serial_too else [True])
            for share in ([False, True] if args.share_too else [False])
            if not (share and not overlap)  # a shared model ignores overlap
        ]
        rows = e2e(
            args.models, args.pairs, args.workers, args.batch, settings, args.profile, args.mixed_sizes
        )
    print(f"wrote {write_results(f'clip_gpu_{args.mode}', rows, device_name())}")


if __name__ == "__main__":
    main()
