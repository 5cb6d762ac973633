"""The model's scores of a completed clean run, read back and joined to the pairs of a new run of the same
inputs in place of the model step (`vlcurate retune`): new thresholds without the GPU.

A pair is matched by (uid, caption_raw): a uid names one input record, and a source that repeats a key
(a tar reusing a member name) still tells its records apart by their text. Scores come from the run's
kept Parquet twins and every reject file. A pair that reaches the model step without a stored score (the
first run never scored it, or its input changed) gets none, so clip_filter rejects it as `clip_no_score`,
with `meta.error` saying why; the retune command refuses beforehand the settings that would need such
scores (vlcurate/cli/retune.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam

from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.output import join, read_json
from vlcurate.pipelines.steps import in_global_window
from vlcurate.schemas.batch import BATCH_SIZE, PairBatch


def scored_files(directory: str) -> list[str]:
    """Every Parquet file of a completed clean output that holds scores: kept twins and reject files."""
    info = read_json(join(directory, "info.json"))
    return sorted(
        [join(directory, s["metadata"]) for s in info["shards"]]
        + [join(directory, r["file"]) for r in info["rejects"]]
    )


def read_stored(path: str, names: Sequence[str]) -> Iterator[tuple[tuple[str, str], dict[str, float]]]:
    """((uid, caption_raw), {score: value}) for each row of one file, with the scores in `names` it has."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        table = pq.read_table(fh, columns=["uid", "caption_raw", "scores"])
    for row in table.to_pylist():
        scores = {n: v for n, v in (row["scores"] or {}).items() if n in names and v is not None}
        if scores:
            yield (row["uid"], row["caption_raw"]), scores


def _attach(element: tuple[Any, dict[str, list]], names: Sequence[str], origin: str) -> Iterator:
    _, joined = element
    stored = joined["stored"]
    agreed = stored[0] if stored and all(s == stored[0] for s in stored) else None
    for pair in joined["pairs"]:
        if agreed is not None:
            pair.scores.update(agreed)
        else:
            why = "stored scores disagree" if stored else "no stored score"
            pair.meta["error"] = f"{why} for {', '.join(names)} in {origin}"
        yield pair


class _Rebatch(beam.DoFn):
    """Single pairs -> PairBatch of BATCH_SIZE (the rest at the end of the bundle)."""

    def start_bundle(self) -> None:
        self._batch = PairBatch()

    def process(self, pair: Any) -> Iterator[PairBatch]:
        self._batch.append(pair)
        if len(self._batch) >= BATCH_SIZE:
            yield self._batch
            self._batch = PairBatch()

    def finish_bundle(self) -> Iterator:
        if self._batch:
            yield in_global_window(self._batch)


class AttachStoredScores(beam.PTransform):
    """Batches of pairs in; the same pairs out with the scores `names` that run `directory` stored for
    them (a join on (uid, caption_raw): one shuffle of the pairs that reach the model step)."""

    def __init__(self, directory: str, names: Sequence[str]) -> None:
        super().__init__()
        self.directory, self.names = directory, tuple(names)

    def expand(self, batches):
        names, origin = self.names, os.path.basename(self.directory.rstrip("/")) or self.directory
        stored = (
            batches.pipeline
            | "ScoredFiles" >> beam.Create(scored_files(self.directory))
            | "ReadStored" >> beam.FlatMap(read_stored, names)
        )
        keyed = batches | "ByRecord" >> beam.FlatMap(lambda b: (((p.uid, p.caption_raw), p) for p in b))
        joined = (
            {"pairs": keyed, "stored": stored}
            | "Join" >> beam.CoGroupByKey()
            | "Attach" >> beam.FlatMap(_attach, names, origin)
            | "Rebatch" >> beam.ParDo(_Rebatch())
        )
        return of_batches(joined)
