"""Semantic duplicates: pairs whose images' CLIP embeddings lie at cosine `threshold` or above, found as
SemDeDup does (Abbas, Tirumala, Simig, Ganguli and Morcos, "SemDeDup: Data-efficient learning at
web-scale through semantic deduplication", 2023): k-means centroids of a sample of the embeddings split
them into clusters, and only the pairs of one cluster are compared with each other. The paper's threshold
is eps = 1 - cosine.

Who loses is defined pair by pair, as near_dedup defines it (filters/near_dedup.py): a pair is a semantic
duplicate when a better-ranked pair of its cluster lies at or above the threshold, and it names the
best-ranked such pair. So a chain A ~ B ~ C where A and C are farther apart loses B and C (B to A, C to B).

Determinism: the centroids are trained on a sample fixed by the uids alone (the `sample` smallest
stable_hash(uid)), once, with a fixed seed and iterations; entries are sorted by rank before they are
compared. Decisions come from float32 products, and any that lies within float32's error of the
threshold (or of a tie between centroids) is recomputed in float64 element-wise, so no answer depends on
how BLAS blocks a product, on workers or on arrival order.

Plain numpy; faiss (k-means) is imported where it is used: the `semantic` extra.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from vlcurate.filters.base import GroupStep, reject
from vlcurate.filters.near_dedup import as_key
from vlcurate.schemas.embedding import vector_of
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair

REASON = "semantic_duplicate"
KEEP_POLICIES = ("smallest_uid", "nearest_centroid")
# faiss warns below 39 training points per centroid: a smaller sample trains fewer centroids.
MIN_POINTS_PER_CENTROID = 40
KMEANS_ITERATIONS = 20
# float32 dot products of unit vectors err by at most ~d * 2**-24 (3e-5 at d = 512, 5e-5 at 768): products
# closer than this to a threshold or to the best centroid are recomputed in float64 (decontaminate too).
FLOAT32_MARGIN = 1e-4
# Similarity-matrix cells computed at a time: ~16 MB of float32 whatever the cluster's (or evaluation
# set's) size.
PRODUCT_CELLS = 1 << 22

# An entry of a cluster: (rank, embedding bytes); the rank's last element names the pair (as_key(uid)).
Entry = tuple[tuple, bytes]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """[n, d] float32 rows scaled to length 1 (float16 storage moves a unit vector's length by ~1e-3);
    zero rows stay zero."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def exact_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n] cosine of a[i] and b[i] in float64, element-wise, from the stored values (float16 is exact in
    float64): the same answer whatever else is computed alongside (a BLAS product's rounding may depend
    on the shape it is part of)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.sqrt((a64 * a64).sum(axis=1) * (b64 * b64).sum(axis=1))
    return np.divide((a64 * b64).sum(axis=1), norms, out=np.zeros(len(a64)), where=norms > 0)


def effective_clusters(points: int, clusters: int) -> int:
    """Centroids trained on `points` sample embeddings: `clusters`, fewer when the sample is small."""
    return max(1, min(clusters, points // MIN_POINTS_PER_CENTROID))


def train_centroids(vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """[k, d] float32 unit centroids of spherical k-means on `vectors` (faiss, CPU), k =
    effective_clusters; the same input and seed give the same bytes on one machine."""
    faiss = require_faiss()
    units = np.ascontiguousarray(unit_rows(vectors))
    if units.ndim != 2 or not len(units):
        raise ValueError("train_centroids needs at least one embedding")
    k = effective_clusters(len(units), clusters)
    kmeans = faiss.Kmeans(
        units.shape[1],
        k,
        niter=KMEANS_ITERATIONS,
        seed=seed,
        spherical=True,
        verbose=False,
        # The sample is the subsample: faiss must not draw another from it.
        max_points_per_centroid=math.ceil(len(units) / k) + 1,
        min_points_per_centroid=1,
    )
    kmeans.train(units)
    return unit_rows(kmeans.centroids)


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([n] index of each vector's most similar centroid, [n] float64 cosine to it). A tie within float32
    error is settled in float64, then by the smaller index."""
    vectors, centroids = np.asarray(vectors), np.asarray(centroids)
    units, centres = unit_rows(vectors), unit_rows(centroids)
    picks = np.empty(len(units), dtype=np.int64)
    rows = max(1, PRODUCT_CELLS // max(1, len(centres)))
    for start in range(0, len(units), rows):
        block = units[start : start + rows]
        sims = block @ centres.T
        pick = sims.argmax(axis=1)
        close = sims > (sims.max(axis=1) - FLOAT32_MARGIN)[:, None]
        for row in np.nonzero(close.sum(axis=1) > 1)[0]:
            candidates = np.nonzero(close[row])[0]
            exact = exact_cosines(
                np.repeat(vectors[start + row][None], len(candidates), axis=0), centroids[candidates]
            )
            pick[row] = candidates[int(np.argmax(exact))]
        picks[start : start + rows] = pick
    return picks, exact_cosines(vectors, centroids[picks])


def _best_before(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """[m] for each row of `vectors`, the first earlier row at cosine >= threshold, or -1. Row blocks
    against the rows before them only (the lower triangle), so memory stays ~PRODUCT_CELLS cells."""
    units = unit_rows(vectors)
    m = len(units)
    best = np.full(m, -1, dtype=np.int64)
    rows = max(1, PRODUCT_CELLS // max(1, m))
    for start in range(1, m, rows):
        stop = min(m, start + rows)
        sims = units[start:stop] @ units[:stop].T
        earlier = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
        hit = (sims >= threshold + FLOAT32_MARGIN) & earlier
        unsure = (sims > threshold - FLOAT32_MARGIN) & (sims < threshold + FLOAT32_MARGIN) & earlier
        if unsure.any():
            r, c = np.nonzero(unsure)
            hit[r, c] = exact_cosines(vectors[start + r], vectors[c]) >= threshold
        best[start:stop] = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    return best


def losers_in_cluster(entries: Iterable[Entry], threshold: float) -> Iterator[tuple[object, object, float]]:
    """(loser, winner, cosine) for every entry of one cluster that has a better-ranked entry at cosine >=
    `threshold`, the winner being the best-ranked such entry (loser and winner: their ranks' last
    elements). Entries with the same embedding are compared once (a cluster of ten thousand copies of one
    logo costs one row), at cosine 1."""
    by_vector: dict[bytes, list[tuple]] = {}
    for rank, vector in entries:
        by_vector.setdefault(vector, []).append(rank)
    for ranks in by_vector.values():
        ranks.sort()
    vectors = sorted(by_vector, key=lambda v: (by_vector[v][0], v))  # by each one's best-ranked entry
    if not vectors:
        return
    stored = np.stack([vector_of(v) for v in vectors])
    before = _best_before(stored, threshold)
    near = np.nonzero(before >= 0)[0]
    cosines = dict(zip(near.tolist(), exact_cosines(stored[near], stored[before[near]]).tolist()))
    for i, vector in enumerate(vectors):
        ranks, j = by_vector[vector], int(before[i])
        if j < 0:  # its best entry stays; the others lose to it
            for rank in ranks[1:]:
                yield rank[-1], ranks[0][-1], 1.0
            continue
        # Every entry of the earlier vector ranks before this one's best, so its best beats them all.
        winner = by_vector[vectors[j]][0][-1]
        for rank in ranks:
            yield rank[-1], winner, cosines[i]


class SemanticDedup(GroupStep):
    """Drops pairs whose image embedding is within `threshold` cosine of a better-ranked pair's.

    Reason `semantic_duplicate`, with the kept pair's uid in meta["semantic_duplicate_of"] and their
    cosine in meta["semantic_cosine"] (module docstring). SemDeDup (Abbas et al. 2023) removes pairs
    above cosine 1 - eps within k-means clusters of CLIP embeddings; 0.95 (eps = 0.05) is vlcurate's
    default, not the paper's: pick yours from `vlcurate dedup --semantic` run at a lower threshold, whose
    duplicates.parquet lists every pair's cosine to the pair it lost to (docs/dedup.md). The step compares
    pairs across sources, so its parameters are set once under `steps:`.
    """

    name = "semantic_dedup"
    reasons = (REASON,)
    needs_image = True
    needs = {"clip_score": "the image embeddings CLIP computes"}
    reject_file_prefix = "semantic-duplicates"
    # Run by pipelines/semantic_groups.py (clusters, then a join by uid), not by key groups.
    compares_embeddings = True
    same_params_everywhere = True
    default_sources = {
        "threshold": "vlcurate default (SemDeDup, Abbas et al. 2023, thresholds cosine as 1 - eps and tunes "
        "eps per dataset): pick it from duplicates.parquet's cosines",
        "clusters": "vlcurate default; SemDeDup clusters CLIP embeddings with k-means too",
        "sample": "vlcurate default: enough for 1,000 centroids at faiss's 40+ points each",
    }

    def __init__(
        self,
        threshold: float = 0.95,
        clusters: int = 1000,
        sample: int = 100_000,
        keep: str = "smallest_uid",
        seed: int = 0,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ValueError(f"semantic_dedup.threshold must be a cosine in (0, 1], not {threshold!r}.")
        for what, value, least in (("clusters", clusters, 1), ("sample", sample, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"semantic_dedup.{what} must be an integer >= {least}, not {value!r}.")
        if keep not in KEEP_POLICIES:
            raise ValueError(f"semantic_dedup.keep must be one of {', '.join(KEEP_POLICIES)}, not {keep!r}.")
        self.threshold, self.clusters, self.sample = float(threshold), clusters, sample
        self.keep, self.seed = keep, seed

    def entry(self, pair: Pair) -> tuple[bytes, bytes] | None:
        """(as_key(uid), embedding bytes); None for a pair without an embedding, which passes."""
        return None if not pair.embedding else (as_key(pair.uid), pair.embedding)

    def cluster_rank(self, uid: bytes, centroid_cosine: float) -> tuple:
        """A pair's rank in its cluster (the smallest stays): its uid, or under `nearest_centroid` its
        cosine to the centroid, highest first, then its uid."""
        return (-centroid_cosine, uid) if self.keep == "nearest_centroid" else (uid,)

    def mark_loser(self, pair: Pair, winner: str, cosine: float | None = None) -> None:
        reject(pair, REASON)
        pair.meta["semantic_duplicate_of"] = winner
        if cosine is not None:
            pair.meta["semantic_cosine"] = round(cosine, 4)


def require_faiss():
    """The faiss module; a ConfigError naming the extra where it is not installed (jobs call this at
    start-up, before any data is read)."""
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError("semantic dedup needs faiss for k-means: pip install 'vlcurate[semantic]'") from exc
    return faiss
