"""Beam wrapper of the steps that compare perceptual hashes (filters/near_dedup.py: near_dedup,
decontaminate): bands, then a join by uid, never all pairs.

1. Bands: every hashed pair sends its bucket entry (rank, hash: a few dozen bytes, no record) once per band
   of its hash to the shuffle bucket of that (band, value); evaluation hashes join here. Each bucket
   compares only the entries that share a band value (losers_in_bucket), so a worker holds one bucket's
   entries, never the run's.
2. Join: the records (images already detached) and the losers' marks meet in buckets of uids; each pair
   takes the best-ranked entry any band found for it, and the losers are written right there to
   rejects/<prefix>-NNNNN.parquet and counted (as pipelines/group_steps.py does for key groups).
3. Only under `captions: merge`: each loser's caption travels to the bucket of the pair that beat it,
   which collects them in meta["captions"].
Pairs without a hash (no image, or a source the step is off for) pass without a shuffle.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam

from vlcurate.filters.base import GroupStep
from vlcurate.filters.near_dedup import Entry, as_key, from_key, key_digest, losers_in_bucket, merged_captions
from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.group_steps import GroupPairs, MarksLosers, bucket_of
from vlcurate.pipelines.steps import STATS, as_rejects
from vlcurate.pipelines.write import REJECT_FILES
from vlcurate.schemas.batch import BATCH_SIZE, PairBatch, batched

_UNHASHED = "unhashed"
_CAPTIONS = "captions"


def uid_bucket(uid: bytes, buckets: int) -> int:
    """The join's bucket of a uid (as_key)."""
    return bucket_of(key_digest(uid), buckets)


def _split(batch: PairBatch, steps: dict[str, GroupStep]) -> Iterator:
    hashed, unhashed = PairBatch(), PairBatch()
    for pair in batch:
        step = steps.get(pair.source)
        (hashed if step is not None and step.entry(pair) is not None else unhashed).append(pair)
    if hashed:
        yield hashed
    if unhashed:
        yield beam.pvalue.TaggedOutput(_UNHASHED, unhashed)


def _band_entries(batch: PairBatch, steps: dict[str, GroupStep], buckets: int) -> Iterator:
    parts: dict[int, list[tuple[str, Entry]]] = {}
    for pair in batch:
        step = steps[pair.source]
        entry = step.entry(pair)
        for key in step.bucket_keys(pair):
            parts.setdefault(bucket_of(key_digest(key), buckets), []).append((key, entry))
    yield from parts.items()


def _extra_bands(item: tuple[list[str], Entry], buckets: int) -> list:
    keys, entry = item
    return [(bucket_of(key_digest(key), buckets), [(key, entry)]) for key in keys]


def _compare(
    bucket: tuple[int, Iterable[list[tuple[str, Entry]]]], step: GroupStep, buckets: int
) -> Iterator:
    by_key: dict[str, list[Entry]] = {}
    for part in bucket[1]:
        for key, entry in part:
            by_key.setdefault(key, []).append(entry)
    best: dict[str, tuple] = {}  # a loser found in several bands of this bucket is marked once
    for entries in by_key.values():
        if len(entries) > 1:
            for uid, winner in losers_in_bucket(entries, step.radius):
                if step.loses_to(winner) and (uid not in best or winner < best[uid]):
                    best[uid] = winner
    out: dict[int, list[tuple[str, tuple]]] = {}
    for uid, winner in best.items():
        out.setdefault(uid_bucket(uid, buckets), []).append((uid, winner))
    yield from out.items()


def _by_uid(batch: PairBatch, buckets: int) -> Iterator:
    parts: dict[int, PairBatch] = {}
    for pair in batch:
        parts.setdefault(uid_bucket(as_key(pair.uid), buckets), PairBatch()).append(pair)
    yield from parts.items()


class _Mark(MarksLosers):
    """(uid bucket, {pairs: batches, losers: marks}) -> kept batches; losers written and counted."""

    def __init__(self, *args, merge: bool) -> None:
        super().__init__(*args)
        self.merge = merge

    def process(self, element: tuple[int, dict[str, Iterable]]) -> Iterator:
        index, joined = element
        winner_of: dict[str, tuple] = {}
        for marks in joined["losers"]:
            for uid, winner in marks:
                if uid not in winner_of or winner < winner_of[uid]:
                    winner_of[uid] = winner
        kept, rejected = PairBatch(), PairBatch()
        captions: dict[int, list[tuple[str, str]]] = {}
        for batch in joined["pairs"]:
            for pair in batch:
                step = self.steps[pair.source]
                self._stats.step_seen[(step.name, pair.source)] += 1
                winner = winner_of.get(as_key(pair.uid))
                if winner is None:
                    kept.append(pair)
                    continue
                step.mark_loser(pair, from_key(winner[-1]))
                self._stats.step_dropped[(step.name, pair.source, pair.reject)] += 1
                rejected.append(pair)
                if self.merge:
                    captions.setdefault(uid_bucket(winner[-1], self.buckets), []).append(
                        (winner[-1], as_key(pair.caption))
                    )
            if len(kept) >= BATCH_SIZE:
                yield kept
                kept = PairBatch()
        if kept:
            yield kept
        for bucket, items in captions.items():
            yield beam.pvalue.TaggedOutput(_CAPTIONS, (bucket, items))
        yield from self.write_losers(index, as_rejects(rejected, self._stats))


def _collect_captions(element: tuple[int, dict[str, Iterable]]) -> Iterator[PairBatch]:
    """merge: the kept pairs of one uid bucket, each with the captions of the pairs it beat."""
    _, joined = element
    others: dict[bytes, list[str]] = {}
    for items in joined["captions"]:
        for uid, caption in items:
            others.setdefault(uid, []).append(from_key(caption))
    pairs = (pair for batch in joined["pairs"] for pair in batch)
    for batch in batched(pairs):
        for pair in batch:
            if as_key(pair.uid) in others:
                pair.meta["captions"] = merged_captions(pair.caption, others[as_key(pair.uid)])
        yield batch


class NearDuplicatePairs(GroupPairs):
    """Runs one hash-comparing step, with GroupPairs' arguments and outputs (`kept`, REJECT_FILES, STATS).
    `steps`: {source: the step's instance} (one set of parameters: the step compares across sources);
    `extra_entries`: entries that join every band's buckets and never lose (evaluation hashes)."""

    def __init__(self, *args, extra_entries: Sequence[tuple[list[str], Entry]] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.extra_entries = list(extra_entries)
        self.step = next(iter(self.steps.values()))  # one set of parameters (chain.check_shared_params)
        self.merge = getattr(self.step, "captions", "") == "merge"

    def expand(self, batches):
        split = batches | "Hashed" >> beam.FlatMap(_split, self.steps).with_outputs(_UNHASHED, main="hashed")
        of_batches(split.hashed, split[_UNHASHED])
        bands = split.hashed | "Bands" >> beam.FlatMap(_band_entries, self.steps, self.buckets)
        if self.extra_entries:
            extra = (
                batches.pipeline
                | "ExtraEntries" >> beam.Create(self.extra_entries, reshuffle=False)
                | "ExtraBands" >> beam.FlatMap(_extra_bands, self.buckets)
            )
            bands = (bands, extra) | "AllBands" >> beam.Flatten()
        losers = (
            bands
            | "GroupBands" >> beam.GroupByKey()
            | "Compare" >> beam.FlatMap(_compare, self.step, self.buckets)
        )
        records = split.hashed | "ByUid" >> beam.FlatMap(_by_uid, self.buckets)
        marked = (
            {"pairs": records, "losers": losers}
            | "Join" >> beam.CoGroupByKey()
            | "Mark"
            >> beam.ParDo(
                _Mark(
                    self.steps,
                    self.directory,
                    self.buckets,
                    self.progress_folder,
                    self.score_names,
                    merge=self.merge,
                )
            ).with_outputs(REJECT_FILES, STATS, _CAPTIONS, main="kept")
        )
        kept = of_batches(marked.kept)
        if self.merge:
            kept = of_batches(
                {
                    "pairs": kept | "KeptByUid" >> beam.FlatMap(_by_uid, self.buckets),
                    "captions": marked[_CAPTIONS],
                }
                | "JoinCaptions" >> beam.CoGroupByKey()
                | "Merge" >> beam.FlatMap(_collect_captions)
            )
        kept = (kept, split[_UNHASHED]) | "Stayed" >> beam.Flatten()
        of_batches(kept)
        return {"kept": kept, REJECT_FILES: marked[REJECT_FILES], STATS: marked[STATS]}
