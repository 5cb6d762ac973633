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

import functools
import sys
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from vlcurate.formatters.sft import SftSample, build_samples
from vlcurate.formatters.sft_dialogue import Dialogue
from vlcurate.formatters.sft_stats import SftStats
from vlcurate.formatters.sft_strategies import (
    group_multi_image,
    in_multi_image_pool,
    single_dialogue,
    text_cutoff,
    text_rank,
)
from vlcurate.model.qwen_tokenizer import MAX_IMAGE_PATH_BYTES, SYSTEM_MESSAGE, get_tokenizer
from vlcurate.pipelines import provenance
from vlcurate.pipelines.job import Job, JobProgress, finish_output
from vlcurate.pipelines.output import join, read_json, run_last
from vlcurate.pipelines.progress import tap
from vlcurate.pipelines.sft_io import (
    input_files,
    read_input_file,
    sample_reject_row,
    write_image,
    write_reject_file,
    write_shard,
)
from vlcurate.pipelines.steps import MergeStats, in_global_window
from vlcurate.pipelines.write import REJECTS_PER_FILE, write_hash_buckets
from vlcurate.schemas.config import absolute_path
from vlcurate.schemas.sft_config import SftConfig, SftInputConfig

__all__ = ["run_sft"]

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
    ranks = (
        read[TEXT]
        | "TextRanks" >> beam.Map(lambda d: text_rank(d.id, seed))
        | "AllTextRanks" >> beam.combiners.ToList()
    )
    cutoff = (
        p
        | "Cutoff" >> beam.Create([None])
        | "TextCutoff"
        >> beam.Map(
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
    info = {
        **info,
        "counts": {**summary["totals"], "images": images},
        "shards": sorted(shards, key=lambda s: s["json"]),
        "rejects": sorted(rejects, key=lambda r: r["file"]),
    }
    finish_output(directory, info, {"stats.json": summary}, publish_to=publish_to)


def run_sft(config: SftConfig, beam_args: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Builds the shards and returns stats.json's content ({} on a remote runner). Config errors (unknown
    keys, globs matching nothing, a `pairs` directory without COMPLETED) raise before any data is read.
    Local paths are made absolute first, in place (workers have other working directories)."""
    for spec in config.inputs:
        spec.paths = [absolute_path(p) for p in spec.paths]
        spec.image_root = absolute_path(spec.image_root) if spec.image_root else spec.image_root
    config.output.dir = out = absolute_path(config.output.dir)
    paths = [
        *(p for spec in config.inputs for p in spec.paths),
        *(s.image_root for s in config.inputs if s.image_root),
    ]
    job = Job(config.workers, beam_args, [*paths, out])
    files = [(i, path) for i, spec in enumerate(config.inputs) for path in input_files(spec)]
    staging = job.stage(out, config.output.overwrite)
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
    # Records and samples are not one to one (dialogues group and split them): no shares, no total.
    lines = JobProgress(
        "sft",
        outcomes=("samples", "rejected"),
        unit="records",
        shares=False,
        worker_log="vlcurate-sft-workers",
    )
    job.run(lambda p, folder: build_pipeline(p, config, files, info, folder, staging), lines, progress)
    if not job.local:
        return {}
    stats = read_json(join(out, "stats.json"))
    totals = stats["totals"]
    job.say_done(
        "sft",
        f"{totals['records_read']:,} records -> {totals['samples_written']:,} samples "
        f"({totals['records_rejected']:,} records and {totals['samples_rejected']:,} samples rejected)",
        out,
    )
    return stats


def main(argv: list[str] | None = None) -> int:
    """`python -m vlcurate.pipelines.sft ARGS` is `vlcurate sft ARGS`: the same checks and messages."""
    from vlcurate.cli import main as cli_main  # imported here: the CLI imports this module

    return cli_main(["sft", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
