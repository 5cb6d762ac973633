"""`vlcurate check` as a job: the pipeline's assembly, its end (findings.parquet, check.json,
report.html, info.json, COMPLETED) and the summary line. The transforms are in pipelines/check.py; what
each check does is in formatters/check_*.py and model/; the command line is vlcurate/cli/check.py."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from vlcurate.formatters.check_report import render_check_report
from vlcurate.formatters.check_summary import CheckCounts, loss_summary, summary_json
from vlcurate.model.loss_flags import flag_samples
from vlcurate.pipelines import provenance
from vlcurate.pipelines.check import (
    BATCH_TOKENS,
    PACK_ROWS,
    ROWS,
    CountRecords,
    ReadRecords,
    _check_pack,
    _image_problems,
    _merge,
    _pack_refs,
    _rows_to_packs,
    finding_rows,
    image_status,
    model_results,
    selected,
)
from vlcurate.pipelines.check_read import Layout, read_layout
from vlcurate.pipelines.job import Job, finish_output
from vlcurate.pipelines.output import join, read_json, run_last
from vlcurate.schemas.config import absolute_path
from vlcurate.schemas.errors import ConfigError, RunFailedError
from vlcurate.schemas.image_paths import DEFAULT_MAX_IMAGE_BYTES
from vlcurate.schemas.model_spec import DEFAULT_CHECK_MODEL, absolute_model_spec
from vlcurate.schemas.record import stable_hash

FINDINGS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("check", pa.string()),  # structural or model
        ("reason", pa.string()),
        ("loss", pa.float64()),  # model findings: mean loss with the own images
        ("swap_loss", pa.float64()),  # ... and with the partner's images
        ("detail", pa.string()),
    ]
)


@dataclasses.dataclass
class CheckOptions:
    model: str | None = DEFAULT_CHECK_MODEL  # None: structural checks only
    sample: int | None = None  # model checks on this many samples (lowest id hash); None: all
    fraction: float | None = None  # ... or on this share of them
    image_root: str | None = None
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    batch_tokens: int = BATCH_TOKENS

    def __post_init__(self) -> None:
        if self.sample is not None and self.fraction is not None:
            raise ConfigError("give --sample N or --fraction F, not both.")
        if self.sample is not None and self.sample < 1:
            raise ConfigError(f"--sample must be a positive count, not {self.sample}.")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"--fraction must be in (0, 1], not {self.fraction}.")


def _flags(element: tuple[str, Iterable[Any]]) -> Any:
    """A task's LossResults -> (task, model summary, finding rows)."""
    task, results = element
    results = sorted(results, key=lambda r: r.id)
    flagged = flag_samples(results)  # loss_flags reads the LossResults' fields
    by_id = {r.id: r for r in results}
    findings = [
        {
            "id": sample_id,
            "task": task,
            "check": "model",
            "reason": reason,
            "loss": _finite(by_id[sample_id].loss),
            "swap_loss": _finite(by_id[sample_id].swap_loss),
            "detail": detail or by_id[sample_id].detail,
        }
        for sample_id, reason, detail in flagged
    ]
    losses = [r.loss for r in results]
    gains = [r.swap_loss - r.loss for r in results if r.swap_loss is not None and math.isfinite(r.loss)]
    summary = loss_summary(losses, gains, Counter(f["reason"] for f in findings))
    return task, summary, findings


def _finite(value: float | None) -> float | None:
    """A loss as findings.parquet stores it: None when not finite, else to 6 decimals (beyond that it is
    kernel noise, which would make files differ between machines)."""
    return round(value, 6) if value is not None and math.isfinite(value) else None


def build_pipeline(
    p: beam.Pipeline, layout: Layout, options: CheckOptions, out: str, info: dict, publish_to: str | None
) -> None:
    files = p | "Files" >> beam.Create(layout.files) | "SpreadFiles" >> beam.Reshuffle()
    read = files | "Read" >> beam.ParDo(ReadRecords(layout)).with_outputs(ROWS, PACK_ROWS, main="records")
    packs = (
        {"row": read[ROWS], "pack": read[PACK_ROWS] | "PackRefs" >> beam.FlatMap(_pack_refs)}
        | "JoinPackSamples" >> beam.CoGroupByKey()
        | "SamplesToPacks" >> beam.FlatMap(_rows_to_packs)
    )
    checked_packs = (
        {"pack": read[PACK_ROWS], "samples": packs}
        | "JoinPacks" >> beam.CoGroupByKey()
        | "CheckPacks" >> beam.FlatMap(_check_pack, layout.max_tokens)
    )
    refs = read.records | "ImageRefs" >> beam.FlatMap(
        lambda r: [(join(layout.image_root, path), r.id) for path in sorted(set(r.images))]
    )
    statuses = (
        refs
        | "Locations" >> beam.Keys()
        | "Distinct" >> beam.Distinct()
        | "CheckImages"
        >> beam.Map(lambda loc: (loc, image_status(loc, layout.image_root, options.max_image_bytes)))
    )
    image_problems = (
        {"refs": refs, "status": statuses}
        | "JoinImages" >> beam.CoGroupByKey()
        | "ImageProblems" >> beam.FlatMap(_image_problems)
    )
    records = (
        {"records": read.records | "ById" >> beam.Map(lambda r: (r.id, r)), "images": image_problems}
        | "JoinRecords" >> beam.CoGroupByKey()
        | "Merge" >> beam.FlatMap(_merge)
    )
    everything = (records, checked_packs) | "AllRecords" >> beam.Flatten()
    counts = everything | "Count" >> beam.CombineGlobally(CountRecords(layout.max_tokens))
    structural = everything | "StructuralFindings" >> beam.FlatMap(finding_rows)
    model = p | "NoModel" >> beam.Create([])
    model_findings = p | "NoModelFindings" >> beam.Create([])
    if options.model is not None and layout.kind != "clean":
        candidates = records | "Candidates" >> beam.Filter(lambda r: r.view is not None)
        chosen = None
        if options.sample is not None:
            chosen = beam.pvalue.AsSingleton(
                candidates
                | "SampleKeys" >> beam.Map(lambda r: (stable_hash(r.id), r.id))
                | "Smallest" >> beam.combiners.Top.Smallest(options.sample)
                | "ChosenIds" >> beam.Map(lambda top: {sample_id for _, sample_id in top})
            )
            candidates = candidates | "Select" >> beam.Filter(
                lambda r, ids: selected(r.id, None, ids), chosen
            )
        elif options.fraction is not None:
            candidates = candidates | "Select" >> beam.Filter(
                lambda r: selected(r.id, options.fraction, None)
            )
        results = model_results(
            candidates, layout.image_root, options.model, options.max_image_bytes, options.batch_tokens
        )
        flagged = (
            results
            | "ByTask" >> beam.Map(lambda r: (r.task, r))
            | "GroupTasks" >> beam.GroupByKey()
            | "Flag" >> beam.Map(_flags)
        )
        model = flagged | "TaskSummaries" >> beam.Map(lambda t: (t[0], t[1]))
        model_findings = flagged | "ModelFindings" >> beam.FlatMap(lambda t: t[2])
    findings = (structural, model_findings) | "AllFindings" >> beam.Flatten()
    run_last(
        p,
        finalize,
        beam.pvalue.AsSingleton(counts),
        beam.pvalue.AsList(model),
        beam.pvalue.AsList(findings),
        directory=out,
        info=info,
        publish_to=publish_to,
    )


def findings_table(rows: list[dict[str, Any]]) -> pa.Table:
    rows = sorted(rows, key=lambda r: (r["id"], r["check"], r["reason"], r["detail"] or ""))
    return pa.Table.from_pylist(rows, schema=FINDINGS_SCHEMA)


def finalize(
    _, counts: CheckCounts, model: list, findings: list, directory: str, info: dict, publish_to: str | None
) -> None:
    summary = summary_json(counts, dict(model))
    check = {**info["check"], **summary}
    check["passed_structural"] = summary["structural_findings"] == 0
    buffer = io.BytesIO()
    if findings:
        pq.write_table(findings_table(findings), buffer, compression="zstd")
    else:  # no row group at all: HF datasets fails on a file holding an empty one
        pq.ParquetWriter(buffer, FINDINGS_SCHEMA, compression="zstd").close()
    examples = sorted(findings, key=lambda r: (r["reason"], stable_hash(r["id"]), r["id"]))
    files = {
        "findings.parquet": buffer.getvalue(),
        "check.json": check,
        "report.html": render_check_report(check, examples).encode("utf-8"),
    }
    info = {k: v for k, v in info.items() if k != "check"}  # check.json holds it
    finish_output(directory, info, files, publish_to=publish_to)


def _sha256(path: str) -> str:
    with FileSystems.open(path) as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def run_check(
    directory: str,
    out: str | None = None,
    options: CheckOptions | None = None,
    workers: int = 1,
    overwrite: bool = False,
    beam_args: list[str] | None = None,
    strict: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Checks the completed output `directory` into `out` (default <directory>/check) and returns
    check.json's content ({} on a remote runner). Config errors raise before any data is read; with
    `strict`, a structural finding raises RunFailedError after the check is written."""
    options = options or CheckOptions()
    directory = absolute_path(directory)  # workers have other working directories
    out = absolute_path(out) if out else join(directory, "check")
    options = dataclasses.replace(
        options,
        model=absolute_model_spec(options.model) if options.model else options.model,
        image_root=absolute_path(options.image_root) if options.image_root else options.image_root,
    )
    layout = read_layout(directory, options.image_root)
    if options.model is not None:
        from vlcurate.model.qwenvl_weights import check_spec

        check_spec(options.model)  # a model that cannot be had fails now, not on a worker
    job = Job(workers, beam_args, [directory, out])
    staging = job.stage(out, overwrite)
    info = {
        "kind": "vlcurate.check",
        **provenance.started([]),
        "check": {
            "input": directory,
            "input_kind": layout.kind,
            "input_info_sha256": _sha256(join(directory, "info.json")),
            "image_root": layout.image_root,
            "max_tokens": layout.max_tokens,
            "model": options.model if layout.kind != "clean" else None,
            "model_selection": _selection(options),
        },
    }
    job.run(lambda p, _: build_pipeline(p, layout, options, staging, info, publish_to=out))
    if not job.local:
        return {}
    check = read_json(join(out, "check.json"))
    if not quiet:
        print(summary_line(check, out, job.seconds()), file=sys.stderr)
    if check["samples"] == 0:
        print(
            f"[vlcurate] check: WARNING: {directory} holds no samples; nothing was checked.", file=sys.stderr
        )
    if strict and check["structural_findings"]:
        raise RunFailedError(
            f"check --strict: {check['structural_findings']:,} structural findings in {directory} "
            f"({_reasons(check['structural_findings_by_reason'])}); see {out}/findings.parquet"
        )
    return check


def _selection(options: CheckOptions) -> str:
    if options.model is None:
        return "none (structural checks only)"
    if options.sample is not None:
        return f"the {options.sample:,} samples with the lowest id hash"
    if options.fraction is not None:
        return f"samples whose id hash falls in the lowest {options.fraction:g} of its range"
    return "all samples without structural findings"


def _reasons(by_reason: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(by_reason.items(), key=lambda kv: -kv[1]))


def summary_line(check: dict[str, Any], out: str, seconds: float | None = None) -> str:
    """One line per checked output: what was checked and what was found."""
    scored = sum((t["model"] or {}).get("scored", 0) for t in check["tasks"].values())
    structural = check["structural_findings"]
    found = f"{structural:,} structural findings" + (
        f" ({_reasons(check['structural_findings_by_reason'])})" if structural else ""
    )
    model = ""
    if check.get("model"):
        flagged = check["model_findings"]
        model = f"; model {check['model']} scored {scored:,}, flagged {flagged:,}" + (
            f" ({_reasons(check['model_findings_by_reason'])})" if flagged else ""
        )
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    return (
        f"[vlcurate] check {check['input_kind']} {check['input']}{took}: {check['samples']:,} samples, "
        f"{found}{model} -> {out}"
    )


__all__ = ["CheckOptions", "run_check", "summary_line"]
