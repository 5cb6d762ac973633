"""Beam wrapper of the dedup step (filters/dedup.py, counted by filters/runner.py): one shuffle of batches into content-hash buckets.

Identical pairs share a content key, so they share a bucket, and each bucket is deduplicated on its own.
A bucket is read twice: once for (content key, uid) to find the survivors, once to mark and emit, so only
the keys of a bucket and its duplicates (as reject records, without images) need to fit in memory where
the runner streams grouped values (Dataflow).

A bucket's duplicates are written right there, to rejects/duplicates-NNNNN.parquet, and counted into the
run's stats: sending them on to the rejects' own shuffle would move every duplicate through a second
shuffle (on caption-only data with many repeats that cost ~0.5 s of a 7 s run).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.typehints import KV, List, Tuple

from vlcurate.filters.dedup import content_key, survivors
from vlcurate.filters.runner import mark_duplicates
from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.progress import ProgressCounter
from vlcurate.pipelines.steps import STATS, as_rejects, in_global_window, publish_counters
from vlcurate.pipelines.write import REJECT_FILES, write_reject_file
from vlcurate.schemas.batch import BATCH_SIZE, PairBatch
from vlcurate.schemas.stats import RunStats


def bucket_of(key: str, buckets: int) -> int:
    """The bucket of a content key (a hex digest); it also names the bucket's file of duplicates."""
    return int(key[:15], 16) % buckets


def _split_by_bucket(batch: PairBatch, buckets: int) -> Iterator[tuple[int, tuple[list[str], PairBatch]]]:
    parts: dict[int, tuple[list[str], PairBatch]] = {}
    for pair in batch:
        key = content_key(pair)
        keys, pairs = parts.setdefault(bucket_of(key, buckets), ([], PairBatch()))
        keys.append(key)
        pairs.append(pair)
    yield from parts.items()


class _MarkBucket(beam.DoFn):
    def __init__(
        self, directory: str, buckets: int, progress_folder: str | None, score_names: Sequence[str]
    ) -> None:
        self.directory, self.buckets, self.progress_folder = directory, buckets, progress_folder
        self.score_names = list(score_names)

    def setup(self) -> None:
        self._progress = ProgressCounter(self.progress_folder, "rejected") if self.progress_folder else None

    def start_bundle(self) -> None:
        self._stats = RunStats()

    def process(self, bucket: tuple[int, Iterable[tuple[list[str], PairBatch]]]) -> Iterator:
        index, parts = bucket
        best = survivors((key, pair.uid) for keys, pairs in parts for key, pair in zip(keys, pairs))
        kept, rejected, duplicates = PairBatch(), PairBatch(), PairBatch()
        for keys, pairs in parts:
            part_kept, part_duplicates = mark_duplicates(zip(keys, pairs), best, self._stats)
            kept.extend(part_kept)
            rejected.extend(part_duplicates)
            # Re-batched to BATCH_SIZE: with many buckets the incoming parts are small.
            if len(kept) >= BATCH_SIZE:
                yield kept
                kept = PairBatch()
            if len(rejected) >= BATCH_SIZE:  # held without their images
                duplicates.extend(as_rejects(rejected, self._stats))
                rejected = PairBatch()
        if kept:
            yield kept
        duplicates.extend(as_rejects(rejected, self._stats))
        if duplicates:
            for pair in duplicates:
                self._stats.observe_final(pair)
            written = write_reject_file(
                self.directory, index, self.buckets, duplicates, self.score_names, prefix="duplicates"
            )
            yield beam.pvalue.TaggedOutput(REJECT_FILES, written)
            if self._progress is not None:
                self._progress.add(len(duplicates))

    def finish_bundle(self) -> Iterator:
        publish_counters(self._stats)
        if self._progress is not None:
            self._progress.flush()
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


class Deduplicate(beam.PTransform):
    """Batches of kept pairs in; outputs main (unique pairs, as batches), REJECT_FILES (one manifest row
    per file of duplicates written under `directory`) and STATS partials, which count the duplicates as
    final rejects. `buckets` is fixed when the pipeline is built (write.buckets_for_input); with
    `progress_folder` the duplicates count as rejected in the progress lines. `score_names`: the run's
    (the duplicates files' scores fields, as in every reject file)."""

    def __init__(
        self,
        buckets: int,
        directory: str,
        progress_folder: str | None = None,
        score_names: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.buckets, self.directory, self.progress_folder = buckets, directory, progress_folder
        self.score_names = list(score_names)

    def expand(self, batches):
        marked = (
            batches
            | "ByContent"
            >> beam.FlatMap(_split_by_bucket, self.buckets).with_output_types(
                KV[int, Tuple[List[str], PairBatch]]
            )
            | "Group" >> beam.GroupByKey()
            | "Mark"
            >> beam.ParDo(
                _MarkBucket(self.directory, self.buckets, self.progress_folder, self.score_names)
            ).with_outputs(REJECT_FILES, STATS, main="kept")
        )
        of_batches(marked.kept)
        return marked
