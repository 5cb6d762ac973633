"""Scores read when used: a model batch is queued, its groups wait in AttachScores until the next batch is
queued, and every pair comes out once with the score score_batch gives it."""

import math
import pickle

import apache_beam as beam
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.windowed_value import WindowedValue

from vlcurate.model.clip_handler import (
    ClipInput,
    ClipModelHandler,
    ClipPrediction,
    PendingScores,
    ScoreSlice,
    score_batch,
)
from vlcurate.model.train_tiny_clip import make_examples
from vlcurate.pipelines.clip import AttachScores
from vlcurate.pipelines.options import pipeline_options
from vlcurate.schemas.model_spec import DEFAULT_BUNDLED
from vlcurate.schemas.record import Pair


def make_inputs(n: int, seed: int = 3) -> list[ClipInput]:
    images, captions, _ = make_examples(n, seed=seed, zh_share=0.25)
    pairs = [Pair(uid=f"s/{i:02d}", source="s", caption=c) for i, c in enumerate(captions)]
    return [ClipInput(p, pixels=x) for p, x in zip(pairs, images)]


def results_of(model, groups: list[list[ClipInput]]) -> list[ClipPrediction]:
    """One model batch made of these groups, as run_inference returns it."""
    pending, start, results = PendingScores(), 0, []
    pending.queue(model, [e for g in groups for e in g])
    for group in groups:
        results.append(ClipPrediction(group, ScoreSlice(pending, start, start + len(group))))
        start += len(group)
    return results


def uids(batches) -> list[list[str]]:
    return [[p.uid for p in batch] for batch in batches]


def test_a_model_batch_is_held_until_the_next_one_is_queued(tiny):
    inputs = make_inputs(10)
    first = results_of(tiny, [inputs[0:3], inputs[3:5]])
    second = results_of(tiny, [inputs[5:10]])
    attach = AttachScores(hold=True)
    attach.start_bundle()
    assert list(attach.process(first[0])) == []
    assert list(attach.process(first[1])) == []
    released = list(attach.process(second[0]))
    assert uids(released) == [["s/00", "s/01", "s/02"], ["s/03", "s/04"]]
    flushed = list(attach.finish_bundle())
    assert all(isinstance(w, WindowedValue) for w in flushed)
    assert uids(w.value for w in flushed) == [["s/05", "s/06", "s/07", "s/08", "s/09"]]
    expected = score_batch(tiny, inputs[0:5]) + score_batch(tiny, inputs[5:10])
    scored = [p.scores["clip"] for batch in [*released, *(w.value for w in flushed)] for p in batch]
    assert scored == pytest.approx(expected, abs=1e-6)


def test_without_hold_each_group_leaves_at_once(tiny):
    inputs = make_inputs(4)
    attach = AttachScores(hold=False)
    attach.start_bundle()
    out = [list(attach.process(r)) for r in results_of(tiny, [inputs[:1], inputs[1:]])]
    assert [uids(o) for o in out] == [[["s/00"]], [["s/01", "s/02", "s/03"]]]
    assert list(attach.finish_bundle()) == []


def test_pending_scores_pickle_as_plain_numbers(tiny):
    """A runner that does not fuse RunInference with the next step ships the scores, not GPU state."""
    inputs = make_inputs(6)
    (result,) = results_of(tiny, [inputs])
    copy = pickle.loads(pickle.dumps(result.inference))
    assert list(copy) == list(result.inference) == score_batch(tiny, inputs)
    assert len(copy) == 6 and copy[-1] == result.inference[-1]


def test_a_batch_whose_images_all_failed_scores_nan(tiny):
    broken = [ClipInput(Pair(uid="s/x", source="s", caption="a red square"))]  # no pixels, no JPEG
    assert all(math.isnan(s) for s in score_batch(tiny, broken))


@pytest.mark.parametrize("hold", [True, False])
def test_every_pair_leaves_runinference_once_with_its_score(tiny, hold):
    """Groups pooled into model batches of 8 (several per bundle): with or without holding, each pair
    comes out once, with score_batch's score."""
    inputs = make_inputs(30, seed=11)
    groups = [inputs[i : i + 4] for i in range(0, 30, 4)]
    expected = dict(zip([e.pair.uid for e in inputs], score_batch(tiny, inputs)))

    def close_to_expected(actual):
        assert sorted(uid for uid, _ in actual) == sorted(expected)
        assert all(abs(score - expected[uid]) < 1e-4 for uid, score in actual)

    handler = ClipModelHandler(DEFAULT_BUNDLED, batch_size=8, device="cpu")
    with beam.Pipeline(options=pipeline_options()) as p:
        batches = p | beam.Create(groups) | RunInference(handler) | beam.ParDo(AttachScores(hold))
        scored = batches | beam.FlatMap(lambda b: [(x.uid, x.scores["clip"]) for x in b])
        assert_that(scored, close_to_expected)
        sizes = batches | beam.Map(len) | beam.CombineGlobally(sum)
        assert_that(sizes, equal_to([30]), label="once")
