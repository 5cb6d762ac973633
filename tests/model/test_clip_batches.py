"""A pair's CLIP score does not depend on the pairs it is batched with: every model call is padded to the
batch size (model/clip_handler.py) and the pipeline regroups pairs into full batches (pipelines/clip.py).
Scores are compared bit for bit, on the bundled tiny CLIP on the CPU."""

import random

import apache_beam as beam
import torch
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.util import assert_that
from apache_beam.utils.windowed_value import WindowedValue

from vlcurate.model.clip_handler import ClipGroup, ClipInput, ClipModelHandler, encode_captions, score_batch
from vlcurate.model.train_tiny_clip import make_examples
from vlcurate.pipelines.clip import FixedSizeGroups
from vlcurate.pipelines.options import pipeline_options
from vlcurate.schemas.model_spec import DEFAULT_BUNDLED
from vlcurate.schemas.record import Pair

BATCH = 8
# "!" before other punctuation in one word is token id 0 of CLIP's BPE vocabulary, like the padding after
# the end token ("wow!)))": wow, !, ))); the others are no id 0 but close.
EXCLAIMING = ["wow!)))", "Angry Birds Go!</em>", "a !+ b", "wow!amazing", "Yahoo!Japan", "!!!", "a!b!c"]
# Longer than clip_text.SHORT_TOKENS: encoded again at the full context.
LONG = [" ".join(["a red circle"] * k) for k in (11, 14, 20, 30)]


def make_inputs(n: int, seed: int = 5, captions: list[str] | None = None) -> list[ClipInput]:
    images, made, _ = make_examples(n, seed=seed, zh_share=0.25)
    captions = (captions or []) + made[len(captions or []) :]
    return [
        ClipInput(Pair(uid=f"s/{i:03d}", source="s", caption=c), pixels=x)
        for i, (c, x) in enumerate(zip(captions, images))
    ]


def alone(model, inputs: list[ClipInput]) -> dict[str, float]:
    """Each pair's score from a batch of its own, padded like every model call."""
    return {e.pair.uid: score_batch(model, [e], BATCH)[0] for e in inputs}


def random_batches(items: list, rng: random.Random, most: int) -> list[list]:
    items = items[:]
    rng.shuffle(items)
    batches = []
    while items:
        size = rng.randint(1, most)
        batches.append(items[:size])
        items = items[size:]
    return batches


def test_a_pairs_score_is_the_same_whatever_shares_its_batch(tiny):
    inputs = make_inputs(40, captions=EXCLAIMING + LONG)
    reference = alone(tiny, inputs)
    rng = random.Random(0)
    for _ in range(4):
        for batch in random_batches(inputs, rng, BATCH):
            scores = score_batch(tiny, batch, BATCH)
            assert scores == [reference[e.pair.uid] for e in batch]


def test_padding_moves_scores_only_in_their_last_bits(tiny):
    inputs = make_inputs(40, captions=EXCLAIMING)
    padded = [s for i in range(0, 40, BATCH) for s in score_batch(tiny, inputs[i : i + BATCH], BATCH)]
    unpadded = [score_batch(tiny, [e])[0] for e in inputs]
    assert max(abs(a - b) for a, b in zip(padded, unpadded)) < 1e-5


def test_the_handler_scores_the_same_whatever_beam_batches(tiny):
    handler = ClipModelHandler(DEFAULT_BUNDLED, batch_size=BATCH, device="cpu")
    assert handler.batch_elements_kwargs()["min_batch_size"] == BATCH
    assert handler.batch_elements_kwargs()["max_batch_size"] == BATCH
    inputs = make_inputs(30, seed=9, captions=EXCLAIMING + LONG)
    reference = alone(tiny, inputs)
    rng = random.Random(1)
    for _ in range(3):
        groups = random_batches(inputs, rng, 5)  # groups of 1-5 pairs
        for batch in random_batches(groups, rng, 6):  # 1-6 groups: 1-30 pairs per call
            for prediction in handler.run_inference(batch, tiny):
                assert list(prediction.inference) == [reference[e.pair.uid] for e in prediction.example]


def test_fixed_size_groups_regroup_in_order_and_leave_the_rest_to_the_bundles_end():
    regroup = FixedSizeGroups(4)
    regroup.start_bundle()
    items = iter(range(15))
    out = [g for size in (3, 5, 1, 6) for g in regroup.process(ClipGroup(next(items) for _ in range(size)))]
    assert [list(g) for g in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert all(isinstance(g, ClipGroup) for g in out)
    (last,) = regroup.finish_bundle()
    assert isinstance(last, WindowedValue) and list(last.value) == [12, 13, 14]
    assert list(regroup.finish_bundle()) == []


def test_scores_in_a_pipeline_are_the_scores_alone(tiny):
    """FixedSizeGroups and RunInference in Beam: each pair leaves with the score it has alone, bit for
    bit, however its groups arrived."""
    inputs = make_inputs(27, seed=13, captions=LONG + EXCLAIMING)
    reference = alone(tiny, inputs)
    groups = [ClipGroup(g) for g in random_batches(inputs, random.Random(2), 7)]

    def equal_to_reference(actual):
        assert sorted(uid for uid, _ in actual) == sorted(reference)
        assert all(score == reference[uid] for uid, score in actual)

    handler = ClipModelHandler(DEFAULT_BUNDLED, batch_size=BATCH, device="cpu")
    with beam.Pipeline(options=pipeline_options()) as p:
        scored = (
            p
            | beam.Create(groups)
            | beam.ParDo(FixedSizeGroups(BATCH)).with_output_types(ClipGroup)
            | RunInference(handler)
            | beam.FlatMap(lambda r: [(e.pair.uid, s) for e, s in zip(r.example, r.inference, strict=True)])
        )
        assert_that(scored, equal_to_reference)


def test_a_caption_with_exclamation_marks_keeps_its_end_token(tiny):
    """ "!" is id 0: counted as padding, "wow!amazing" alone lost its end token (score off by up to 0.138
    on real captions). Alone, beside longer captions, and at the full context: the same embedding."""
    longer = "a small red circle above a large blue square next to a green triangle"
    with torch.no_grad():
        for caption in EXCLAIMING:
            full = tiny.model.encode_text(tiny.tokenizer([caption]))
            full = torch.nn.functional.normalize(full.float(), dim=-1)
            by_itself = encode_captions(tiny, [caption])
            beside = encode_captions(tiny, [caption, longer, ""])[:1]
            assert torch.allclose(by_itself, full, atol=1e-6), caption
            assert torch.allclose(beside, full, atol=1e-6), caption


def test_long_captions_are_encoded_at_the_full_context_in_fixed_chunks(tiny, monkeypatch):
    from vlcurate.model import clip_text

    monkeypatch.setattr(clip_text, "LONG_ROWS", 3)  # several chunks of long captions
    captions = [LONG[0], "a red circle", LONG[1], "", LONG[2], "!!!", LONG[3], LONG[0]]
    assert min(int(t.argmax()) for t in tiny.tokenizer(LONG)) >= clip_text.SHORT_TOKENS
    with torch.no_grad():
        full = torch.nn.functional.normalize(tiny.model.encode_text(tiny.tokenizer(captions)).float(), dim=-1)
        ours = encode_captions(tiny, captions)
        assert torch.allclose(ours, full, atol=1e-6)
        shuffled = [captions[i] for i in (7, 3, 1, 6, 0, 5, 2, 4)]
        again = encode_captions(tiny, shuffled)
    assert all(torch.equal(again[j], ours[i]) for j, i in enumerate((7, 3, 1, 6, 0, 5, 2, 4)))
