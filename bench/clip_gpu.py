"""CLIP scoring speed on the GPU: model-only forward and end-to-end through the Beam pipeline.

    python bench/clip_gpu.py model --models ViT-L-14 [--variants compile fp8 ...]
    python bench/clip_gpu.py e2e --models ViT-B-32 ViT-L-14 --workers 1 [--chain minimal | --compare-minimal] [--breakdown] [--repeats N] [--carry-too] [--serial-too] [--share-too] [--mixed-sizes] [--cpu-decode] [--profile]
    python bench/clip_gpu.py e2e --device cpu --workers 1 --pairs 4000 --compare-minimal --breakdown
    python bench/clip_gpu.py paths --models ViT-B-32@random
    python bench/clip_gpu.py decode
    python bench/clip_gpu.py queue --models ViT-L-14
    python bench/clip_gpu.py resize [--device cpu]

`model`: image-tower img/s for the VARIANTS below (open_clip eager; SDPA attention; compile, autotune,
CUDA graphs; fp8 with dynamic row or tensor scales, or static calibrated scales as `precision: fp8` uses), plus full scoring (image + ~16-token captions), random weights in
bf16, with MFU against PEAK_TFLOPS.
`e2e`: encoded JPEGs in WebDataset tars, each with a real web alt text (tests/data's 10k; by default only
those the default text steps keep, so every chain scores the same pairs) -> `vlcurate clean` -> shards,
with the chain a user's `vlcurate clean` runs (every default step: text steps, image checks, decode_check,
CLIP, dedup), or with `--chain minimal` only probe_image, clip_score and clip_filter (what this mode ran
before; `--compare-minimal` runs both in the same call, taking turns). Timed at two input sizes so
start-up (workers, model loads) cancels out of the steady rate (`steady_reliable` is false where the two
runs' start-ups differ by over a quarter of the time between them, as with compile on several workers),
and (robust when start-up varies between runs, as with several workers) the large run's pairs/s after its
first kept pairs appeared, shard writing included. Each chain's rates are set against the model alone
(image + text towers of the same model object, the same captions) measured in the same call. Kept and
rejected pairs are reported per chain; a reject by clip_filter, or an undecodable image, is flagged (the
threshold keeps every real score, so it means a NaN score). With --serial-too every run's scores are also
compared pair by pair with the serial run's, which no race between batches on the GPU can touch. With
--breakdown each part of each chain is also timed per pair in this process without Beam
(bench/chain_costs.py), and the default chain's extra parts are set against the measured difference;
`--device cpu` runs it all without a GPU (the bundled tiny CLIP by default).
`paths`: score differences of the nvjpeg path and PIL draft decoding against a full PIL decode, and of
`precision: fp8` against bf16.
`decode`: img/s from JPEG bytes to model pixels, nvjpeg vs PIL on one and on all threads.
`resize`: ms per batch of JPEG decode + resize for one image size vs many distinct sizes (runs on the CPU
too).
`queue`: whether queueing a batch's scoring waits for the GPU (it must not, for clip_score.overlap).
Results go to bench/results/clip_gpu_<mode>.json (e2e: clip_gpu_e2e_<chain>[_cpu].json); the README quotes
them with the machine.
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
import typing

from report import write_results

PEAK_TFLOPS = 800.0  # measured bf16 dense matmul peak on an H100 (bench/README.md)


def device_name(device: str = "cuda") -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
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
# The chain `e2e` ran before the default chain; kept for comparison (`--chain minimal`, `--compare-minimal`).
MINIMAL_CHAIN = ("probe_image", "clip_score", "clip_filter")
CHAINS = ("default", "minimal")
WEB_CAPTIONS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "data", "web_captions_10k.parquet"
)
# Each end-to-end rate and the name of its share of model-only pairs/s in a row.
RATIOS = {
    "steady_pairs_s": "steady_of_model_only",
    "pairs_s_after_first_kept": "after_first_kept_of_model_only",
    "scoring_stage_pairs_s": "scoring_stage_of_model_only",
    "read_stage_pairs_s": "read_stage_of_model_only",
}
# Rejects that mean a NaN score or a lost image: the threshold keeps every real score, and the JPEGs decode.
NAN_REASONS = {"clip_low_score", "clip_no_score", "image_undecodable", "image_truncated"}


def chain_disable(chain: str) -> list[str]:
    """The steps a chain turns off: `default` none (what `vlcurate clean` runs with no --disable),
    `minimal` all but MINIMAL_CHAIN."""
    from vlcurate.filters.chain import DEFAULT_CHAIN

    return [] if chain == "default" else [s for s in DEFAULT_CHAIN if s not in MINIMAL_CHAIN]


def model_spec(name: str) -> str:
    """A --models name as a clip_score spec: architectures get random weights, full specs stay."""
    return name if ":" in name or "@" in name else f"{name}@random"


def web_captions(path: str, every: bool = False) -> tuple[list[str], list[str]]:
    """(raw captions for the tars, the captions the default text steps keep, cleaned) from real web alt
    texts. Unless `every`, the raw list holds only captions every default text step keeps (92% of the
    10k), so both chains score the same pairs; their cleaning still happens in the run (HTML, entities,
    mojibake, URLs are still in them)."""
    import pyarrow.parquet as pq

    from vlcurate.filters.chain import DEFAULT_CHAIN
    from vlcurate.filters.registry import build_step
    from vlcurate.filters.runner import StepRunner
    from vlcurate.schemas.batch import batched
    from vlcurate.schemas.record import Pair

    texts = pq.read_table(path, columns=["TEXT"]).column("TEXT").to_pylist()
    text_steps = DEFAULT_CHAIN[: DEFAULT_CHAIN.index("probe_image")]
    runner = StepRunner({"web": [build_step(name) for name in text_steps]})
    pairs = [Pair(uid=f"web/{i}", source="web", caption=t, caption_raw=t) for i, t in enumerate(texts)]
    kept = [p for batch in batched(pairs) for p in runner.run(batch)]
    return (texts if every else [p.caption_raw for p in kept]), [p.caption for p in kept]


def _render_shard(args: tuple[str, int, int, int, bool, list[str] | None]) -> int:
    from vlcurate.formatters.webdataset import TarShardWriter
    from vlcurate.model.scenes import caption_en, random_scene, render

    path, start, count, seed, mixed, captions = args
    rng = random.Random(seed * 1_000_003 + start)
    with open(path, "wb") as fh, TarShardWriter(fh) as writer:
        for i in range(start, start + count):
            scene = random_scene(rng)
            buffer = io.BytesIO()
            width, height = (rng.randint(300, 800), rng.randint(300, 800)) if mixed else (512, 384)
            render(scene, width, height).save(buffer, "JPEG", quality=90)
            caption = captions[i - start] if captions else caption_en(scene, rng)
            writer.add(f"{i:09d}", {"jpg": buffer.getvalue(), "txt": caption.encode()})
    return count


def make_jpeg_tars(
    folder: str, n: int, per_tar: int = 1000, mixed: bool = False, captions: list[str] | None = None
) -> None:
    """n JPEG scenes with captions in WebDataset tars: 512x384, or with `mixed` a random size per image
    (sides 300-800 px; web images come in many sizes, which the GPU path resizes size by size). Captions:
    `captions` in turn (pair i gets captions[i % len]), else a synthetic one describing the scene."""
    os.makedirs(folder, exist_ok=True)

    def chunk(s: int, count: int) -> list[str] | None:
        return [captions[i % len(captions)] for i in range(s, s + count)] if captions else None

    jobs = [
        (os.path.join(folder, f"{s // per_tar:05d}.tar"), s, c, 0, mixed, chunk(s, c))
        for s in range(0, n, per_tar)
        for c in [min(per_tar, n - s)]
    ]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        pool.map(_render_shard, jobs)


def counting_printer():
    """A ProgressPrinter (pipelines/progress.py) that also samples the kept and read counts every 0.2 s
    into its class's `samples` (wall time, kept, read), so a run's start-up can be read off the run itself
    (the time its first kept pairs appear), and so can the time after the last pair was read (a group
    step's shuffle and the shard writing). Its lines still print every `interval` seconds."""
    from vlcurate.pipelines.progress import ProgressPrinter

    class CountingPrinter(ProgressPrinter):
        samples: list[tuple[float, int, int]] = []

        def _loop(self) -> None:
            next_line = self.interval
            while not self._stop.wait(0.2):
                elapsed = time.monotonic() - self._start
                counts = self.counts()  # per stage, summed over the workers' files
                CountingPrinter.samples.append(
                    (time.perf_counter(), counts.get("kept", 0), counts.get("read", 0))
                )
                if elapsed >= next_line:
                    print(self.line(elapsed), file=self.stream, flush=True)
                    next_line += self.interval

    return CountingPrinter


class CleanRun(typing.NamedTuple):
    seconds: float
    cpu_seconds: float  # CPU time of this process and its waited-for children (every thread)
    read: int
    kept: int
    first_kept: float  # seconds until the first kept pairs appeared (NaN when only at the end)
    scoring_rate: float  # the scoring stage's pairs/s (middle_rate of the kept count)
    read_rate: float  # pairs/s while the read count went from 10% to 90% (the stages fused with reading)
    all_read: float  # seconds until every pair had been read (NaN if never seen)
    rejected_by_reason: dict


def run_clean_timed(
    tars: str, spec: str, workers: int, batch: int, out: str, clip_params: dict, chain: str = "default"
) -> CleanRun:
    """`vlcurate clean` of the tars with `chain`'s steps, timed. Start-up (worker start, model load, first
    batch) is read off the run as the time its first kept pairs appeared."""
    from chain_costs import chain_config

    from vlcurate.pipelines import progress
    from vlcurate.pipelines.clean import run_clean

    config = chain_config(tars, out, spec, batch, clip_params, chain_disable(chain), workers)
    printer = counting_printer()
    progress.ProgressPrinter = printer  # bench only: progress_folder() makes this printer for the run
    cpu = cpu_seconds()
    start = time.perf_counter()
    try:
        stats = run_clean(config, progress=True)
    finally:
        progress.ProgressPrinter = printer.__base__
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    first_kept = next((t - start for t, kept, _ in printer.samples if kept > 0), math.nan)
    all_read = next(
        (t - start for t, _, read in printer.samples if read >= stats["totals"]["read"]), math.nan
    )
    if not first_kept < 0.95 * seconds:  # kept pairs showed only at the end (one bundle): no start-up seen
        first_kept = math.nan
    with open(os.path.join(out, "info.json")) as fh:
        written = sum(s["pairs"] for s in json.load(fh)["shards"])
    totals = stats["totals"]
    reasons = stats["sources"]["bench"]["rejected_by_reason"]
    if NAN_REASONS & set(reasons):
        print(f"UNEXPECTED REJECTS (NaN scores or lost images?): {reasons}", flush=True)
    if not totals["read"] == totals["kept"] + totals["rejected"] == written + totals["rejected"]:
        report_loss(out, tars, totals, written)
    return CleanRun(
        seconds,
        cpu,
        totals["read"],
        totals["kept"],
        first_kept,
        middle_rate(printer.samples, totals["kept"]),
        middle_rate(printer.samples, totals["read"], column=2),
        all_read,
        reasons,
    )


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that were waited for: what an
    in-process run cost the cores, not how long it waited for them (threads that spin while they wait
    count too, so a busy machine still moves it; local --workers processes count once reaped)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def middle_rate(samples: list[tuple[float, int, int]], total: int, column: int = 1) -> float:
    """Pairs/s while a count (column 1: kept, 2: read) went from 10% to 90% of `total`: for kept pairs
    the rate of the stage that scores and keeps them (without start-up, the shard writing that follows,
    or the workers' exit) where no group step holds them back; for pairs read, the rate of the stages
    fused with reading (CLIP's included), whatever follows the shuffle."""
    low = next(((row[0], row[column]) for row in samples if row[column] >= 0.1 * total), None)
    high = next(((row[0], row[column]) for row in samples if row[column] >= 0.9 * total), None)
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
    sizes: dict[str, int] | int,
    workers: int,
    batch: int,
    settings: list[dict],
    profile: bool,
    mixed: bool = False,
    chains: tuple[str, ...] = ("default",),
    device: str = "cuda",
    captions: tuple[list[str], list[str]] | None = None,
    iters: int = 10,
    breakdown: dict | None = None,
    repeats: int = 1,
) -> list[dict]:
    """Per model: pairs/s per chain and clip_score settings (each a dict of its params) on the same tars,
    then the model alone on the pipeline's own model object (model_only_rate), each chain's rates as a
    share of it, and with `breakdown` ({"pairs": N, "repeats": R}) each chain's parts per pair
    (chain_costs.py). `captions`: web_captions' (raw, cleaned); None: synthetic scene captions."""
    raw, cleaned = captions or (None, None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            spec = model_spec(name)
            n = sizes if isinstance(sizes, int) else sizes[name]
            small, large = os.path.join(tmp, f"{name}-small"), os.path.join(tmp, f"{name}-large")
            started = time.perf_counter()
            make_jpeg_tars(small, n // 4, mixed=mixed, captions=raw)
            make_jpeg_tars(large, n, mixed=mixed, captions=raw)
            print(f"{name}: made {n + n // 4} JPEGs in {time.perf_counter() - started:.0f}s", flush=True)
            compared = any(map(is_serial, settings))
            scores: dict[tuple[str, int], dict] = {}
            model_rows: list[dict] = []
            for i, clip_params in enumerate(settings):
                by_chain = _e2e_rows(
                    name, spec, small, large, tmp, workers, batch, clip_params, profile, chains, repeats
                )
                for chain, row in by_chain.items():
                    if compared:  # read back only when a serial run is there to compare with
                        scores[(chain, i)] = written_scores(os.path.join(tmp, f"out-l-{chain}"))
                    model_rows.append({**row, "image_sizes": "300-800 px, mixed" if mixed else "512x384"})
                    print(json.dumps(model_rows[-1]), flush=True)
            if compared:
                for chain in chains:
                    mine = [r for r in model_rows if r["chain"] == chain]
                    compare_with_serial(mine, settings, {i: scores[(chain, i)] for i in range(len(settings))})
            first = settings[0]
            baseline = model_only_rate(
                spec, device, batch, iters, first["compile"], first["precision"], cleaned or []
            )
            print(json.dumps(baseline), flush=True)
            for row in model_rows:
                row["model_only_pairs_s"] = baseline["pairs_s"]
                for key, share in RATIOS.items():
                    row[share] = round(row[key] / baseline["pairs_s"], 3)
            rows += [*model_rows, baseline]
            if breakdown is not None:
                from chain_costs import breakdown as chain_breakdown

                parts = chain_breakdown(
                    large,
                    {chain: chain_disable(chain) for chain in chains},
                    spec,
                    first.get("device", "auto"),
                    batch,
                    first,
                    min(n, breakdown["pairs"]),
                    breakdown["repeats"],
                )
                rows += [{"model": name, **p} for p in parts]
                rows += explain(name, model_rows, parts)
    return rows


def model_only_rate(
    spec: str, device: str, batch: int, iters: int, compile: bool, precision: str, captions: list[str]
) -> dict:
    """Pairs/s of the model alone: the image and text towers on a ready batch (pixels normalized on the
    device, `batch` captions: the web captions as the default text steps leave them, or synthetic ones),
    the model loaded as a worker loads it (load_clip: bf16 + SDPA on a GPU, fp8, compile; fp32 on the
    CPU). Tokenizing is included, decoding and everything else of the pipeline is not."""
    import numpy as np
    import torch

    from vlcurate.model.clip_handler import _encode_images, encode_captions
    from vlcurate.model.clip_models import load_clip
    from vlcurate.model.clip_preprocess import normalize, pil_pixels

    on = "cuda" if device != "cpu" else "cpu"
    model = load_clip(spec, on, compile=compile, fp8=precision == "fp8")
    images = [pil_pixels(p.image, model.image_size) for p in scene_pairs(64, size=(512, 384))]
    pixels = torch.from_numpy(np.stack([images[i % len(images)] for i in range(batch)]))
    x = normalize(pixels.to(on).permute(0, 3, 1, 2), model.mean, model.std, model.dtype)
    texts = captions or [f"a photo of {i} red circles on a blue background at the top" for i in range(batch)]
    texts = [texts[i % len(texts)] for i in range(batch)]

    with torch.inference_mode():
        seconds = seconds_per_call(
            lambda: (_encode_images(model, x), encode_captions(model, texts)), on, iters
        )
    return {
        "kind": "model_only",
        "model": spec,
        "device": on,
        "compile": compile,
        "precision": precision if on == "cuda" else "fp32",
        "batch": batch,
        "captions": "web (cleaned)" if captions else "synthetic",
        "pairs_s": round(batch / seconds, 1),
    }


def seconds_per_call(fn, device: str, iters: int, warmup: int = 3, rounds: int = 3) -> float:
    """Mean seconds of `fn` over `iters` calls after `warmup` (compile happens there), the GPU's queue
    drained before and after (time_call, on either device); the fastest of `rounds` such rounds, since
    other jobs on a shared machine only ever slow a round down (on the CPU they did, by up to 9x)."""
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        best = min(best, (time.perf_counter() - start) / iters)
    return best


def explain(name: str, e2e_rows: list[dict], parts: list[dict]) -> list[dict]:
    """Per part of the breakdown, what the default chain spends on it per pair beyond the minimal chain
    (wall and CPU microseconds), and the measured end-to-end difference that should explain, per kept
    pair, from the first settings' rows: steady wall time, steady CPU time, and wall time after the first
    kept pairs. Parts that do the same work in both chains (chain_costs.same_work) are summed apart:
    their difference is the timing's noise, not cost."""
    from chain_costs import same_work

    cost: dict[str, dict[str, dict[str, float]]] = {}
    for p in parts:
        cost.setdefault(p["chain"], {})[p["part"]] = {
            "wall": p["us_per_pair_read"],
            "cpu": p["cpu_us_per_pair_read"],
        }
    if not {"default", "minimal"} <= set(cost):
        return []
    none = {"wall": 0.0, "cpu": 0.0}
    first = {r["chain"]: r for r in reversed(e2e_rows)}  # the first row of each chain
    rows = []
    for part in dict.fromkeys([*cost["default"], *cost["minimal"]]):
        d, m = cost["default"].get(part, none), cost["minimal"].get(part, none)
        rows.append(
            {
                "kind": "extra_cost",
                "model": name,
                "part": part,
                "same_work": same_work(part),
                "us_per_pair": round(d["wall"] - m["wall"], 2),
                "cpu_us_per_pair": round(d["cpu"] - m["cpu"], 2),
            }
        )
    summary: dict = {"kind": "extra_cost_summary", "model": name}
    for key in ("us_per_pair", "cpu_us_per_pair"):
        summary[f"explained_{key}"] = round(sum(r[key] for r in rows if not r["same_work"]), 1)
        summary[f"same_work_difference_{key}"] = round(sum(r[key] for r in rows if r["same_work"]), 1)
    for key, label in (("steady_pairs_s", "steady"), ("pairs_s_after_first_kept", "after_first_kept")):
        d, m = first["default"][key], first["minimal"][key]
        measured = 1e6 / d - 1e6 / m if d > 0 and m > 0 else math.nan
        summary[f"measured_us_per_pair_{label}"] = round(measured, 1)
        summary[f"unexplained_us_per_pair_{label}"] = round(measured - summary["explained_us_per_pair"], 1)
    measured = first["default"]["steady_cpu_us_per_pair"] - first["minimal"]["steady_cpu_us_per_pair"]
    summary["measured_cpu_us_per_pair_steady"] = round(measured, 1)
    summary["unexplained_cpu_us_per_pair_steady"] = round(measured - summary["explained_cpu_us_per_pair"], 1)
    if "runs" in first["default"] and "runs" in first["minimal"]:
        # The chains' runs of one repeat ran back to back, so a busy spell of the machine hits both:
        # their differences, repeat by repeat, show how far the medians above can be trusted.
        pairs = list(zip(first["default"]["runs"], first["minimal"]["runs"]))
        wall = [1e6 / d["steady_pairs_s"] - 1e6 / m["steady_pairs_s"] for d, m in pairs]
        cpu = [d["steady_cpu_us_per_pair"] - m["steady_cpu_us_per_pair"] for d, m in pairs]
        summary["measured_us_per_pair_steady_per_repeat"] = [round(x, 1) for x in wall]
        summary["measured_cpu_us_per_pair_steady_per_repeat"] = [round(x, 1) for x in cpu]
        summary["measured_us_per_pair_steady_paired_median"] = _median(wall)
        summary["measured_cpu_us_per_pair_steady_paired_median"] = _median(cpu)
    return [*rows, summary]


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


def _e2e_rows(
    name: str,
    spec: str,
    small: str,
    large: str,
    tmp: str,
    workers: int,
    batch: int,
    clip_params: dict,
    profile: bool,
    chains: tuple[str, ...],
    repeats: int = 1,
) -> dict[str, dict]:
    """A row per chain: a warm-up run, then `repeats` times a small and a large run, the chains taking
    turns in each phase so that machine noise hits them alike. Rates are the medians over the repeats."""
    runs: dict[str, list[tuple[CleanRun, CleanRun]]] = {chain: [] for chain in chains}
    for chain in chains:
        run_clean_timed(small, spec, workers, batch, os.path.join(tmp, f"out-w-{chain}"), clip_params, chain)
    for _ in range(repeats):
        small_runs = {
            chain: run_clean_timed(
                small, spec, workers, batch, os.path.join(tmp, f"out-s-{chain}"), clip_params, chain
            )
            for chain in chains
        }
        for chain in chains:
            with profiled(profile):
                big = run_clean_timed(
                    large, spec, workers, batch, os.path.join(tmp, f"out-l-{chain}"), clip_params, chain
                )
            runs[chain].append((small_runs[chain], big))
    rows = {}
    for chain in chains:
        rates = [_rates(name, chain, s, big) for s, big in runs[chain]]
        big = runs[chain][-1][1]
        rows[chain] = {
            "kind": "e2e",
            "model": name,
            "chain": chain,
            "steps": chain_steps(chain),
            "workers": workers,
            **clip_params,
            "batch": batch,
            "read": big.read,
            "pairs": big.kept,
            "kept_share": round(big.kept / big.read, 4),
            "rejected_by_reason": big.rejected_by_reason,
            **{key: _median([r[key] for r in rates]) for key in rates[0]},
            "repeats": repeats,
            **({"runs": rates} if repeats > 1 else {}),
        }
    return rows


def _median(values: list):
    """The median of numbers (NaN ones left out), all() of flags, else the first value."""
    import statistics

    if all(isinstance(v, bool) for v in values):
        return all(values)  # steady_reliable: only if every repeat's was
    if not all(isinstance(v, float) for v in values):
        return values[0]
    known = [v for v in values if not math.isnan(v)]
    return round(statistics.median(known), 1) if known else math.nan


def _rates(name: str, chain: str, s: CleanRun, big: CleanRun) -> dict:
    """The rates of one small and one large run of a chain, in pairs read: every one reaches CLIP (the
    tars hold captions the text steps keep), while the group steps after it reject some (near_dedup takes
    14-30% of the random scenes as near duplicates), so kept pairs would undercount the work done. The
    first-kept times mean start-up only for a chain without group steps: a group step's shuffle holds
    every kept pair back until scoring is done, so for the default chain read the steady rate."""
    # The steady rate assumes both runs started up alike; compile and several workers can make their
    # start-ups differ by more than the work between the two sizes takes, and the difference means nothing.
    startup_gap = abs(s.first_kept - big.first_kept)
    gap = big.seconds - s.seconds
    steady_reliable = None if math.isnan(startup_gap) else bool(startup_gap < 0.25 * gap)
    if steady_reliable is False:
        print(
            f"{name} ({chain} chain): steady rate unreliable (first kept pairs {s.first_kept:.1f}s vs "
            f"{big.first_kept:.1f}s into the two runs); read scoring_stage_pairs_s",
            flush=True,
        )
    return {
        "wall_s": round(big.seconds, 1),
        "wall_pairs_s": round(big.read / big.seconds, 1),
        "steady_pairs_s": round((big.read - s.read) / gap, 1),
        "steady_kept_pairs_s": round((big.kept - s.kept) / gap, 1),
        "steady_reliable": steady_reliable,
        # CPU time per pair read between the two runs: what a pair costs the cores (cpu_seconds).
        "steady_cpu_us_per_pair": round((big.cpu_seconds - s.cpu_seconds) / (big.read - s.read) * 1e6, 1),
        "startup_s": round(s.seconds - gap * s.read / (big.read - s.read), 1),
        # From the large run alone: robust where start-up differs between runs (several workers).
        "first_kept_s": round(big.first_kept, 1),
        "pairs_s_after_first_kept": round(big.kept / (big.seconds - big.first_kept), 1),
        "scoring_stage_pairs_s": round(big.scoring_rate, 1),
        # Reading is fused with the per-pair steps (CLIP too), so this is their rate for any chain;
        # what follows the last read (a group step's shuffle, the shards) is after_all_read_s.
        "read_stage_pairs_s": round(big.read_rate, 1),
        "after_all_read_s": round(big.seconds - big.all_read, 1),
    }


def chain_steps(chain: str) -> list[str]:
    """The per-pair and group steps a chain runs, in order (build_chain on the e2e's config)."""
    from chain_costs import chain_config

    from vlcurate.filters.chain import build_chain

    config = chain_config(
        "in", "out", "bundled:tiny-synth-clip", 1, {"reread_images": True}, chain_disable(chain)
    )
    built = build_chain(config)
    return built.names + built.group_steps


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


def print_e2e(rows: list[dict]) -> None:
    """The e2e's tables: rates per chain against model-only, and with --breakdown the parts per pair."""
    for r in (r for r in rows if r.get("kind") == "e2e"):
        print(
            f"{r['model']} {r['chain']:8s} kept {r['pairs']:,}/{r['read']:,}  steady {r['steady_pairs_s']:,.1f} "
            f"({r['steady_of_model_only']:.0%} of model-only {r['model_only_pairs_s']:,.1f}), CPU "
            f"{r['steady_cpu_us_per_pair']:,.0f} us/pair  after first kept {r['pairs_s_after_first_kept']:,.1f} "
            f"({r['after_first_kept_of_model_only']:.0%})  scoring stage {r['scoring_stage_pairs_s']:,.1f} "
            f"({r['scoring_stage_of_model_only']:.0%})  read stage {r['read_stage_pairs_s']:,.1f} "
            f"({r['read_stage_of_model_only']:.0%}), then {r['after_all_read_s']:.1f}s after the last read  "
            f"rejects {r['rejected_by_reason'] or 'none'}"
        )
    costs: dict[tuple[str, str], dict[str, dict]] = {}
    for r in (r for r in rows if r.get("kind") == "step_cost"):
        costs.setdefault((r["model"], r["part"]), {})[r["chain"]] = r
    if costs:
        print(f"\n{'us per pair read, best of passes: wall (CPU)':72s} {'default':>15s} {'minimal':>15s}")
    for (model, part), by_chain in costs.items():
        cells = [
            f"{c['us_per_pair_read']:7.1f} ({c['cpu_us_per_pair_read']:7.1f})" if c else "-"
            for c in (by_chain.get("default"), by_chain.get("minimal"))
        ]
        print(f"{model[:14] + ' ' + part:72s} {cells[0]:>15s} {cells[1]:>15s}")
    for r in (r for r in rows if r.get("kind") == "extra_cost_summary"):
        print(
            f"{r['model']}: the default chain's extra parts {r['explained_us_per_pair']} us/pair wall, "
            f"{r['explained_cpu_us_per_pair']} CPU (parts doing the same work in both chains differ by "
            f"{r['same_work_difference_us_per_pair']} / {r['same_work_difference_cpu_us_per_pair']}: noise); "
            f"measured end to end {r['measured_us_per_pair_steady']} wall (steady), "
            f"{r['measured_cpu_us_per_pair_steady']} CPU (steady), {r['measured_us_per_pair_after_first_kept']} "
            "wall after the first kept pairs, more per kept pair"
        )
        if "measured_us_per_pair_steady_per_repeat" in r:
            print(
                f"  repeat by repeat (default - minimal, us per kept pair): wall "
                f"{r['measured_us_per_pair_steady_per_repeat']} (median {r['measured_us_per_pair_steady_paired_median']}), "
                f"CPU {r['measured_cpu_us_per_pair_steady_per_repeat']} "
                f"(median {r['measured_cpu_us_per_pair_steady_paired_median']})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["model", "e2e", "paths", "decode", "queue", "resize"])
    parser.add_argument(
        "--device",
        default="cuda",
        choices=["cuda", "cpu"],
        help="resize: the device to run on; e2e: cpu runs clip_score on the CPU (clip_score.device: cpu), "
        "e.g. with the bundled tiny CLIP, so the pipeline's CPU side can be timed without a GPU",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        help="model names (random weights) or full clip_score specs (e2e: bundled:tiny-synth-clip); "
        "default ViT-B-32 ViT-L-14 ViT-bigG-14, with e2e --device cpu bundled:tiny-synth-clip",
    )
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
        "--pairs",
        type=json.loads,
        default={"ViT-B-32": 80000, "ViT-L-14": 24000, "ViT-bigG-14": 8000, "bundled:tiny-synth-clip": 4000},
        help='e2e: JPEGs of the large run per model, as JSON: {"ViT-L-14": 24000} or one number for all',
    )
    parser.add_argument(
        "--chain",
        default="default",
        choices=CHAINS,
        help="e2e: default: every step `vlcurate clean` runs with no --disable (text steps, image checks, "
        "decode_check, CLIP, dedup); minimal: probe_image, clip_score, clip_filter only (the e2e before)",
    )
    parser.add_argument(
        "--compare-minimal",
        action="store_true",
        help="e2e: also run the minimal chain in the same call, the chains taking turns",
    )
    parser.add_argument(
        "--captions",
        default=WEB_CAPTIONS,
        help="e2e: Parquet of real alt texts (TEXT column) for the pairs; default tests/data's 10k",
    )
    parser.add_argument(
        "--all-captions",
        action="store_true",
        help="e2e: every caption, also those the default text steps reject (8%% of the 10k); by default "
        "only captions they keep, so that both chains score the same pairs",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="e2e: also time each part of each chain per pair in this process, without Beam "
        "(bench/chain_costs.py), and set the default chain's extra parts against the measured difference",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="e2e: small + large runs per chain and settings, alternating; rows give the medians",
    )
    parser.add_argument(
        "--breakdown-pairs", type=int, default=8000, help="e2e --breakdown: pairs of the large run it reads"
    )
    parser.add_argument("--breakdown-repeats", type=int, default=3, help="e2e --breakdown: best of N passes")
    parser.add_argument(
        "--out",
        help="results name under bench/results/ (no .json); default clip_gpu_<mode>, for e2e "
        "clip_gpu_e2e_<chain>, with --device cpu clip_gpu_e2e_<chain>_cpu",
    )
    args = parser.parse_args()
    if args.models is None:
        cpu_e2e = args.mode == "e2e" and args.device == "cpu"
        args.models = ["bundled:tiny-synth-clip"] if cpu_e2e else ["ViT-B-32", "ViT-L-14", "ViT-bigG-14"]
    name = args.out or f"clip_gpu_{args.mode}"
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
        name = args.out or f"clip_gpu_e2e_{args.chain}" + ("_cpu" if args.device == "cpu" else "")
        if args.compare_minimal and args.chain == "minimal":
            parser.error("--compare-minimal runs the minimal chain beside the default one: leave out --chain")
        chains = ("default", "minimal") if args.compare_minimal else (args.chain,)
        settings = [
            {
                **({"device": "cpu"} if args.device == "cpu" else {}),
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
            args.models,
            args.pairs,
            args.workers,
            args.batch,
            settings,
            args.profile,
            args.mixed_sizes,
            chains,
            args.device,
            web_captions(args.captions, args.all_captions),
            args.iters,
            {"pairs": args.breakdown_pairs, "repeats": args.breakdown_repeats} if args.breakdown else None,
            args.repeats,
        )
        print_e2e(rows)
    print(f"wrote {write_results(name, rows, device_name(args.device))}")


if __name__ == "__main__":
    main()
