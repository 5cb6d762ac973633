"""clip_score.share_model: the handler scores through the machine's one SharedClipScorer."""

import numpy as np

from vlcurate.model.clip_handler import ClipInput, ClipModelHandler, SharedClipScorer, score_batch
from vlcurate.schemas.record import Pair


def test_with_share_model_run_inference_calls_the_shared_scorer(tiny):
    """The handler must talk to the model only through SharedClipScorer's methods (a proxy carries no
    attributes), and get the same scores as its own model."""
    calls = []

    class Proxy:  # like Beam's: method calls only
        def __init__(self, scorer):
            self._scorer = scorer

        def score(self, images, captions, pad_to=0):
            calls.append((len(images), pad_to))
            return self._scorer.score(images, captions, pad_to)

    rng = np.random.default_rng(0)
    inputs = [
        ClipInput(Pair(uid=str(i), source="s", caption=f"a red cube {i}"), pixels=pixels)
        for i, pixels in enumerate(rng.integers(0, 255, (6, tiny.image_size, tiny.image_size, 3), np.uint8))
    ]
    handler = ClipModelHandler("tiny", batch_size=4, device="cpu", share=True)
    predictions = handler.run_inference([inputs[:2], inputs[2:]], Proxy(SharedClipScorer(tiny)))
    assert calls == [(4, 4), (2, 4)]  # chunks of batch_size, each computed padded to batch_size
    assert [len(p.inference) for p in predictions] == [2, 4]
    scores = [score for p in predictions for score in p.inference]
    assert scores == score_batch(tiny, inputs[:4], 4) + score_batch(tiny, inputs[4:], 4)
    by_uid = dict(zip([e.pair.uid for e in inputs], scores))
    mixed = [inputs[5], inputs[2], inputs[0]]  # other batch-mates, the same padded size: the same scores
    assert score_batch(tiny, mixed, 4) == [by_uid["5"], by_uid["2"], by_uid["0"]]


def test_the_shared_scorer_scores_one_call_at_a_time(monkeypatch):
    """The proxy's server answers each worker from its own thread; the shared model must still score one
    batch at a time (concurrent calls moved scores by up to 1e-3 on a GPU), and each caller gets its own."""
    import threading
    import time

    from vlcurate.model import clip_handler

    running, most = [0], [0]
    guard = threading.Lock()

    def fake_score_batch(model, batch, pad_to=0):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with guard:
            running[0] -= 1
        return [float(len(e.pair.caption)) for e in batch]

    monkeypatch.setattr(clip_handler, "score_batch", fake_score_batch)
    scorer = SharedClipScorer(model=None)
    results = {}

    def call(i):
        results[i] = scorer.score([b"jpeg"] * (i + 1), ["x" * i] * (i + 1))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert results == {i: [float(i)] * (i + 1) for i in range(4)}
