"""CLIP image embeddings on request (model/clip_handler.py, pipelines/clip.py): the same scores bit for bit,
each scored image's normalized embedding in float16, none for an image that was not scored, the shared
model's path too, and nothing at all when no step or output needs them."""

from __future__ import annotations

import io
import math
import pickle

import apache_beam as beam
import numpy as np
import pytest
import torch
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from vlcurate.filters.clip_filter import ClipScore
from vlcurate.model.clip_handler import (
    ClipInput,
    ClipModelHandler,
    ClipPrediction,
    PendingScores,
    ScoreSlice,
    SharedClipScorer,
    score_and_embed_batch,
    score_batch,
)
from vlcurate.model.clip_models import load_clip_cached
from vlcurate.model.train_tiny_clip import make_examples
from vlcurate.pipelines.clip import AttachScores, ScoreWithClip
from vlcurate.pipelines.options import pipeline_options
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.embedding import vector_of
from vlcurate.schemas.model_spec import DEFAULT_BUNDLED
from vlcurate.schemas.record import Pair


@pytest.fixture(scope="module")
def tiny():
    return load_clip_cached(DEFAULT_BUNDLED)


def make_inputs(n: int, source: str = "s") -> list[ClipInput]:
    images, captions, _ = make_examples(n, seed=4, zh_share=0.0)
    pairs = [Pair(uid=f"{source}/{i:02d}", source=source, caption=c) for i, c in enumerate(captions)]
    return [ClipInput(p, pixels=x) for p, x in zip(pairs, images)]


def image_embeddings(model, inputs: list[ClipInput]) -> np.ndarray:
    """The reference: open_clip's image tower on the same pixels, normalized, in float32."""
    from vlcurate.model.clip_preprocess import normalize

    pixels = torch.from_numpy(np.stack([e.pixels for e in inputs])).permute(0, 3, 1, 2)
    with torch.inference_mode():
        vectors = model.encode_image(normalize(pixels, model.mean, model.std, model.dtype))
    return torch.nn.functional.normalize(vectors.float(), dim=-1).numpy()


def test_embeddings_come_with_the_same_scores(tiny):
    inputs = make_inputs(6)
    scores, vectors = score_and_embed_batch(tiny, inputs, 8)
    assert scores == score_batch(tiny, inputs, 8)  # bit for bit
    assert all(v.dtype == np.float16 and v.shape == (tiny.model.visual.output_dim,) for v in vectors)
    reference = image_embeddings(tiny, inputs)
    assert np.allclose(np.stack(vectors).astype(np.float32), reference, atol=2e-3)
    assert np.allclose(np.linalg.norm(np.stack(vectors).astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_an_image_not_scored_gets_no_embedding(tiny):
    inputs = make_inputs(3)
    broken = ClipInput(Pair(uid="s/x", source="s", caption="a red square"))  # as if nvjpeg failed
    scores, vectors = score_and_embed_batch(tiny, [inputs[0], broken, inputs[1]], 8)
    assert math.isnan(scores[1]) and vectors[1] is None
    alone = score_and_embed_batch(tiny, [inputs[0], inputs[1]], 8)[1]
    assert np.array_equal(vectors[0], alone[0]) and np.array_equal(vectors[2], alone[1])
    assert score_and_embed_batch(tiny, [broken], 8)[1] == [None]


def test_pending_embeddings_pickle_with_the_scores(tiny):
    inputs = make_inputs(5)
    pending = PendingScores(embeddings=True)
    pending.queue(tiny, inputs, 8)
    copy = pickle.loads(pickle.dumps(ScoreSlice(pending, 1, 4)))
    assert list(copy) == pending.result()[1:4]
    assert all(np.array_equal(a, b) for a, b in zip(copy.vectors(), pending.vectors()[1:4]))


def test_the_shared_model_returns_embeddings_when_asked(tiny):
    class Proxy:  # like Beam's: method calls only
        def __init__(self, scorer):
            self._scorer = scorer

        def score(self, *args, **kwargs):
            return self._scorer.score(*args, **kwargs)

    inputs = make_inputs(6)
    handler = ClipModelHandler("tiny", batch_size=4, device="cpu", share=True, embeddings=True)
    predictions = handler.run_inference([inputs[:2], inputs[2:]], Proxy(SharedClipScorer(tiny)))
    scores = [s for p in predictions for s in p.inference]
    vectors = [v for p in predictions for v in p.inference.vectors()]
    first, second = score_and_embed_batch(tiny, inputs[:4], 4), score_and_embed_batch(tiny, inputs[4:], 4)
    assert scores == first[0] + second[0]
    assert all(np.array_equal(a, b) for a, b in zip(vectors, first[1] + second[1]))
    plain = ClipModelHandler("tiny", batch_size=4, device="cpu", share=True)
    without = plain.run_inference([inputs], Proxy(SharedClipScorer(tiny)))
    assert [s for p in without for s in p.inference] == scores
    assert all(p.inference.vectors() is None for p in without)


def test_attach_scores_gives_embeddings_to_the_named_sources_only(tiny):
    inputs = make_inputs(2, "a") + make_inputs(2, "b")
    pending = PendingScores(embeddings=True)
    pending.queue(tiny, inputs, 8)
    attach = AttachScores(hold=False, embed={"a"})
    attach.start_bundle()
    (batch,) = attach.process(ClipPrediction(inputs, ScoreSlice(pending, 0, 4)))
    assert [p.embedding is not None for p in batch] == [True, True, False, False]
    assert np.array_equal(vector_of(batch[0].embedding), pending.vectors()[0])
    assert [p.scores["clip"] for p in batch] == pending.result()


def test_without_a_need_no_embedding_is_computed_or_carried(tiny, monkeypatch):
    """The cheap path: no source asks, so the model batches compute no embeddings (the handler is told
    so) and the pairs carry none."""
    asked = []
    queue = PendingScores.queue

    def spy(self, *args, **kwargs):
        asked.append(self.embeddings)
        return queue(self, *args, **kwargs)

    monkeypatch.setattr(PendingScores, "queue", spy)
    images, captions, _ = make_examples(5, seed=2, zh_share=0.0)
    pairs = PairBatch(Pair(uid=f"s/{i}", source="s", caption=c) for i, c in enumerate(captions))
    for pair, pixels in zip(pairs, images):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        pair.image, pair.image_format = buffer.getvalue(), "PNG"
    steps = {"s": ClipScore(batch_size=4, device="cpu", decode_threads=1)}
    for embed, needed in (((), False), (("s",), True)):
        asked.clear()
        with beam.Pipeline(options=pipeline_options()) as p:
            scored = p | beam.Create([pairs]) | ScoreWithClip(steps, embed)
            carried = scored["kept"] | beam.FlatMap(lambda b: [p.embedding is not None for p in b])
            assert_that(carried, equal_to([needed] * 5))
        assert asked and set(asked) == {needed}
