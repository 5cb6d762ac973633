"""`clean --resume`: a clean job cut into chunks of input files, so that a killed run goes on where it
stopped instead of starting from zero.

Phase 1, one Beam pipeline per chunk: read the chunk's files, run every per-pair step up to the model's
scores (clean.score_pairs: the decoding and the GPU, the costly part) and store what came out in the
resume folder beside the output (`<parent>/.<name>.resume/chunks/<n>/`): the pairs still kept (image bytes
detached where the shard writer reads them back from the input anyway), the rejects so far (without image
bytes: rejects never store them), and the stats partials. Each writer lists the files it finished; the
chunk's manifest, written last, names them and marks the chunk done (a file no manifest names, from a
retried bundle or a killed run, is never read).

Phase 2, one pipeline: every chunk's stored pairs, rejects and partials go through the rest of the job
exactly as in an uninterrupted run (clean.build_pipeline): the steps after the model (keep-fraction
thresholds need every score), the group steps (dedup across all chunks), shards, rejects, stats, report,
COMPLETED last. Its output is byte for byte that of a run without --resume. The resume folder is removed
once the output is complete.

A rerun with --resume skips the chunks whose manifest exists. The plan (the matched files with their
sizes, the config, the chunk size) is stored first; a rerun whose plan differs is refused, since the stored
chunks would not belong to it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import struct
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from vlcurate.filters.chain import Chain
from vlcurate.pipelines.image_spans import detach_images
from vlcurate.pipelines.input_size import Total, estimate_records, sum_totals
from vlcurate.pipelines.job import Job, JobProgress
from vlcurate.pipelines.output import (
    beside,
    ensure_dir,
    is_completed,
    join,
    read_json,
    remove_tree,
    run_last,
    write_json,
)
from vlcurate.pipelines.read import ReadSource
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.config import CleanConfig
from vlcurate.schemas.errors import ConfigError

MANIFEST, PLAN = "manifest.json", "plan.json"
MAX_CHUNKS = 32  # default chunk size: the input cut into at most this many chunks
_FRAME = struct.Struct(">Q")  # each stored element: its pickle's length, then the pickle


def resume_dir(output: str) -> str:
    """`<parent>/.<name>.resume`, beside the output (publishing an output never touches it)."""
    return beside(output, "resume")


def plan_chunks(readers: list[ReadSource], chunk_files: int | None) -> list[list[tuple[int, str]]]:
    """Every input file as (source index, path), in the readers' order, cut into chunks of
    `chunk_files` files (default: at most MAX_CHUNKS chunks)."""
    files = [(i, path) for i, reader in enumerate(readers) for path in reader.files]
    size = chunk_files or max(1, -(-len(files) // MAX_CHUNKS))
    return [files[k : k + size] for k in range(0, len(files), size)]


def _plan(config: CleanConfig, readers: list[ReadSource], chunks: list) -> dict[str, Any]:
    settings = config.to_dict()
    # Neither changes what a chunk holds (outputs do not depend on the worker count).
    settings.pop("workers", None)
    settings.get("output", {}).pop("overwrite", None)
    return {
        "config_sha256": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest(),
        "files": [[r.source.name, path, r.sizes[path]] for r in readers for path in r.files],
        "chunks": [[[i, path] for i, path in chunk] for chunk in chunks],
    }


def _open_plan(folder: str, plan: dict[str, Any]) -> None:
    """Stores the plan in a new resume folder, or checks that an existing one was made for this plan."""
    path = join(folder, PLAN)
    if not FileSystems.exists(path):
        ensure_dir(folder)
        write_json(path, plan)
        return
    stored = read_json(path)
    if stored != plan:
        what = "config" if stored.get("config_sha256") != plan["config_sha256"] else "input files or chunks"
        raise ConfigError(
            f"--resume: {folder} holds chunks of a run with different {what}; remove that folder to start "
            "over, or run without --resume."
        )


def run_resumable(
    config: CleanConfig,
    beam_args: list[str] | None,
    progress: bool,
    chain: Chain,
    readers: list[ReadSource],
    chunk_files: int | None,
    finish: Callable[[Callable[..., Any]], Any],
) -> Any:
    """Phase 1 for every chunk not done yet, then `finish(scored)`, which runs phase 2 (clean.run_clean's
    own run with `scored` standing in for its reading and scoring); the resume folder goes once the
    output is complete. Returns what `finish` returns."""
    folder = resume_dir(config.output.dir)
    chunks = plan_chunks(readers, chunk_files)
    _open_plan(folder, _plan(config, readers, chunks))
    directories = [join(folder, "chunks", f"{k:05d}") for k in range(len(chunks))]
    done = {k for k, d in enumerate(directories) if FileSystems.exists(join(d, MANIFEST))}
    if done:
        print(
            f"[vlcurate] resuming: {len(done)} of {len(chunks)} chunks already done ({folder})",
            file=sys.stderr,
        )
    for k, (chunk, directory) in enumerate(zip(chunks, directories)):
        if k in done:
            continue
        paths: dict[int, list[str]] = {}  # source index -> its files in this chunk
        for i, path in chunk:
            paths.setdefault(i, []).append(path)
        chunk_readers = [
            ReadSource(readers[i].source, {p: readers[i].sizes[p] for p in ps}) for i, ps in paths.items()
        ]
        job = Job(config.workers, beam_args, [])
        build = functools.partial(
            _store_chunk, config=config, chain=chain, readers=chunk_readers, directory=directory
        )
        lines = JobProgress(
            f"clean chunk {k + 1}/{len(chunks)}",
            outcomes=("passed", "rejected"),  # passed: every step up to the model's scores
            total=functools.partial(_chunk_total, chunk_readers),
            worker_log="vlcurate-workers",
        )
        job.run(build, lines, progress)
        job.say_done(f"chunk {k + 1} of {len(chunks)}", f"{len(chunk):,} input files", directory)
    manifests = [{**read_json(join(d, MANIFEST)), "directory": d} for d in directories]
    result = finish(functools.partial(_stored, manifests=manifests))
    if is_completed(config.output.dir):  # a failed run keeps its chunks for the rerun
        remove_tree(folder)
    return result


def _chunk_total(readers: list[ReadSource]) -> Total | None:
    return sum_totals([estimate_records(r.source.format, r.sizes) for r in readers])


def _store_chunk(
    p,
    progress_folder: str | None,
    config: CleanConfig,
    chain: Chain,
    readers: list[ReadSource],
    directory: str,
) -> None:
    from vlcurate.pipelines.clean import counter, image_digests_needed, score_pairs

    kept, rejects, partials = score_pairs(p, config, chain, readers, progress_folder)
    counted = counter(progress_folder)
    kept = counted(kept, "passed")
    rejects = [counted(part, "rejected", f"/{i}") for i, part in enumerate(rejects)]
    if config.output.reread_images:  # as the whole job does before its shuffles (image_spans.py)
        digests = image_digests_needed(chain)
        kept = kept | "DetachImages" >> beam.Map(detach_images, digests).with_output_types(PairBatch)
    stored = [kept | "StoreKept" >> beam.ParDo(StoreElements(directory, "kept"))]
    for i, part in enumerate(rejects):
        bare = part | f"DropRejectImages/{i}" >> beam.Map(_without_images).with_output_types(PairBatch)
        stored.append(bare | f"StoreRejects/{i}" >> beam.ParDo(StoreElements(directory, f"rejects{i}")))
    flat = partials | "Partials" >> beam.Flatten()
    stored.append(flat | "StorePartials" >> beam.ParDo(StoreElements(directory, "partials")))
    files = stored | "StoredFiles" >> beam.Flatten()
    run_last(p, _write_manifest, beam.pvalue.AsList(files), directory=directory, rejects=len(rejects))


def _without_images(batch: PairBatch) -> PairBatch:
    for pair in batch:
        pair.image = None
    return batch


class StoreElements(beam.DoFn):
    """Appends each element (pickled, length-prefixed) to a file of its own per bundle under `directory`;
    yields (kind, path) for each file it finished."""

    def __init__(self, directory: str, kind: str) -> None:
        self.directory, self.kind = directory, kind

    def start_bundle(self) -> None:
        self._path, self._fh = None, None

    def process(self, element: Any) -> Iterator:
        if self._fh is None:
            self._path = join(self.directory, f"{self.kind}-{uuid.uuid4().hex}.bin")
            self._fh = FileSystems.create(self._path)
        data = pickle.dumps(element, protocol=pickle.HIGHEST_PROTOCOL)
        self._fh.write(_FRAME.pack(len(data)) + data)
        return iter(())

    def finish_bundle(self) -> Iterator:
        from apache_beam.utils.windowed_value import WindowedValue

        if self._fh is not None:
            self._fh.close()
            yield WindowedValue((self.kind, self._path), 0, [beam.transforms.window.GlobalWindow()])


def _write_manifest(_: Any, files: list[tuple[str, str]], directory: str, rejects: int) -> None:
    by_kind: dict[str, list[str]] = {}
    for kind, path in files:
        by_kind.setdefault(kind, []).append(path.rsplit("/", 1)[-1])
    write_json(
        join(directory, MANIFEST),
        {"rejects": rejects, "files": {kind: sorted(names) for kind, names in sorted(by_kind.items())}},
    )


def read_elements(path: str) -> Iterator[Any]:
    with FileSystems.open(path) as fh:
        while header := fh.read(_FRAME.size):
            yield pickle.loads(fh.read(_FRAME.unpack(header)[0]))


def _stored(p, progress_folder: str | None, manifests: list[dict[str, Any]]):
    """(kept, rejects, partials) as clean.build_pipeline takes them, read from every chunk; the pairs
    counted as read for the progress lines."""
    from vlcurate.pipelines.clean import counter

    counted = counter(progress_folder)

    def paths(kind: str) -> list[str]:
        return sorted(join(m["directory"], name) for m in manifests for name in m["files"].get(kind, []))

    def read(kind: str, label: str, batches: bool = True):
        reading = beam.FlatMap(read_elements)
        if batches:
            reading = reading.with_output_types(PairBatch)
        return p | f"Stored[{label}]" >> beam.Create(paths(kind)) | f"Read[{label}]" >> reading

    parts = max(m["rejects"] for m in manifests)
    kept = counted(read("kept", "kept"), "read", "/kept")
    rejects = [counted(read(f"rejects{i}", f"rejects{i}"), "read", f"/rejects{i}") for i in range(parts)]
    return kept, rejects, [read("partials", "partials", batches=False)]
