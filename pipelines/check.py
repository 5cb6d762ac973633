"""`vlcurate check`: sanity-checks a completed output before training, as a Beam job.

Structural checks run on every record (formatters/check_*.py): the trainer's view is rebuilt with the exact
tokenizer and compared with what is stored, every image a sample names is read and fully decoded once.
Model checks run on the samples without structural findings (all, or a sample chosen by id hash): the
compact Qwen-VL model (or the user's) gives each its mean loss over supervised tokens with its own images
and with its partner's (model/qwenvl_handler.py); model/loss_flags.py turns the losses into findings.

Output (default <input>/check/): check.json (totals and per task), findings.parquet (one row per finding,
sorted), report.html, info.json, COMPLETED last. Same input, options and model -> the same bytes for any
number of workers: every grouping (partners, batches) is fixed by stable hashes of the sample ids.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from vlcurate.formatters.check_images import check_image
from vlcurate.formatters.check_samples import check_pack
from vlcurate.formatters.check_summary import CheckCounts
from vlcurate.model.qwenvl_losses import loss_batches
from vlcurate.pipelines.check_read import (
    CLEAN_SHARD,
    PACKS,
    SAMPLES,
    SFT_SHARD,
    Checked,
    Layout,
    read_clean_shard,
    read_pack_rows,
    read_sample_rows,
    read_sft_shard,
)
from vlcurate.pipelines.load_images import read_image
from vlcurate.pipelines.steps import MergeStats
from vlcurate.schemas.image_paths import DEFAULT_MAX_IMAGE_BYTES, ImageRejected, outside_root
from vlcurate.schemas.record import stable_hash

ROWS, PACK_ROWS = "rows", "packs"
PER_BUCKET = 2048  # samples per partner/batching group: bounds a group's memory on one worker
BATCH_TOKENS = 16384  # rows x padded length per model call


class ReadRecords(beam.DoFn):
    """(role, file) -> Checked records; stage-1/2 sample rows and pack rows go out on their own tags for
    the packs' check."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout

    def process(self, element: tuple[str, str]) -> Iterator[Any]:
        role, path = element
        if role == SFT_SHARD:
            yield from read_sft_shard(self._layout, path)
        elif role == CLEAN_SHARD:
            yield from read_clean_shard(self._layout, path)
        elif role == SAMPLES:
            for checked, row in read_sample_rows(self._layout, path):
                yield checked
                if row:
                    yield beam.pvalue.TaggedOutput(ROWS, (checked.id, row))
        elif role == PACKS:
            for key, row in read_pack_rows(self._layout, path):
                yield beam.pvalue.TaggedOutput(PACK_ROWS, (key, row))


def _pack_refs(element: tuple[str, dict]) -> Iterator[tuple[str, str]]:
    key, row = element
    ids = row.get("ids")
    for sample_id in ids if isinstance(ids, list) else []:
        if isinstance(sample_id, str):
            yield sample_id, key


def _rows_to_packs(element: tuple[str, dict[str, list]]) -> Iterator[tuple[str, tuple[str, dict]]]:
    sample_id, groups = element
    row = groups["row"][0] if groups["row"] else None
    for key in sorted(set(groups["pack"])):
        if row is not None:
            yield key, (sample_id, row)


def _check_pack(element: tuple[str, dict[str, list]], max_tokens: int) -> Iterator[Checked]:
    key, groups = element
    samples = dict(sorted(groups["samples"]))
    for row in groups["pack"]:
        if "unparseable" in row:
            pairs = [("bad_pack", row["unparseable"])]
        else:
            pairs = [(p.reason, p.detail) for p in check_pack(row, samples, max_tokens)]
        task = row.get("task") if isinstance(row.get("task"), str) else "unknown"
        tokens = row.get("num_tokens") if isinstance(row.get("num_tokens"), int) else 0
        mask = row.get("loss_mask")
        supervised = sum(mask) if isinstance(mask, list) and all(isinstance(m, int) for m in mask) else 0
        yield Checked(key, f"{task}/packed", tokens, supervised, (), pairs)


def image_status(location: str, root: str, max_bytes: int) -> tuple[str, str] | None:
    """(reason, detail) of the image at `location`, or None when it reads and fully decodes."""
    why = outside_root(location, root)
    if why is not None:
        return "image_outside_root", why
    try:
        data = read_image(location, max_bytes)
    except ImageRejected as exc:
        return exc.reason, str(exc)
    problem = check_image(data)
    return None if problem is None else (problem.reason, f"{location}: {problem.detail}"[:300])


def _image_problems(element: tuple[str, dict[str, list]]) -> Iterator[tuple[str, tuple[str, str]]]:
    _, groups = element
    status = groups["status"][0] if groups["status"] else None
    if status is not None:
        for sample_id in sorted(set(groups["refs"])):
            yield sample_id, status


def _merge(element: tuple[str, dict[str, list]]) -> Iterator[Checked]:
    """A record with the problems of its images; records sharing an id are each a `duplicate_id`."""
    sample_id, groups = element
    extra = sorted(set(groups["images"]))
    records = groups["records"]
    if len(records) > 1:
        extra.append(("duplicate_id", f"{len(records)} records have the id {sample_id!r}"))
    for record in records:
        if extra:
            record.problems = record.problems + extra
            record.view = None
        yield record


def finding_rows(record: Checked) -> Iterator[dict[str, Any]]:
    seen = set()
    for reason, detail in record.problems:
        if reason not in seen:
            seen.add(reason)
            yield {
                "id": record.id,
                "task": record.task,
                "check": "structural",
                "reason": reason,
                "loss": None,
                "swap_loss": None,
                "detail": detail,
            }


class CountRecords(MergeStats):
    """Counts checked records per task into CheckCounts partials, merged as the other jobs' stats."""

    def __init__(self, max_tokens: int) -> None:
        super().__init__(functools.partial(CheckCounts, max_tokens))

    def add_input(self, counts: CheckCounts, record: Checked) -> CheckCounts:
        counts.add(record.task, record.tokens, record.supervised, (r for r, _ in record.problems))
        return counts


# --- model checks --------------------------------------------------------------------------------------


def selected(sample_id: str, fraction: float | None, chosen: set[str] | None) -> bool:
    if chosen is not None:
        return sample_id in chosen
    return fraction is None or stable_hash(sample_id) / 2**64 < fraction


def _bucket(record: Checked, counts: dict[str, int]) -> tuple[tuple[str, int], Checked]:
    buckets = max(1, math.ceil(counts.get(record.task, 1) / PER_BUCKET))
    return (record.task, stable_hash(record.id) % buckets), record


def model_results(candidates, root: str, spec: str, max_image_bytes: int, batch_tokens: int):
    """Checked records (with views) -> LossResults, one per record."""
    counts = candidates | "TaskSizes" >> beam.Map(lambda r: (r.task, 1)) | beam.CombinePerKey(sum)
    # Imported here: Beam's RunInference module imports torch and scipy (~300 MB, a second of start-up),
    # which structural checks and every other command never need.
    from apache_beam.ml.inference.base import RunInference

    from vlcurate.model.qwenvl_handler import QwenVLLossHandler

    handler = QwenVLLossHandler(spec, functools.partial(read_image, max_image_bytes=max_image_bytes))
    return (
        candidates
        | "Bucket" >> beam.Map(_bucket, beam.pvalue.AsDict(counts))
        | "GroupBuckets" >> beam.GroupByKey()
        | "Batches" >> beam.FlatMap(lambda kv: loss_batches(kv[1], root, batch_tokens))
        | "SpreadBatches" >> beam.Reshuffle()
        | "Losses" >> RunInference(handler)
        | "Results" >> beam.FlatMap(lambda results: results)
    )


DEFAULTS = {"max_image_bytes": DEFAULT_MAX_IMAGE_BYTES, "batch_tokens": BATCH_TOKENS}
