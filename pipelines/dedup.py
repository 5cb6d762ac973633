"""Beam wrapper of filters.dedup: one shuffle of batches into content-hash buckets.

Identical pairs share a content key, so they share a bucket, and each bucket is deduplicated on its own.
A bucket is read twice: once for (content key, uid) to find the survivors, once to mark and emit, so only
the keys of a bucket need to fit in memory where the runner streams grouped values (Dataflow).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.typehints import KV, List, Tuple

from vlcurate.filters.dedup import REASON, content_key, mark_if_duplicate, survivors
from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.steps import REJECTED, STATS, as_rejects, in_global_window, publish_counters
from vlcurate.schemas.batch import BATCH_SIZE, PairBatch
from vlcurate.schemas.stats import RunStats

STEP = "dedup"


def _split_by_bucket(batch: PairBatch, buckets: int) -> Iterator[tuple[int, tuple[list[str], PairBatch]]]:
    parts: dict[int, tuple[list[str], PairBatch]] = {}
    for pair in batch:
        key = content_key(pair)
        keys, pairs = parts.setdefault(int(key[:15], 16) % buckets, ([], PairBatch()))
        keys.append(key)
        pairs.append(pair)
    yield from parts.items()


class _MarkBucket(beam.DoFn):
    def start_bundle(self) -> None:
        self._stats = RunStats()

    def process(self, bucket: tuple[int, Iterable[tuple[list[str], PairBatch]]]) -> Iterator:
        parts = bucket[1]
        best = survivors((key, pair.uid) for keys, pairs in parts for key, pair in zip(keys, pairs))
        kept, rejected = PairBatch(), PairBatch()
        for keys, pairs in parts:
            for key, pair in zip(keys, pairs):
                self._stats.step_seen[(STEP, pair.source)] += 1
                if mark_if_duplicate(pair, best[key]):
                    self._stats.step_dropped[(STEP, pair.source, REASON)] += 1
                    rejected.append(pair)
                else:
                    kept.append(pair)
            # Re-batched to BATCH_SIZE: with many buckets the incoming parts are small.
            if len(kept) >= BATCH_SIZE:
                yield kept
                kept = PairBatch()
            if len(rejected) >= BATCH_SIZE:
                yield beam.pvalue.TaggedOutput(REJECTED, as_rejects(rejected, self._stats))
                rejected = PairBatch()
        if kept:
            yield kept
        if rejected:
            yield beam.pvalue.TaggedOutput(REJECTED, as_rejects(rejected, self._stats))

    def finish_bundle(self) -> Iterator:
        publish_counters(self._stats)
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


class Deduplicate(beam.PTransform):
    """Batches of kept pairs in; outputs main (unique), REJECTED (duplicates) and STATS partials.
    `buckets` is fixed when the pipeline is built (write.buckets_for_input)."""

    def __init__(self, buckets: int) -> None:
        super().__init__()
        self.buckets = buckets

    def expand(self, batches):
        marked = (
            batches
            | "ByContent"
            >> beam.FlatMap(_split_by_bucket, self.buckets).with_output_types(
                KV[int, Tuple[List[str], PairBatch]]
            )
            | "Group" >> beam.GroupByKey()
            | "Mark" >> beam.ParDo(_MarkBucket()).with_outputs(REJECTED, STATS, main="kept")
        )
        of_batches(marked.kept, marked[REJECTED])
        return marked
