"""pipelines/semantic_groups.py on pairs with known embeddings: exactly the planted near-copies lose, each
naming its original, for any bucket count and worker count (byte-identical reject files), with exact
accounting; pairs without an embedding pass."""

import hashlib
import json

import numpy as np
import pytest

from vlcurate.filters.semantic_dedup import SemanticDedup
from vlcurate.pipelines.semantic_groups import SemanticDuplicatePairs
from vlcurate.schemas.embedding import vector_bytes
from vlcurate.schemas.record import Pair
from vlcurate.tests.pipelines.test_near_groups import run_group

DIM = 32


def planted_vectors(n: int, copies: int, seed: int, dim: int = DIM) -> tuple[np.ndarray, dict[int, int]]:
    """`n` unit vectors around 8 well-separated centres (cosine ~0.5 within a centre), the last `copies`
    of them near-copies (noise 0.02, cosine > 0.99) of distinct originals among the first n - copies.
    Returns the vectors and {copy's row: original's row}."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    base = centres[rng.integers(0, 8, n)] + rng.normal(size=(n, dim))
    originals = rng.choice(n - copies, size=copies, replace=False)
    truth = {}
    for i, original in enumerate(originals):
        row = n - copies + i
        base[row] = base[original] / np.linalg.norm(base[original]) + 0.02 * rng.normal(size=dim)
        truth[row] = int(original)
    return base / np.linalg.norm(base, axis=1, keepdims=True), truth


def planted_pairs(seed: int = 5) -> tuple[list[Pair], dict[str, str]]:
    """200 pairs with embeddings (20 planted copies) and 3 without; {loser uid: winner uid}. A copy's uid
    sorts after its original's, so under smallest_uid the original stays."""
    vectors, truth = planted_vectors(200, 20, seed)
    pairs = [Pair(uid=f"s/{i:04d}", source="s", embedding=vector_bytes(v)) for i, v in enumerate(vectors)]
    pairs += [Pair(uid=f"s/none-{i}", source="s") for i in range(3)]
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in order], {f"s/{c:04d}": f"s/{o:04d}" for c, o in truth.items()}


def _run(pairs, step, buckets, out, workers=1):
    result, rows, files = run_group(pairs, SemanticDuplicatePairs({"s": step}, buckets, out), out, workers, 9)
    result["kept"] = [uid for uid, _ in result["kept"]]
    return result, rows, files


@pytest.mark.parametrize("buckets", [1, 4])
def test_exactly_the_planted_copies_lose_to_their_originals(buckets, tmp_path):
    pairs, truth = planted_pairs()
    result, rows, files = _run(pairs, SemanticDedup(threshold=0.95, clusters=3), buckets, str(tmp_path))
    assert {r["uid"]: json.loads(r["meta"])["semantic_duplicate_of"] for r in rows} == truth
    assert {r["reason"] for r in rows} == {"semantic_duplicate"}
    assert all(0.95 <= json.loads(r["meta"])["semantic_cosine"] <= 1 for r in rows)
    assert sorted(result["kept"]) == sorted(p.uid for p in pairs if p.uid not in truth)
    assert result["counted"] == ({("s", "semantic_duplicate"): len(truth)}, 200)
    assert result["written"] == len(truth)
    assert {f.name.split("-")[:2] == ["semantic", "duplicates"] for f in files} == {True}


def test_identical_embeddings_and_the_nearest_centroid_policy(tmp_path):
    pairs, truth = planted_pairs()
    lone = next(p for p in pairs if p.embedding and p.uid not in truth and p.uid not in truth.values())
    twin = Pair(uid=f"{lone.uid}-twin", source="s", embedding=lone.embedding)
    step = SemanticDedup(threshold=0.95, clusters=3, keep="nearest_centroid")
    _result, rows, _ = _run([*pairs, twin], step, 2, str(tmp_path))
    lost = {r["uid"]: json.loads(r["meta"]) for r in rows}
    # Which of two copies stays is now the one nearer its centroid: one of each planted pair loses,
    # naming the other; of two identical embeddings the smaller uid stays, at cosine 1.
    groups = [(c, o) for c, o in truth.items()] + [(twin.uid, lone.uid)]
    assert len(lost) == len(groups)
    for a, b in groups:
        assert (a in lost) != (b in lost)
        loser, winner = (a, b) if a in lost else (b, a)
        assert lost[loser]["semantic_duplicate_of"] == winner
    assert lost[twin.uid]["semantic_cosine"] == 1.0
    assert any(o in lost for o in truth.values())  # the policy is not smallest_uid in disguise


def test_workers_one_and_two_write_the_same_bytes(tmp_path):
    pairs, _ = planted_pairs(seed=9)
    step = SemanticDedup(threshold=0.95, clusters=3)
    digests = []
    for workers in (1, 2):
        _, _, files = _run(pairs, step, 3, str(tmp_path / f"w{workers}"), workers)
        digests.append({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files})
    assert digests[0] == digests[1] and digests[0]
