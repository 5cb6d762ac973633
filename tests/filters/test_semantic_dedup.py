"""filters/semantic_dedup.py: the pairwise loser rule against a brute-force reference, chains, ties, the
keep policies, parameter errors, deterministic centroids and the nearest centroid."""

import numpy as np
import pytest

from vlcurate.filters.near_dedup import as_key
from vlcurate.filters.semantic_dedup import (
    SemanticDedup,
    effective_clusters,
    exact_cosines,
    losers_in_cluster,
    nearest_centroid,
    train_centroids,
)
from vlcurate.schemas.embedding import vector_bytes, vector_of
from vlcurate.schemas.record import Pair


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _entries(vectors: np.ndarray) -> list:
    return [((f"u{i:04d}",), vector_bytes(v)) for i, v in enumerate(vectors)]


def brute_force(vectors: np.ndarray, threshold: float) -> dict[str, str]:
    """Every entry against every better-ranked one, in float64 of the float16 vectors it holds."""
    stored = np.stack([vector_of(vector_bytes(v)).astype(np.float64) for v in vectors])
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    losers = {}
    for i in range(len(stored)):
        for j in range(i):  # uids u0000 < u0001 < ...: j ranks before i
            if stored[i] @ stored[j] >= threshold:
                losers[f"u{i:04d}"] = f"u{j:04d}"
                break
    return losers


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Points around 5 centres plus near-copies of some, so cosines spread over (0.3, 1)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(5, dim))[rng.integers(0, 5, n)] + 0.8 * rng.normal(size=(n, dim))
    copies = rng.choice(n, size=n // 4, replace=False)
    rows[copies] = rows[rng.integers(0, n, n // 4)] + rng.uniform(0.01, 0.4, (n // 4, 1)) * rng.normal(
        size=(n // 4, dim)
    )
    return _unit(rows)


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9, 0.97, 0.999])
def test_losers_match_brute_force(threshold, monkeypatch):
    vectors = _clustered(300, 24, seed=int(threshold * 1000))
    # Small row blocks, so the blocked triangle is exercised as it is on big clusters.
    monkeypatch.setattr("vlcurate.filters.semantic_dedup.PRODUCT_CELLS", 1000)
    found = {loser: winner for loser, winner, _ in losers_in_cluster(_entries(vectors), threshold)}
    expected = brute_force(vectors, threshold)
    assert found == expected and expected  # every threshold here finds some


def test_cosine_is_that_of_loser_and_winner():
    vectors = _clustered(100, 16, seed=1)
    stored = np.stack([vector_of(vector_bytes(v)).astype(np.float64) for v in vectors])
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    found = list(losers_in_cluster(_entries(vectors), 0.8))
    assert found
    for loser, winner, cosine in found:
        i, j = int(loser[1:]), int(winner[1:])
        assert cosine == pytest.approx(float(stored[i] @ stored[j]), abs=1e-12)
        assert cosine >= 0.8


def test_chain_loses_both_links():
    # A ~ B (0.96) and B ~ C (0.96), A and C at ~0.84: B loses to A, C to B.
    angle = np.arccos(0.96)
    a, b, c = (np.array([np.cos(k * angle), np.sin(k * angle), 0.0]) for k in range(3))
    found = list(
        losers_in_cluster(
            [(("A",), vector_bytes(a)), (("B",), vector_bytes(b)), (("C",), vector_bytes(c))], 0.95
        )
    )
    assert [(lo, w) for lo, w, _ in found] == [("B", "A"), ("C", "B")]


def test_identical_vectors_and_arrival_order():
    rng = np.random.default_rng(4)
    v, w = _unit(rng.normal(size=(2, 8)))
    entries = [
        (("b",), vector_bytes(v)),
        (("a",), vector_bytes(v)),
        (("c",), vector_bytes(w)),
        (("d",), vector_bytes(v)),
    ]
    found = sorted(losers_in_cluster(entries, 1.0))
    assert found == [("b", "a", 1.0), ("d", "a", 1.0)]
    assert sorted(losers_in_cluster(entries[::-1], 1.0)) == found
    assert list(losers_in_cluster([], 0.9)) == []


def test_keep_policies_order_a_cluster():
    step = SemanticDedup(keep="nearest_centroid")
    near, far = step.cluster_rank(b"z", 0.9), step.cluster_rank(b"a", 0.5)
    assert near < far
    tie = sorted([step.cluster_rank(b"b", 0.7), step.cluster_rank(b"a", 0.7)])
    assert tie == [(-0.7, b"a"), (-0.7, b"b")]
    assert SemanticDedup().cluster_rank(b"a", 0.1) < SemanticDedup().cluster_rank(b"b", 0.9)
    v = np.array([1.0, 0.0])
    u = np.array([0.99, np.sqrt(1 - 0.99**2)])
    entries = [
        (step.cluster_rank(b"z", 0.9), vector_bytes(v)),
        (step.cluster_rank(b"a", 0.5), vector_bytes(u)),
    ]
    assert [(lo, w) for lo, w, _ in losers_in_cluster(entries, 0.95)] == [(b"a", b"z")]


def test_entry_and_mark_loser():
    step = SemanticDedup()
    assert step.entry(Pair(uid="s/1", source="s")) is None
    pair = Pair(uid="s/2", source="s", embedding=vector_bytes(np.ones(4) / 2))
    assert step.entry(pair) == (as_key("s/2"), pair.embedding)
    step.mark_loser(pair, "s/1", 0.987654)
    assert (pair.reject, pair.meta) == (
        "semantic_duplicate",
        {"semantic_duplicate_of": "s/1", "semantic_cosine": 0.9877},
    )
    assert set(step.params()) == {"threshold", "clusters", "sample", "keep", "seed"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"threshold": 0}, "threshold must be a cosine in (0, 1]"),
        ({"threshold": 1.5}, "threshold must be a cosine in (0, 1]"),
        ({"threshold": True}, "threshold must be a cosine"),
        ({"clusters": 0}, "clusters must be an integer >= 1"),
        ({"sample": 2.5}, "sample must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"keep": "largest_image"}, "keep must be one of smallest_uid, nearest_centroid"),
    ],
)
def test_bad_parameters_say_what_is_valid(params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SemanticDedup(**params)


def test_centroids_are_deterministic_and_fewer_for_a_small_sample():
    vectors = _clustered(2000, 32, seed=7).astype(np.float16)
    first, second = train_centroids(vectors, 10, seed=3), train_centroids(vectors, 10, seed=3)
    assert first.shape == (10, 32) and first.dtype == np.float32
    assert first.tobytes() == second.tobytes()
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-6)
    assert train_centroids(vectors, 10, seed=4).tobytes() != first.tobytes()
    assert train_centroids(vectors[:200], 10, seed=3).shape == (5, 32)  # 200 // 40
    assert [effective_clusters(n, 1000) for n in (0, 39, 40, 80_000, 100_000)] == [1, 1, 1, 1000, 1000]


def test_nearest_centroid_and_its_ties():
    centroids = np.eye(3, dtype=np.float32)
    vectors = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8], [1.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    index, cosine = nearest_centroid(vectors, centroids)
    assert index.tolist() == [0, 2, 0, 0]  # an exact tie goes to the smaller index; [0, 0, -1]: all at 0
    expected = [0.9 / np.hypot(0.9, 0.1), 0.8 / np.hypot(0.2, 0.8), 1 / np.sqrt(2), 0.0]
    assert cosine == pytest.approx(expected, abs=1e-7)
    rng = np.random.default_rng(2)
    many, centres = _unit(rng.normal(size=(500, 16))), _unit(rng.normal(size=(7, 16)))
    index, cosine = nearest_centroid(many, centres)
    assert index.tolist() == np.argmax(many @ centres.T, axis=1).tolist()
    assert cosine == pytest.approx(exact_cosines(many, centres[index]))
