"""`vlcurate dedup --semantic`: semantic duplicates among a finished clean output's embeddings (its
embedding store, pipelines/embeddings_store.py), as a Beam job on the skeleton of pipelines/job.py.

It writes the list, not new shards: `duplicates.parquet` (uid, duplicate_of, cosine, cluster; sorted by
uid) is what a loader filters by. Beside it `centroids.npy` (float32 [k, d]), `stats.json`, info.json and
COMPLETED, last. The search is the clean step's (pipelines/semantic_groups.py SemanticLosers), so the
same embeddings and parameters give the same list either way.
"""

from __future__ import annotations

import functools
import io
import os
import sys
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlcurate.filters.near_dedup import as_key, from_key
from vlcurate.filters.semantic_dedup import SemanticDedup, require_faiss
from vlcurate.pipelines import provenance
from vlcurate.pipelines.embeddings_store import count_embeddings, embedding_shards, read_shard
from vlcurate.pipelines.input_size import Total
from vlcurate.pipelines.job import Job, JobProgress, finish_output
from vlcurate.pipelines.output import join, read_json, require_completed, run_last
from vlcurate.pipelines.progress import tap
from vlcurate.pipelines.semantic_groups import EmbeddingBlock, SemanticLosers
from vlcurate.schemas.config import absolute_path
from vlcurate.schemas.errors import ConfigError

OUTPUT_DIR = "semantic-dedup"
LABEL = "dedup --semantic"
DUPLICATES_SCHEMA = pa.schema(
    [("uid", pa.string()), ("duplicate_of", pa.string()), ("cosine", pa.float64()), ("cluster", pa.int64())]
)


def semantic_step(**params: Any) -> SemanticDedup:
    """The step from the command's parameters; a bad one is a ConfigError (exit 2) naming what is valid."""
    try:
        return SemanticDedup(**params)
    except ValueError as exc:
        raise ConfigError(str(exc).replace("semantic_dedup.", "--")) from exc


def _read_block(shard: str, directory: str) -> list[EmbeddingBlock]:
    uids, vectors = read_shard(directory, shard)
    return [EmbeddingBlock([as_key(uid) for uid in uids], vectors)] if uids else []


def _rows(element: tuple[int, list[tuple[bytes, bytes, float]]]) -> list[tuple[str, str, float, int]]:
    cluster, losers = element
    return [(from_key(loser), from_key(winner), cosine, cluster) for loser, winner, cosine in losers]


def duplicates_parquet(rows: list[tuple[str, str, float, int]]) -> bytes:
    rows = sorted(rows)
    columns = list(zip(*rows)) if rows else [[], [], [], []]
    table = pa.Table.from_arrays(
        [pa.array(c, f.type) for c, f in zip(columns, DUPLICATES_SCHEMA)], schema=DUPLICATES_SCHEMA
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _finish(
    _: None,
    rows: list,
    centroids: np.ndarray,
    read: int,
    staging: str,
    info: dict[str, Any],
    step: SemanticDedup,
    publish_to: str,
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, centroids, allow_pickle=False)
    cosines = np.array([row[2] for row in rows])
    stats = {
        "embeddings": read,
        "clusters": len(centroids),
        "duplicates": len(rows),
        "kept": read - len(rows),
        "threshold": step.threshold,
        "parameters": step.params(),
        # How many of the duplicates stay duplicates at a higher threshold (their cosine to the pair they
        # lost to; a pair may also lie that close to another, better-ranked one: a lower bound).
        "duplicates_at_or_above": {
            f"{t:.2f}": int((cosines >= t).sum()) for t in np.arange(step.threshold, 1.0, 0.01).round(2)
        },
        "seconds": provenance.finished(info)["run"]["wall_seconds"],
    }
    files = {
        "duplicates.parquet": duplicates_parquet(rows),
        "centroids.npy": buffer.getvalue(),
        "stats.json": stats,
    }
    finish_output(staging, info, files, publish_to=publish_to)


def build_pipeline(
    p: beam.Pipeline,
    folder: str | None,
    directory: str,
    shards: list[str],
    step: SemanticDedup,
    staging: str,
    info: dict[str, Any],
    publish_to: str,
) -> None:
    """The job's pipeline (pipelines/job.py Build, with its own arguments bound): progress taps count
    into `folder`."""
    blocks = p | "Shards" >> beam.Create(shards) | "Read" >> beam.FlatMap(_read_block, directory)
    blocks = tap(blocks, folder, "read")
    found = blocks | "Clusters" >> SemanticLosers(step)
    tap(found["losers"] | "LoserLists" >> beam.Map(lambda element: element[1]), folder, "duplicates")
    rows = found["losers"] | "Rows" >> beam.FlatMap(_rows)
    read = blocks | "Sizes" >> beam.Map(len) | "Read total" >> beam.CombineGlobally(sum)
    run_last(
        p,
        _finish,
        beam.pvalue.AsList(rows),
        beam.pvalue.AsSingleton(found["centroids"]),
        beam.pvalue.AsSingleton(read),
        staging=staging,
        info=info,
        step=step,
        publish_to=publish_to,
    )


def check_input(directory: str) -> list[str]:
    """The shards of a finished clean output with embeddings; a ConfigError (before any data is read)
    naming the fix otherwise."""
    if "://" not in directory and not os.path.isdir(directory):
        raise ConfigError(
            f"{directory} does not exist: give the output directory of a finished vlcurate clean"
        )
    require_completed(directory)
    return embedding_shards(directory)


def run_semantic_dedup(
    directory: str,
    out: str | None = None,
    step: SemanticDedup | None = None,
    workers: int = 1,
    overwrite: bool = False,
    beam_args: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Finds the semantic duplicates of the clean output `directory` into `out` (default
    <directory>/semantic-dedup) and returns stats.json's content ({} on a remote runner)."""
    step = step or SemanticDedup()
    directory = absolute_path(directory)  # workers have other working directories
    out = absolute_path(out) if out else join(directory, OUTPUT_DIR)
    shards = check_input(directory)
    require_faiss()
    job = Job(workers, beam_args, [directory, out])
    staging = job.stage(out, overwrite)
    info = {
        "kind": "vlcurate.dedup.semantic",
        **provenance.started(),
        "semantic_dedup": {"input": directory, "shards": len(shards), **step.params()},
    }
    lines = JobProgress(
        LABEL,
        outcomes=("duplicates",),
        unit="embeddings",
        total=lambda: Total(count_embeddings(directory, shards), True),
    )
    job.run(
        functools.partial(
            build_pipeline,
            directory=directory,
            shards=shards,
            step=step,
            staging=staging,
            info=info,
            publish_to=out,
        ),
        lines,
        show_progress=progress,
    )
    if not job.local:
        return {}
    stats = read_json(join(out, "stats.json"))
    if stats["embeddings"] == 0:
        print(
            f"[vlcurate] {LABEL}: WARNING: the embeddings of {directory} hold no rows; nothing was compared.",
            file=sys.stderr,
        )
    job.say_done(
        LABEL,
        f"{stats['duplicates']:,} semantic duplicates of {stats['embeddings']:,} embeddings in "
        f"{stats['clusters']:,} clusters at cosine >= {step.threshold:g}",
        out,
    )
    return stats
