"""`vlcurate sft --config FILE`: SFT dialogue shards for Qwen-VL's finetune.py, as a Beam pipeline.

    read inputs ─▶ items ─┬─▶ single-image dialogues ──────────────┐
                          └─▶ multi-image pool ─▶ group by language ┼─▶ split, render, validate ─▶ shards
    text dialogues ─▶ seeded selection up to text_share ──────────┘        (exact token counts)
    images read ─▶ joined with the paths written samples name ─▶ images/
    every dropped record or sample ─▶ rejects/ ; counts ─▶ stats.json ; info.json ; COMPLETED last

Input schemas: formatters/sft.py; output layout: pipelines/sft_io.py. Output bytes depend only on the
inputs, the config and the seed: seeded choices are keyed by ids, multi-image groups are cut from a
seeded-hash order, shards are hash buckets sorted by id, images are named by content hash.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from vlcurate.formatters.sft import SftSample, build_samples
from vlcurate.formatters.sft_dialogue import Dialogue
from vlcurate.formatters.sft_strategies import (
    group_multi_image,
    in_multi_image_pool,
    single_dialogue,
    unit_hash,
)
from vlcurate.model.qwen_tokenizer import MAX_IMAGE_PATH_BYTES, SYSTEM_MESSAGE, get_tokenizer
from vlcurate.pipelines import provenance
from vlcurate.pipelines.options import in_process_tuning, is_local, pipeline_options
from vlcurate.pipelines.output import (
    COMPLETED,
    join,
    prepare_output_dir,
    publish,
    read_json,
    run_last,
    write_bytes_atomic,
    write_json,
)
from vlcurate.pipelines.progress import progress_folder, tap, worker_logs_to_file
from vlcurate.pipelines.sft_demo import write_demo_sft_inputs
from vlcurate.pipelines.sft_io import (
    SftStats,
    input_files,
    read_input_file,
    sample_reject_row,
    write_image,
    write_reject_file,
    write_shard,
)
from vlcurate.pipelines.steps import MergeStats, in_global_window
from vlcurate.pipelines.write import REJECTS_PER_FILE, write_hash_buckets
from vlcurate.schemas.sft_config import SftConfig, SftInputConfig, load_sft_config

__all__ = ["add_sft_parser", "cmd_sft", "run_sft", "write_demo_sft_inputs"]

ITEM, TEXT, IMAGE, REJECT, STATS = "item", "text", "image", "reject", "stats"


class ReadInputs(beam.DoFn):
    """(input index, file) -> items (main), text dialogues, image bytes, rejects, stats partials."""

    def __init__(self, inputs: list[SftInputConfig], max_len: int) -> None:
        self.inputs, self.max_len = inputs, max_len

    def start_bundle(self) -> None:
        self._stats = SftStats(self.max_len)

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        spec = self.inputs[element[0]]
        for tag, value in read_input_file(spec, element[1]):
            if tag == IMAGE:
                yield beam.pvalue.TaggedOutput(IMAGE, value)
                continue
            self._stats.records[(spec.name, spec.kind)] += 1
            Metrics.counter("vlcurate.sft", "records").inc()
            if tag == REJECT:
                self._stats.reject_record(value)
                Metrics.counter("vlcurate.sft", f"rejected_{value['reason']}").inc()
            yield value if tag == ITEM else beam.pvalue.TaggedOutput(tag, value)

    def finish_bundle(self) -> Iterator[Any]:
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


class SelectTexts(beam.DoFn):
    """Keeps the text dialogues ranked at or below the cutoff; the others are counted as unused."""

    def __init__(self, seed: int, max_len: int) -> None:
        self.seed, self.max_len = seed, max_len

    def start_bundle(self) -> None:
        self._stats = SftStats(self.max_len)

    def process(self, dialogue: Dialogue, cutoff: tuple[float, str] | None) -> Iterator[Any]:
        if cutoff is not None and text_rank(dialogue.id, self.seed) <= cutoff:
            yield dialogue
        else:
            self._stats.unused["text_over_share"] += 1

    def finish_bundle(self) -> Iterator[Any]:
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


class BuildSamples(beam.DoFn):
    """Dialogue -> validated samples (main) and rejects; the tokenizer is loaded once per worker."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def setup(self) -> None:
        self._tok = get_tokenizer()

    def start_bundle(self) -> None:
        self._stats = SftStats(self.max_len)

    def process(self, dialogue: Dialogue) -> Iterator[Any]:
        self._stats.add_dialogue(dialogue.kind, len(dialogue.records))
        for result in build_samples(dialogue, self.max_len, tokenizer=self._tok):
            if isinstance(result, SftSample):
                self._stats.add_sample(result)
                Metrics.counter("vlcurate.sft", "samples").inc()
                yield result
            else:
                self._stats.reject_sample(result)
                Metrics.counter("vlcurate.sft", f"rejected_{result.reason}").inc()
                yield beam.pvalue.TaggedOutput(REJECT, sample_reject_row(result))

    def finish_bundle(self) -> Iterator[Any]:
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


def text_rank(dialogue_id: str, seed: int) -> tuple[float, str]:
    return unit_hash(seed, "text", dialogue_id), dialogue_id


def text_cutoff(
    image_dialogues: int, ranks: list[tuple[float, str]], share: float
) -> tuple[float, str] | None:
    """The rank of the last text dialogue kept: texts make up at most `share` of all dialogues. A run with
    no image dialogue keeps every text (a text-only config)."""
    if not ranks or share == 0:
        return None
    # The epsilon keeps float error from losing one text (0.1 / 0.9 * 90 must give 10).
    want = len(ranks) if image_dialogues == 0 else math.floor(share / (1 - share) * image_dialogues + 1e-9)
    keep = min(want, len(ranks))
    return sorted(ranks)[keep - 1] if keep else None


def _write_images(element: tuple[str, dict[str, list]], directory: str) -> Iterator[str]:
    path, groups = element
    if groups["used"] and groups["data"]:  # equal paths hold equal bytes (content hash): write one
        yield write_image(directory, path, groups["data"][0])


def build_pipeline(
    p: beam.Pipeline,
    config: SftConfig,
    files: list[tuple[int, str]],
    info: dict[str, Any],
    progress: str | None = None,
    staging: str | None = None,
) -> None:
    """`progress`: the folder progress taps count into (pipelines/progress.py), None for no taps;
    `staging`: the directory to write into (prepare_output_dir), published to the output at the end."""
    seed, max_len, out = config.seed, config.model_max_length, staging or config.output.dir
    multi = config.multi_image
    read = (
        p
        | "Files" >> beam.Create(files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "Read"
        >> beam.ParDo(ReadInputs(config.inputs, max_len)).with_outputs(TEXT, IMAGE, REJECT, STATS, main=ITEM)
    )
    for tag in (ITEM, TEXT, REJECT):  # every record read leaves on one of these
        tap(read[tag], progress, "read", f"/{tag}", batches=False)
    pooled = read[ITEM] | "Pool" >> beam.Partition(
        lambda item, _: int(in_multi_image_pool(item, seed, multi.share)), 2
    )
    singles = pooled[0] | "Single" >> beam.Map(single_dialogue, seed)
    grouped = (
        pooled[1]
        | "ByLanguage" >> beam.Map(lambda item: (item.lang, item))
        | "GroupLanguage" >> beam.GroupByKey()
        | "MultiImage"
        >> beam.FlatMap(lambda kv: group_multi_image(kv[1], seed, multi.min_images, multi.max_images))
    )
    image_dialogues = (singles, grouped) | "ImageDialogues" >> beam.Flatten()
    count = image_dialogues | "CountImageDialogues" >> beam.combiners.Count.Globally()
    ranks = read[TEXT] | "TextRanks" >> beam.Map(lambda d: text_rank(d.id, seed)) | beam.combiners.ToList()
    cutoff = (
        p
        | "Cutoff" >> beam.Create([None])
        | beam.Map(
            lambda _, n, r: text_cutoff(n, r, config.text_share),
            beam.pvalue.AsSingleton(count),
            beam.pvalue.AsSingleton(ranks),
        )
    )
    texts = read[TEXT] | "SelectTexts" >> beam.ParDo(
        SelectTexts(seed, max_len), beam.pvalue.AsSingleton(cutoff)
    ).with_outputs(STATS, main="kept")
    built = (
        (image_dialogues, texts.kept)
        | "AllDialogues" >> beam.Flatten()
        | "SpreadDialogues" >> beam.Reshuffle()
        | "Build" >> beam.ParDo(BuildSamples(max_len)).with_outputs(REJECT, STATS, main="samples")
    )
    samples = built.samples
    per_shard = config.output.samples_per_shard
    shards = write_hash_buckets(
        samples,
        per_shard,
        lambda s: s.id,
        lambda i, n, rows: write_shard(out, i, n, (s.sample for s in rows)),
        "Shards",
    )
    used = samples | "UsedImages" >> beam.FlatMap(lambda s: [(path, True) for path in s.images])
    images = (
        {"data": read[IMAGE], "used": used}
        | "JoinImages" >> beam.CoGroupByKey()
        | "WriteImages" >> beam.FlatMap(_write_images, out)
        | "CountImages" >> beam.combiners.Count.Globally()
    )
    rejects = (read[REJECT], built[REJECT]) | "AllRejects" >> beam.Flatten()
    tap(built.samples, progress, "samples", batches=False)
    tap(rejects, progress, "rejected", batches=False)
    reject_files = write_hash_buckets(
        rejects,
        REJECTS_PER_FILE,
        lambda r: r["id"],
        lambda i, n, rows: write_reject_file(out, i, n, rows),
        "Rejects",
    )
    stats = (
        (read[STATS], texts[STATS], built[STATS])
        | "StatsPartials" >> beam.Flatten()
        | "MergeStats" >> beam.CombineGlobally(MergeStats(functools.partial(SftStats, max_len)))
    )
    run_last(
        p,
        finalize,
        beam.pvalue.AsList(shards),
        beam.pvalue.AsSingleton(images),
        beam.pvalue.AsList(reject_files),
        beam.pvalue.AsSingleton(stats),
        directory=out,
        info=info,
        publish_to=config.output.dir if staging else None,
    )


def finalize(
    _: Any,
    shards: list[dict],
    images: int,
    rejects: list[dict],
    stats: SftStats,
    directory: str,
    info: dict,
    publish_to: str | None = None,
) -> None:
    """stats.json, info.json, then COMPLETED last; then, with `publish_to`, the run moves there from its
    staging directory (pipelines/output.py)."""
    summary = stats.to_json()
    write_json(join(directory, "stats.json"), summary)
    info = {
        **info,
        "counts": {**summary["totals"], "images": images},
        "shards": sorted(shards, key=lambda s: s["json"]),
        "rejects": sorted(rejects, key=lambda r: r["file"]),
    }
    write_json(join(directory, "info.json"), provenance.finished(info))
    write_bytes_atomic(join(directory, COMPLETED), b"")
    if publish_to:
        publish(directory, publish_to)


def run_sft(config: SftConfig, beam_args: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Builds the shards and returns stats.json's content ({} on a remote runner). Config errors (unknown
    keys, globs matching nothing, a `pairs` directory without COMPLETED) raise before any data is read."""
    out = config.output.dir
    paths = [
        *(p for spec in config.inputs for p in spec.paths),
        *(s.image_root for s in config.inputs if s.image_root),
    ]
    options = pipeline_options(config.workers, beam_args, [*paths, out])
    files = [(i, path) for i, spec in enumerate(config.inputs) for path in input_files(spec)]
    staging = prepare_output_dir(out, config.output.overwrite)
    info = {
        "kind": "vlcurate.sft",
        "format": "Qwen-VL finetune.py: each shards/*.json is a JSON array of {id, conversations}",
        "image_root": ".",
        "image_paths": (
            "relative to this directory: train with it as the working directory, or prepend its path "
            f"(after that, a path must stay <= {MAX_IMAGE_PATH_BYTES} UTF-8 bytes)"
        ),
        "system_message": SYSTEM_MESSAGE,
        "model_max_length": config.model_max_length,
        "config": config.to_dict(),
        **provenance.started(),
    }
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        stream = sys.stderr
        if is_local(options) and config.workers > 1:  # worker processes log at INFO on the shared stderr
            log = os.path.join(tempfile.gettempdir(), f"vlcurate-sft-workers-{os.getpid()}.log")
            stream = stack.enter_context(worker_logs_to_file(log))
        # Records and samples are not one to one (dialogues group and split them): no shares, no total.
        folder = stack.enter_context(
            progress_folder(
                progress and is_local(options),
                "sft",
                outcomes=("samples", "rejected"),
                unit="records",
                shares=False,
                stream=stream,
            )
        )
        with in_process_tuning(), beam.Pipeline(options=options) as p:
            build_pipeline(p, config, files, info, folder, staging)
    if not is_local(options):
        return {}
    stats = read_json(join(out, "stats.json"))
    totals = stats["totals"]
    print(
        f"[vlcurate] sft done in {time.monotonic() - started:.1f}s: {totals['records_read']:,} records -> "
        f"{totals['samples_written']:,} samples ({totals['records_rejected']:,} records and "
        f"{totals['samples_rejected']:,} samples rejected) -> {out}",
        file=sys.stderr,
    )
    return stats


# --- command line --------------------------------------------------------------------------------------


def add_sft_parser(subparsers: Any) -> None:
    """Adds `sft` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "sft",
        help="build Qwen-VL SFT dialogue shards (finetune.py JSON) from cleaned pairs, VQA, grounding, text",
        description="Unknown flags are passed to Beam (e.g. --runner=DataflowRunner).",
    )
    p.add_argument("--config", required=True, help="YAML config (see schemas/sft_config.py)")
    p.add_argument("--output", help="output directory (overrides output.dir)")
    p.add_argument("--workers", type=int, help="local worker processes (default: the config's, 1)")
    p.add_argument("--seed", type=int, help="construction seed (overrides the config's)")
    p.add_argument("--overwrite", action="store_true", help="replace a completed output directory")
    p.add_argument("--no-progress", action="store_true", help="do not print progress lines")
    p.add_argument(
        "--check",
        action="store_true",
        help="afterwards run `vlcurate check` on the output (into <output>/check); exit 1 on a structural finding",
    )


def cmd_sft(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    config = load_sft_config(args.config)
    if args.output:
        config.output.dir = args.output
    if args.workers is not None:
        config.workers = args.workers
    if args.seed is not None:
        config.seed = args.seed
    config.output.overwrite = config.output.overwrite or args.overwrite
    config.__post_init__()
    run_sft(config, beam_args, progress=not args.no_progress)
    if args.check:
        from vlcurate.pipelines.check_job import run_check  # the check's model is loaded only when asked

        run_check(config.output.dir, workers=config.workers, overwrite=True, beam_args=beam_args, strict=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m vlcurate.pipelines.sft ARGS` is `vlcurate sft ARGS`: the same checks and messages."""
    from vlcurate.cli import main as cli_main  # imported here: the CLI imports this module

    return cli_main(["sft", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
