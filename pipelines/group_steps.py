"""Beam wrapper of the group steps (filters/base.py GroupStep: dedup, keep_longest): one shuffle of
batches into group-key buckets per step, counted by filters/runner.py.

Pairs of one group share a key, so they share a bucket, and each bucket is decided on its own. A bucket is
read twice: once for each key's winner (the smallest rank), once to mark and emit, so only the keys and
ranks of a bucket and its losers (as reject records, without images) need to fit in memory where the
runner streams grouped values (Dataflow). Pairs a step does not group (a source that turned it off) pass
it without a shuffle.

A bucket's losers are written right there, to rejects/<prefix>-NNNNN.parquet (dedup: duplicates-NNNNN),
and counted into the run's stats: sending them on to the rejects' own shuffle would move every duplicate
through a second shuffle (on caption-only data with many repeats that cost ~0.5 s of a 7 s run).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.typehints import KV, List, Tuple

from vlcurate.filters.base import GroupStep
from vlcurate.filters.runner import mark_losers
from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.progress import ProgressCounter
from vlcurate.pipelines.steps import STATS, as_rejects, in_global_window, publish_counters
from vlcurate.pipelines.write import REJECT_FILES, write_reject_file
from vlcurate.schemas.batch import BATCH_SIZE, PairBatch
from vlcurate.schemas.stats import RunStats


def bucket_of(key: str, buckets: int) -> int:
    """The bucket of a group key (a hex digest); it also names the bucket's file of losers."""
    return int(key[:15], 16) % buckets


_UNGROUPED = "ungrouped"


def _split_by_bucket(batch: PairBatch, steps: dict[str, GroupStep], buckets: int) -> Iterator:
    parts: dict[int, tuple[list[str], PairBatch]] = {}
    ungrouped = PairBatch()
    for pair in batch:
        key = steps[pair.source].group_key(pair)
        if key is None:
            ungrouped.append(pair)
            continue
        keys, pairs = parts.setdefault(bucket_of(key, buckets), ([], PairBatch()))
        keys.append(key)
        pairs.append(pair)
    yield from parts.items()
    if ungrouped:
        yield beam.pvalue.TaggedOutput(_UNGROUPED, ungrouped)


class MarksLosers(beam.DoFn):
    """What every group step's marking DoFn shares (here and pipelines/loser_join.py): stats partials
    per bundle, and a bucket's losers written to rejects/<prefix>-NNNNN.parquet, counted as final rejects
    and as progress."""

    def __init__(
        self,
        steps: dict[str, GroupStep],
        directory: str,
        buckets: int,
        progress_folder: str | None,
        score_names: Sequence[str],
    ) -> None:
        self.steps, self.directory, self.buckets = steps, directory, buckets
        self.progress_folder, self.score_names = progress_folder, list(score_names)

    def setup(self) -> None:
        self._progress = ProgressCounter(self.progress_folder, "rejected") if self.progress_folder else None

    def start_bundle(self) -> None:
        self._stats = RunStats()

    def write_losers(self, index: int, losers: PairBatch) -> Iterator:
        """Writes bucket `index`'s losers (already without images: as_rejects) and yields its manifest row."""
        if not losers:
            return
        for pair in losers:
            self._stats.observe_final(pair)
        prefix = next(iter(self.steps.values())).reject_file_prefix
        written = write_reject_file(
            self.directory, index, self.buckets, losers, self.score_names, prefix=prefix
        )
        yield beam.pvalue.TaggedOutput(REJECT_FILES, written)
        if self._progress is not None:
            self._progress.add(len(losers))

    def finish_bundle(self) -> Iterator:
        publish_counters(self._stats)
        if self._progress is not None:
            self._progress.flush()
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


class _MarkBucket(MarksLosers):
    def process(self, bucket: tuple[int, Iterable[tuple[list[str], PairBatch]]]) -> Iterator:
        index, parts = bucket
        best: dict[str, tuple] = {}  # key -> (rank, uid) of its winner so far
        for keys, pairs in parts:
            for key, pair in zip(keys, pairs):
                candidate = (self.steps[pair.source].rank(pair), pair.uid)
                if key not in best or candidate < best[key]:
                    best[key] = candidate
        winners = {key: uid for key, (_, uid) in best.items()}
        kept, rejected, losers = PairBatch(), PairBatch(), PairBatch()
        for keys, pairs in parts:
            part_kept, part_losers = mark_losers(zip(keys, pairs), winners, self.steps, self._stats)
            kept.extend(part_kept)
            rejected.extend(part_losers)
            # Re-batched to BATCH_SIZE: with many buckets the incoming parts are small.
            if len(kept) >= BATCH_SIZE:
                yield kept
                kept = PairBatch()
            if len(rejected) >= BATCH_SIZE:  # held without their images
                losers.extend(as_rejects(rejected, self._stats))
                rejected = PairBatch()
        if kept:
            yield kept
        losers.extend(as_rejects(rejected, self._stats))
        yield from self.write_losers(index, losers)


class GroupPairs(beam.PTransform):
    """Runs one group step: batches of kept pairs in; outputs main (the pairs that stay, as batches),
    REJECT_FILES (one manifest row per file of losers written under `directory`) and STATS partials,
    which count the losers as final rejects. `steps`: {source: the step's instance for it}; `buckets` is
    fixed when the pipeline is built (write.buckets_for_input); with `progress_folder` the losers count as
    rejected in the progress lines. `score_names`: the run's (the loser files' scores fields, as in every
    reject file)."""

    def __init__(
        self,
        steps: dict[str, GroupStep],
        buckets: int,
        directory: str,
        progress_folder: str | None = None,
        score_names: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.steps, self.buckets, self.directory = steps, buckets, directory
        self.progress_folder, self.score_names = progress_folder, list(score_names)

    def expand(self, batches):
        split = batches | "ByGroup" >> beam.FlatMap(_split_by_bucket, self.steps, self.buckets).with_outputs(
            _UNGROUPED, main="grouped"
        )
        split.grouped.element_type = KV[int, Tuple[List[str], PairBatch]]
        of_batches(split[_UNGROUPED])
        marked = (
            split.grouped
            | "Group" >> beam.GroupByKey()
            | "Mark"
            >> beam.ParDo(
                _MarkBucket(self.steps, self.directory, self.buckets, self.progress_folder, self.score_names)
            ).with_outputs(REJECT_FILES, STATS, main="kept")
        )
        of_batches(marked.kept)
        kept = (marked.kept, split[_UNGROUPED]) | "Stayed" >> beam.Flatten()
        of_batches(kept)
        return {"kept": kept, REJECT_FILES: marked[REJECT_FILES], STATS: marked[STATS]}
