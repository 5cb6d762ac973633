"""Beam wrapper of the steps that compare perceptual hashes (filters/near_dedup.py: near_dedup,
decontaminate): bands, then a join by uid, never all pairs.

1. Bands: every hashed pair sends its bucket entry (rank, hash: a few dozen bytes, no record) once per band
   of its hash to the shuffle bucket of that (band, value); evaluation hashes join here. Each bucket
   compares only the entries that share a band value (losers_in_bucket), so a worker holds one bucket's
   entries, never the run's.
2. Join (pipelines/loser_join.py): the records (images already detached) and the losers' marks meet in
   buckets of uids; each pair takes the best-ranked entry any band found for it, and the losers are
   written right there to rejects/<prefix>-NNNNN.parquet and counted.
3. Only under `captions: merge`: each loser's caption travels to the bucket of the pair that beat it,
   which collects them in meta["captions"].
Pairs without a hash (no image, or a source the step is off for) pass without a shuffle.

decontaminate.cosine adds marks of its own: each batch of hashed pairs is compared with every evaluation
embedding where it is (EvalCosineMarks, reading the file the launcher wrote), and its marks join the
bands' before step 2; a pair matched both ways is marked once (loser_join.best_marks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np

from vlcurate.filters.base import GroupStep
from vlcurate.filters.decontaminate import EmbeddingMatcher
from vlcurate.filters.near_dedup import Entry, as_key, from_key, key_digest, losers_in_bucket, merged_captions
from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.group_steps import GroupPairs, bucket_of
from vlcurate.pipelines.loser_join import MarksJoined, join_losers, records_by_uid, split_entries, uid_bucket
from vlcurate.pipelines.steps import STATS
from vlcurate.pipelines.write import REJECT_FILES
from vlcurate.schemas.batch import PairBatch, batched
from vlcurate.schemas.embedding import vector_of

_CAPTIONS = "captions"


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


class EvalCosineMarks(beam.DoFn):
    """Batches of hashed pairs -> (uid bucket, [(uid, (0, evaluation id), cosine), ...]): the pairs whose
    embedding lies at decontaminate.cosine or above of an evaluation image's (EmbeddingMatcher)."""

    def __init__(self, step: GroupStep, buckets: int) -> None:
        self.step, self.buckets = step, buckets

    def setup(self) -> None:
        from vlcurate.pipelines.eval_sets import read_embeddings_file

        ids, vectors, _ = read_embeddings_file(self.step.embeddings_file)
        self.matcher = EmbeddingMatcher(ids, vectors)

    def process(self, batch: PairBatch) -> Iterator:
        embedded = [pair for pair in batch if pair.embedding]
        if not embedded:
            return
        vectors = np.stack([vector_of(pair.embedding) for pair in embedded])
        out: dict[int, list[tuple[bytes, tuple, float]]] = {}
        for row, eval_id, cosine in self.matcher.matches(vectors, self.step.cosine):
            uid = as_key(embedded[row].uid)
            out.setdefault(uid_bucket(uid, self.buckets), []).append((uid, (0, as_key(eval_id)), cosine))
        yield from out.items()


class _MarkMerging(MarksJoined):
    """merge: also sends each loser's caption to the uid bucket of the pair that beat it."""

    def after_marking(self, losers: PairBatch, winner_of: dict[bytes, tuple]) -> Iterator:
        captions: dict[int, list[tuple[bytes, bytes]]] = {}
        for pair in losers:
            winner = winner_of[as_key(pair.uid)][0][-1]
            captions.setdefault(uid_bucket(winner, self.buckets), []).append((winner, as_key(pair.caption)))
        for bucket, items in captions.items():
            yield beam.pvalue.TaggedOutput(_CAPTIONS, (bucket, items))


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
        hashed, unhashed = split_entries(batches, self.steps)
        bands = hashed | "Bands" >> beam.FlatMap(_band_entries, self.steps, self.buckets)
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
        if getattr(self.step, "embeddings_file", None):
            cosines = hashed | "EvalCosines" >> beam.ParDo(EvalCosineMarks(self.step, self.buckets))
            losers = (losers, cosines) | "AllMarks" >> beam.Flatten()
        records = hashed | "ByUid" >> beam.FlatMap(records_by_uid, self.buckets)
        mark = (_MarkMerging if self.merge else MarksJoined)(
            self.steps, self.directory, self.buckets, self.progress_folder, self.score_names
        )
        marked = join_losers(records, losers, mark, _CAPTIONS)
        kept = marked.kept
        if self.merge:
            kept = of_batches(
                {
                    "pairs": kept | "KeptByUid" >> beam.FlatMap(records_by_uid, self.buckets),
                    "captions": marked[_CAPTIONS],
                }
                | "JoinCaptions" >> beam.CoGroupByKey()
                | "Merge" >> beam.FlatMap(_collect_captions)
            )
        kept = (kept, unhashed) | "Stayed" >> beam.Flatten()
        of_batches(kept)
        return {"kept": kept, REJECT_FILES: marked[REJECT_FILES], STATS: marked[STATS]}
