"""filters/decontaminate.py's embedding matches: which evaluation image a pair's embedding matches, at
the threshold exactly, with ties and with more evaluation images than one product holds."""

from __future__ import annotations

import numpy as np
import pytest

from vlcurate.filters import decontaminate
from vlcurate.filters.decontaminate import Decontaminate, EmbeddingMatcher


def embedding_matches(vectors, evals, ids, cosine):
    return EmbeddingMatcher(ids, evals).matches(vectors, cosine)


def _unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float16)


def test_the_closest_evaluation_image_at_or_above_the_threshold_is_named():
    evals = np.stack([_unit(1, 0, 0), _unit(0, 1, 0), _unit(1, 1, 0)])
    ids = ["set/a", "set/b", "set/c"]
    pairs = np.stack([_unit(1, 0.05, 0), _unit(0, 0, 1), _unit(0.2, 1, 0)])
    found = embedding_matches(pairs, evals, ids, 0.9)
    assert [(row, eval_id) for row, eval_id, _ in found] == [(0, "set/a"), (2, "set/b")]
    # The cosine is the float64 one of the stored float16 values.
    v, e = pairs[0].astype(np.float64), evals[0].astype(np.float64)
    assert found[0][2] == pytest.approx(v @ e / np.linalg.norm(v) / np.linalg.norm(e), abs=1e-12)


def test_a_cosine_equal_to_the_threshold_matches_and_ties_go_to_the_smallest_id():
    evals = np.stack([_unit(0, 1), _unit(0, 1), _unit(1, 0)])
    pairs = np.stack([_unit(0, 1)])
    assert embedding_matches(pairs, evals, ["z/1", "b/2", "a/3"], 1.0) == [(0, "b/2", 1.0)]
    assert embedding_matches(pairs, evals[2:], ["a/3"], 0.5) == []
    # Another embedding size is never compared.
    assert embedding_matches(pairs, np.ones((2, 3), dtype=np.float16), ["x", "y"], 0.1) == []


def test_many_evaluation_images_are_compared_a_few_rows_at_a_time(monkeypatch):
    rng = np.random.default_rng(3)
    evals = rng.normal(size=(300, 16)).astype(np.float16)
    pairs = np.concatenate([evals[[7, 250, 7]], rng.normal(size=(20, 16)).astype(np.float16)])
    ids = [f"e/{i:03d}" for i in range(300)]
    whole = embedding_matches(pairs, evals, ids, 0.999)
    monkeypatch.setattr(decontaminate, "PRODUCT_CELLS", 600)  # two rows of products at a time
    assert embedding_matches(pairs, evals, ids, 0.999) == whole
    assert [(row, eval_id) for row, eval_id, _ in whole] == [(0, "e/007"), (1, "e/250"), (2, "e/007")]


@pytest.mark.parametrize("cosine", [0, -0.5, 1.01, True, "0.9"])
def test_a_cosine_outside_0_1_is_refused(cosine):
    with pytest.raises(ValueError, match=r"decontaminate\.cosine must be a cosine in"):
        Decontaminate(sets=["x"], cosine=cosine)


def test_embeddings_are_read_only_when_a_cosine_is_set_and_sets_are_named():
    assert Decontaminate(sets=["x"], cosine=0.9).reads_embeddings()
    assert not Decontaminate(sets=["x"]).reads_embeddings()
    assert not Decontaminate(cosine=0.9).reads_embeddings()
    # The launcher's file name is not a parameter: info.json records the step's settings only.
    step = Decontaminate(sets=["x"], cosine=0.9)
    step.embeddings_file = "/out/eval-embeddings.npz"
    assert step.params() == {"sets": ["x"], "radius": step.radius, "cosine": 0.9}
