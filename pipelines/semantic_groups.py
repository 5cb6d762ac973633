"""Beam wrapper of semantic_dedup (filters/semantic_dedup.py): centroids of a fixed sample, clusters of
entries, then a join by uid; never all pairs.

1. Centroids: every embedding offers (stable_hash(uid), uid, vector); Top.Smallest keeps the `sample`
   smallest (a sample fixed by the uids alone, whatever the workers or the order), and one worker trains
   the k-means centroids on it (train_centroids). They reach the next step as a side input.
2. Clusters: each block of embeddings is assigned to its nearest centroids; entries (rank, vector: about
   a kilobyte, no record) are grouped by cluster, and each cluster's losers are found there
   (losers_in_cluster). A worker holds one cluster's entries, never the run's.
3. Join (pipelines/loser_join.py): records and marks meet in buckets of uids; losers are marked, written
   to rejects/semantic-duplicates-NNNNN.parquet and counted.
Pairs without an embedding (or from a source the step is off for) pass without a shuffle. Steps 1 and 2
(SemanticLosers) also serve `vlcurate dedup --semantic` on a finished output's embedding store.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np

from vlcurate.filters.base import GroupStep
from vlcurate.filters.near_dedup import from_key
from vlcurate.filters.semantic_dedup import (
    Entry,
    SemanticDedup,
    losers_in_cluster,
    nearest_centroid,
    train_centroids,
)
from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.group_steps import GroupPairs
from vlcurate.pipelines.loser_join import MarksJoined, join_losers, records_by_uid, split_entries, uid_bucket
from vlcurate.pipelines.steps import STATS
from vlcurate.pipelines.write import REJECT_FILES
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.embedding import vector_of
from vlcurate.schemas.record import stable_hash


@dataclasses.dataclass
class EmbeddingBlock:
    """Embeddings of one size travelling together: `uids` (as_key) name the rows of `vectors` ([n, d]
    float16). Its length is its rows' (progress taps count it)."""

    uids: list[bytes]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.uids)


def blocks_of(batch: PairBatch, steps: dict[str, GroupStep]) -> Iterator[EmbeddingBlock]:
    """The entries of a batch's pairs, one block per embedding size."""
    by_size: dict[int, tuple[list[bytes], list[np.ndarray]]] = {}
    for pair in batch:
        uid, vector = steps[pair.source].entry(pair)
        uids, rows = by_size.setdefault(len(vector), ([], []))
        uids.append(uid)
        rows.append(vector_of(vector))
    for uids, rows in by_size.values():
        yield EmbeddingBlock(uids, np.stack(rows))


def _offers(block: EmbeddingBlock, size: int) -> list[tuple[bytes, bytes, bytes]]:
    """The block's candidates for the sample: its `size` smallest (stable_hash(uid), uid, vector), the
    hash as 8 big-endian bytes (which sort as the number; Beam's integer coder stops at 2**63)."""
    offers = sorted(
        (stable_hash(from_key(uid)).to_bytes(8, "big"), uid, row.tobytes())
        for uid, row in zip(block.uids, block.vectors)
    )
    return offers[:size]


def _train(sample: list[tuple[bytes, bytes, bytes]], step: SemanticDedup) -> np.ndarray:
    """Centroids of the sample's most common embedding size (a run should have one; other sizes are not
    compared); [0, 0] when there is nothing to train on."""
    if not sample:
        return np.zeros((0, 0), dtype=np.float32)
    sizes = collections.Counter(len(vector) for _, _, vector in sample)
    size = min(sizes, key=lambda s: (-sizes[s], s))
    vectors = np.stack([vector_of(vector) for _, _, vector in sample if len(vector) == size])
    return train_centroids(vectors, step.clusters, step.seed)


def _assign(block: EmbeddingBlock, step: SemanticDedup, centroids: np.ndarray) -> list:
    """(cluster, [entry, ...]) for the block's rows, each in the cluster of its nearest centroid."""
    if not len(centroids) or block.vectors.shape[1] != centroids.shape[1]:
        return []  # an embedding size the centroids were not trained on: not compared
    nearest, cosines = nearest_centroid(block.vectors, centroids)
    parts: dict[int, list[Entry]] = {}
    for uid, row, cluster, cosine in zip(block.uids, block.vectors, nearest.tolist(), cosines.tolist()):
        parts.setdefault(cluster, []).append((step.cluster_rank(uid, cosine), row.tobytes()))
    return list(parts.items())


def _cluster_losers(element: tuple[int, Iterable[list[Entry]]], step: SemanticDedup) -> Iterator:
    cluster, parts = element
    losers = list(losers_in_cluster((entry for part in parts for entry in part), step.threshold))
    if losers:
        yield cluster, losers


class SemanticLosers(beam.PTransform):
    """EmbeddingBlocks in; outputs `losers`: (cluster, [(loser uid, winner uid, cosine), ...]) per cluster
    with any (uids as_key), and `centroids`: one float32 [k, d] array."""

    def __init__(self, step: SemanticDedup) -> None:
        super().__init__()
        self.step = step

    def expand(self, blocks):
        centroids = (
            blocks
            | "Offers" >> beam.FlatMap(_offers, self.step.sample)
            | "Sample" >> beam.combiners.Top.Smallest(self.step.sample)
            | "TrainCentroids" >> beam.Map(_train, self.step)
        )
        losers = (
            blocks
            | "Assign" >> beam.FlatMap(_assign, self.step, beam.pvalue.AsSingleton(centroids))
            | "GroupClusters" >> beam.GroupByKey()
            | "Losers" >> beam.FlatMap(_cluster_losers, self.step)
        )
        return {"losers": losers, "centroids": centroids}


def _marks_by_uid(element: tuple[int, list[tuple[bytes, bytes, float]]], buckets: int) -> Iterator:
    """A cluster's losers as the join's marks, (uid, winner's rank, cosine), by the loser's uid bucket."""
    parts: dict[int, list[tuple[bytes, tuple, float]]] = {}
    for loser, winner, cosine in element[1]:
        parts.setdefault(uid_bucket(loser, buckets), []).append((loser, (winner,), cosine))
    yield from parts.items()


class SemanticDuplicatePairs(GroupPairs):
    """Runs semantic_dedup, with GroupPairs' arguments and outputs (`kept`, REJECT_FILES, STATS).
    `steps`: {source: the step's instance} (one set of parameters: the step compares across sources)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.step = next(iter(self.steps.values()))  # one set of parameters (chain.check_shared_params)

    def expand(self, batches):
        embedded, passing = split_entries(batches, self.steps)
        found = (
            embedded
            | "Blocks" >> beam.FlatMap(blocks_of, self.steps)
            | "Clusters" >> SemanticLosers(self.step)
        )
        losers = found["losers"] | "MarksByUid" >> beam.FlatMap(_marks_by_uid, self.buckets)
        records = embedded | "ByUid" >> beam.FlatMap(records_by_uid, self.buckets)
        mark = MarksJoined(self.steps, self.directory, self.buckets, self.progress_folder, self.score_names)
        marked = join_losers(records, losers, mark)
        kept = (marked.kept, passing) | "Stayed" >> beam.Flatten()
        of_batches(kept)
        return {"kept": kept, REJECT_FILES: marked[REJECT_FILES], STATS: marked[STATS]}
