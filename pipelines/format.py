"""`vlcurate format --stage 1|2`: training samples from cleaned pairs (stage 1) or task JSONL (stage 2).

Stage 1 reads a completed `clean` output (shards/*.tar), writes each image once under images/ (named by
content hash, so paths stay short) and makes a captioning sample per pair, with the English or Chinese
prompt by the caption's language. Stage 2 reads JSONL records of the seven tasks (formatters/stage2.py
documents their schemas). Both then pack same-task samples into sequences of at most --max-tokens.

Output: samples/samples-NNNNN.{jsonl,parquet} (hash-sharded by id, sorted), packed/packed-NNNNN.jsonl,
images/ (stage 1), rejects/rejects-NNNNN.jsonl, info.json, stats.json, COMPLETED last.
"""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from vlcurate.formatters.packing import DEFAULT_MAX_TOKENS, Pack, Packer, PackReject
from vlcurate.formatters.samples_io import PACK_SCHEMA, SAMPLE_SCHEMA, write_jsonl, write_parquet
from vlcurate.formatters.stage1 import RejectSample, format_pair
from vlcurate.formatters.stage2 import format_stage2_line
from vlcurate.pipelines import provenance
from vlcurate.pipelines.input_size import Total, estimate_records, sum_totals
from vlcurate.pipelines.job import Job, JobProgress, finish_output
from vlcurate.pipelines.output import (
    ensure_dir,
    join,
    read_json,
    require_completed,
    run_last,
    write_bytes_atomic,
)
from vlcurate.pipelines.progress import tap
from vlcurate.pipelines.read import ReadSource
from vlcurate.pipelines.sft_io import image_file, write_image
from vlcurate.pipelines.write import shard_name, write_hash_buckets
from vlcurate.schemas.config import SourceConfig, absolute_path
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair

SAMPLES_PER_FILE = 100_000


def stage1_sample(pair: Pair, directory: str) -> Iterator[tuple[str, Any]]:
    """("sample", row) or ("reject", row) for one cleaned pair; writes its image under images/."""
    try:
        relative, _ = image_file(pair.image)
    except RejectSample as exc:
        yield "reject", {"id": pair.uid, "reason": exc.reason, "detail": exc.detail}
        return
    write_image(directory, relative, pair.image)
    pair.uid = pair.meta.get("uid", pair.uid)  # the uid `clean` read it under, kept in its shards
    formatted = format_pair(pair, image_path=relative)
    if formatted.ok:
        yield "sample", formatted.sample
    else:
        yield "reject", {"id": pair.uid, "reason": formatted.reason, "detail": formatted.detail}


def stage2_samples(path: str) -> Iterator[tuple[str, Any]]:
    with FileSystems.open(path) as fh:
        for number, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape")):
            if not line.strip():
                continue
            formatted = format_stage2_line(line)
            where = f"{path}:{number + 1}"
            if formatted.ok:
                sample = dict(formatted.sample)
                sample["id"] = sample["id"] if sample["id"] is not None else where
                yield "sample", sample
            else:
                yield "reject", {"id": where, "reason": formatted.reason, "detail": formatted.detail}


def pack_task(task_samples: tuple[str, Iterable[dict]], max_tokens: int) -> Iterator[tuple[str, Any]]:
    """Packs one task's samples in id order (deterministic); the packer buffers and fills bins."""
    _, samples = task_samples
    packer = Packer(max_tokens)
    results: list[Pack | PackReject] = []
    for sample in sorted(samples, key=lambda s: s["id"]):
        results += packer.add(sample)
    results += packer.flush()
    for result in results:
        if isinstance(result, Pack):
            yield "pack", result.to_row()
        else:
            yield "reject", {"id": result.sample.get("id"), "reason": result.reason, "detail": result.detail}
    yield "pack_stats", packer.stats.to_json()


def _write_rows(
    directory: str,
    folder: str,
    prefix: str,
    index: int,
    count: int,
    rows: list[dict],
    parquet: bool,
    schema=None,
) -> dict:
    """One file of rows in a stable order: with a schema through samples_io, else plain JSON lines."""
    rows = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, ensure_ascii=False))
    name = f"{prefix}-{shard_name(index, count)}"
    ensure_dir(join(directory, folder))
    buffer = io.BytesIO()
    if schema is not None:
        write_jsonl(rows, buffer, schema)
    else:
        buffer.write("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows).encode())
    write_bytes_atomic(join(directory, folder, f"{name}.jsonl"), buffer.getvalue())
    if parquet:
        buffer = io.BytesIO()
        write_parquet(rows, buffer)
        write_bytes_atomic(join(directory, folder, f"{name}.parquet"), buffer.getvalue())
    return {"file": f"{folder}/{name}.jsonl", "rows": len(rows)}


def _sharded(
    rows, directory: str, folder: str, prefix: str, per_file: int, parquet: bool, label: str, schema=None
):
    """Rows -> `<folder>/<prefix>-NNNNN.jsonl` (+ .parquet) files, bucketed by sample id (or pack ids)."""

    def key(row) -> str:
        return str(row.get("id") if "id" in row else ",".join(map(str, row.get("ids", []))))

    return write_hash_buckets(
        rows,
        per_file,
        key,
        lambda index, count, part: _write_rows(
            directory, folder, prefix, index, count, list(part), parquet, schema
        ),
        label,
    )


def build_pipeline(
    p: beam.Pipeline,
    stage: int,
    inputs: list[str],
    out: str,
    max_tokens: int,
    info: dict,
    progress: str | None = None,
    publish_to: str | None = None,
):
    """`progress`: the folder progress taps count into (pipelines/progress.py), None for no taps; with
    `publish_to`, `out` is the run's staging directory, moved there at the end (pipelines/output.py)."""
    if stage == 1:
        source = SourceConfig(
            name="clean", format="webdataset", paths=[join(d, "shards", "*.tar") for d in inputs]
        )
        batches = p | ReadSource(source)
        tap(batches, progress, "read")
        pairs = batches | "Unbatch" >> beam.FlatMap(iter)
        tagged = pairs | "Stage1" >> beam.FlatMap(stage1_sample, out)
    else:
        files = sorted(
            {m.path for pattern in inputs for r in FileSystems.match([pattern]) for m in r.metadata_list}
        )
        tagged = (
            p | "Files" >> beam.Create(files) | beam.Reshuffle() | "Stage2" >> beam.FlatMap(stage2_samples)
        )
        tap(tagged, progress, "read", batches=False)  # one element per record read
    samples = tagged | "Samples" >> beam.Filter(lambda t: t[0] == "sample") | "S" >> beam.Map(lambda t: t[1])
    packed = (
        samples
        | "ByTask" >> beam.Map(lambda s: (s["task"], s))
        | "GroupTask" >> beam.GroupByKey()
        | "Pack" >> beam.FlatMap(pack_task, max_tokens)
    )
    packs = packed | "Packs" >> beam.Filter(lambda t: t[0] == "pack") | "P" >> beam.Map(lambda t: t[1])
    pack_stats = (
        packed | "PackStats" >> beam.Filter(lambda t: t[0] == "pack_stats") | "PS" >> beam.Map(lambda t: t[1])
    )
    rejects = (
        (tagged, packed)
        | "AllTagged" >> beam.Flatten()
        | "Rejects" >> beam.Filter(lambda t: t[0] == "reject")
        | "R" >> beam.Map(lambda t: t[1])
    )
    sample_files = _sharded(
        samples, out, "samples", "samples", SAMPLES_PER_FILE, True, "Samples", SAMPLE_SCHEMA
    )
    pack_files = _sharded(packs, out, "packed", "packed", SAMPLES_PER_FILE, False, "Packs", PACK_SCHEMA)
    reject_files = _sharded(
        rejects, out, "rejects", "rejects", SAMPLES_PER_FILE, False, "Rejects", schema=None
    )
    tap(samples, progress, "samples", batches=False)
    tap(rejects, progress, "rejected", batches=False)
    reject_reasons = (
        rejects | "ReasonOf" >> beam.Map(lambda r: r["reason"]) | beam.combiners.Count.PerElement()
    )
    task_counts = (
        samples
        | "TaskOf" >> beam.Map(lambda s: s["task"])
        | "CountTasks" >> beam.combiners.Count.PerElement()
    )
    run_last(
        p,
        finalize,
        beam.pvalue.AsList(sample_files),
        beam.pvalue.AsList(pack_files),
        beam.pvalue.AsList(reject_files),
        beam.pvalue.AsList(pack_stats),
        beam.pvalue.AsDict(task_counts),
        beam.pvalue.AsDict(reject_reasons),
        directory=out,
        info=info,
        publish_to=publish_to,
    )


def finalize(
    _, samples, packs, rejects, pack_stats, tasks, reasons, directory: str, info: dict, publish_to=None
) -> None:
    stats = {
        "samples": sum(f["rows"] for f in samples),
        "samples_by_task": dict(sorted(tasks.items())),
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "packing": dict(sorted((task, entry) for s in pack_stats for task, entry in s["tasks"].items())),
        "packs": sum(f["rows"] for f in packs),
    }
    tokens = sum(s["tokens"] for s in pack_stats)
    bins = sum(s["packs"] for s in pack_stats)
    stats["fill_ratio"] = round(tokens / (bins * pack_stats[0]["max_tokens"]), 6) if bins else 0.0
    files = {
        "samples": sorted(f["file"] for f in samples),
        "packed": sorted(f["file"] for f in packs),
        "rejects": sorted(f["file"] for f in rejects),
    }
    counts = {k: stats[k] for k in ("samples", "packs", "rejected")}
    info = {**info, "counts": counts, "files": files}
    finish_output(directory, info, {"stats.json": stats}, publish_to=publish_to)


def run_format(
    stage: int,
    inputs: list[str],
    out: str,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overwrite: bool = False,
    workers: int = 1,
    beam_args: list[str] | None = None,
    progress: bool = True,
) -> dict:
    if stage not in (1, 2):
        raise ConfigError(f"--stage must be 1 or 2, not {stage}.")
    inputs, out = [absolute_path(p) for p in inputs], absolute_path(out)  # workers have other cwds
    job = Job(workers, beam_args, [*inputs, out])
    if stage == 1:
        for directory in inputs:
            require_completed(directory)
    else:
        for pattern in inputs:
            if os.path.isdir(pattern):  # it would match the folder itself, which no reader can open
                folder = pattern.rstrip("/")
                raise ConfigError(
                    f"--input {folder} is a directory; stage 2 reads JSONL files: pass '{folder}/*.jsonl'"
                )
        if not any(r.metadata_list for pattern in inputs for r in FileSystems.match([pattern])):
            raise ConfigError(
                f"no stage-2 JSONL file matches {inputs}; see formatters/stage2.py for the schema."
            )
    staging = job.stage(out, overwrite)
    info = {
        "kind": f"vlcurate.format.stage{stage}",
        "inputs": inputs,
        "max_tokens": max_tokens,
        "image_root": "." if stage == 1 else stage2_image_root(inputs),
        **provenance.started(),
    }
    lines = JobProgress(
        f"format stage {stage}",
        outcomes=("samples", "rejected"),  # packing rejects samples too: outcomes are not shares of read
        unit="pairs" if stage == 1 else "records",
        total=functools.partial(input_total, stage, inputs),
        shares=False,
    )
    job.run(
        lambda p, folder: build_pipeline(p, stage, inputs, staging, max_tokens, info, folder, publish_to=out),
        lines,
        show_progress=progress,
    )
    if not job.local:
        return {}
    stats = read_json(join(out, "stats.json"))
    job.say_done(
        f"format stage {stage}",
        f"{stats['samples']:,} samples, {stats['packs']:,} packs (fill {stats['fill_ratio']:.1%}), "
        f"{stats['rejected']:,} rejected",
        out,
    )
    return stats


def stage2_image_root(inputs: list[str]) -> str:
    """Where stage-2 image paths resolve for `vlcurate check`: records give paths as the trainer will see
    them, which vlcurate takes to be relative to the folder of their JSONL file (so the demo's are). With
    inputs in several folders there is no one answer: "." and `check --image-root` says where."""
    folders = {os.path.dirname(os.path.abspath(p)) if "://" not in p else p.rsplit("/", 1)[0] for p in inputs}
    return folders.pop() if len(folders) == 1 else "."


def input_total(stage: int, inputs: list[str]) -> Total | None:
    """Records the run will read: the pairs each completed `clean` output kept (stage 1), or the records
    of the JSONL files (stage 2)."""
    if stage == 1:
        return sum_totals([Total(read_json(join(d, "info.json"))["counts"]["kept"], True) for d in inputs])
    matched = (m for pattern in inputs for r in FileSystems.match([pattern]) for m in r.metadata_list)
    return estimate_records("jsonl", dict(sorted((m.path, m.size_in_bytes) for m in matched)))


__all__ = ["run_format"]
