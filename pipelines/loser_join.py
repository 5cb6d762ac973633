"""The second half of the group steps that find their losers apart from the records (near_dedup and
decontaminate in pipelines/near_groups.py, semantic_dedup in pipelines/semantic_groups.py): the records
and the losers' marks meet in buckets of uids, each loser is marked with the best-ranked winner any mark
names, and the losers are written right there to rejects/<prefix>-NNNNN.parquet and counted
(MarksLosers, as pipelines/group_steps.py does for key groups).

A mark is (uid, winner's rank, *details): uid as near_dedup.as_key, the rank's last element names the
winner, and the details go to the step's mark_loser after the winner's uid (semantic_dedup: the cosine).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam

from vlcurate.filters.base import GroupStep
from vlcurate.filters.near_dedup import as_key, from_key, key_digest
from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.group_steps import MarksLosers, bucket_of
from vlcurate.pipelines.steps import STATS, as_rejects
from vlcurate.pipelines.write import REJECT_FILES
from vlcurate.schemas.batch import PairBatch, batched

NO_ENTRY = "no_entry"


def uid_bucket(uid: bytes, buckets: int) -> int:
    """The join's bucket of a uid (as_key)."""
    return bucket_of(key_digest(uid), buckets)


def split_by_entry(batch: PairBatch, steps: dict[str, GroupStep]) -> Iterator:
    """Main output: the pairs the step has an entry for; NO_ENTRY: the others (no image, no hash or
    embedding, a source the step is off for), which pass without a shuffle."""
    compared, passing = PairBatch(), PairBatch()
    for pair in batch:
        step = steps.get(pair.source)
        (compared if step is not None and step.entry(pair) is not None else passing).append(pair)
    if compared:
        yield compared
    if passing:
        yield beam.pvalue.TaggedOutput(NO_ENTRY, passing)


def split_entries(batches, steps: dict[str, GroupStep]):
    """`batches` split by split_by_entry: (the pairs to compare, the pairs that pass), both batches."""
    split = batches | "Compared" >> beam.FlatMap(split_by_entry, steps).with_outputs(
        NO_ENTRY, main="compared"
    )
    of_batches(split.compared, split[NO_ENTRY])
    return split.compared, split[NO_ENTRY]


def records_by_uid(batch: PairBatch, buckets: int) -> Iterator[tuple[int, PairBatch]]:
    parts: dict[int, PairBatch] = {}
    for pair in batch:
        parts.setdefault(uid_bucket(as_key(pair.uid), buckets), PairBatch()).append(pair)
    yield from parts.items()


def best_marks(parts: Iterable[Iterable[tuple]]) -> dict[bytes, tuple]:
    """uid -> (winner's rank, *details) of its best-ranked winner over every mark for it; between marks
    naming one winner, the smallest (winner, *details) (decontaminate: a hash match, without a cosine)."""
    best: dict[bytes, tuple] = {}
    for marks in parts:
        for uid, winner, *details in marks:
            if uid not in best or (winner, *details) < best[uid]:
                best[uid] = (winner, *details)
    return best


class MarksJoined(MarksLosers):
    """(uid bucket, {pairs: batches, losers: lists of marks}) -> the pairs that stay, as batches; losers
    marked, written and counted. `after_marking` lets a step send more from a bucket's losers (near_dedup's
    merge: their captions)."""

    def process(self, element: tuple[int, dict[str, Iterable]]) -> Iterator:
        index, joined = element
        winner_of = best_marks(joined["losers"])
        rejected = PairBatch()
        yield from batched(self._stayed(joined["pairs"], winner_of, rejected))
        yield from self.after_marking(rejected, winner_of)
        yield from self.write_losers(index, as_rejects(rejected, self._stats))

    def _stayed(self, batches: Iterable[PairBatch], winner_of: dict[bytes, tuple], rejected: PairBatch):
        """The pairs without a mark, as they come; the marked ones are marked and go to `rejected`."""
        for batch in batches:
            for pair in batch:
                step = self.steps[pair.source]
                self._stats.step_seen[(step.name, pair.source)] += 1
                mark = winner_of.get(as_key(pair.uid))
                if mark is None:
                    yield pair
                    continue
                winner, *details = mark
                step.mark_loser(pair, from_key(winner[-1]), *details)
                self._stats.step_dropped[(step.name, pair.source, pair.reject)] += 1
                rejected.append(pair)

    def after_marking(self, losers: PairBatch, winner_of: dict[bytes, tuple]) -> Iterator:
        return iter(())


def join_losers(records, losers, mark: MarksJoined, *extra_tags: str):
    """Joins `records` ((uid bucket, batch)) with `losers` ((uid bucket, [mark, ...])) and marks them:
    the ParDo's outputs, `kept` (batches), REJECT_FILES, STATS and `extra_tags`."""
    marked = (
        {"pairs": records, "losers": losers}
        | "Join" >> beam.CoGroupByKey()
        | "Mark" >> beam.ParDo(mark).with_outputs(REJECT_FILES, STATS, *extra_tags, main="kept")
    )
    of_batches(marked.kept)
    return marked
