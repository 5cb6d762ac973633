"""How the model checks batch samples and pair them with partners (model/qwenvl_losses.py), with a fake
model that records what it is given."""

from __future__ import annotations

import io
import math
import random
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from vlcurate.model import qwenvl_losses
from vlcurate.model.qwen_tokenizer import ENDOFTEXT_ID, IGNORE_INDEX, get_tokenizer
from vlcurate.model.qwenvl_losses import (
    LossBatch,
    LossItem,
    box_coordinate_positions,
    box_iou,
    loss_batches,
    mirror_boxes,
    mirror_moves_boxes,
    partner_images,
    partner_indices,
    prompt_ids,
    sample_losses,
    supervised_ids,
)
from vlcurate.model.trainer_view import stage_sample_view
from vlcurate.schemas.record import stable_hash


def _record(i: int, words: int = 3, image: bool = True):
    prefix = f"<img>images/{i:05d}.jpg</img>Generate the caption in English:" if image else ""
    view = stage_sample_view(prefix, " a red circle" * words + "<|endoftext|>")
    return SimpleNamespace(id=f"s{i}", task="captioning", view=view, images=tuple(view.images))


def test_partners_follow_id_hash_order_and_batches_keep_the_token_budget():
    records = [_record(i, words=1 + i % 7) for i in range(40)]
    batches = list(loss_batches(records, "data", batch_tokens=2000))
    items = [item for b in batches for item in b.items]
    assert sorted(item.id for item in items) == sorted(r.id for r in records)
    order = sorted(records, key=lambda r: (stable_hash(r.id), r.id))
    words = {r.id: 1 + int(r.id[1:]) % 7 for r in records}  # the target text is " a red circle" x words
    partner_of = {}
    for i, r in enumerate(order):  # the next one in hash order whose text differs
        after = [order[(i + k) % len(order)] for k in range(1, 9)]
        partner_of[r.id] = f"data/{next(o for o in after if words[o.id] != words[r.id]).images[0]}"
    for item in items:
        assert item.images == (f"data/images/{item.id[1:].zfill(5)}.jpg",)
        assert item.partner_images == (partner_of[item.id],)
    for b in batches:
        assert max(len(i.input_ids) for i in b.items) * len(b.items) <= 2000
    lengths = [len(item.input_ids) for item in items]
    assert lengths == sorted(lengths)  # by length, so padding is small
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert list(loss_batches(shuffled, "data", 2000)) == batches  # the data decides, not arrival order


def test_a_partner_has_another_answer_and_another_image_when_one_is_near():
    # "Three." swapped with another "Three." image tells nothing: the partner is the next other answer
    assert partner_indices(["Three", "Three", "Two", "Three"], ["a", "b", "c", "d"]) == [2, 2, 3, 2]
    assert partner_indices(["x", "y", "z"], ["a", "a", "b"]) == [2, 2, 0]  # the same image: skipped
    same = ["Three"] * 12
    assert partner_indices(same, list("abcdefghijkl")) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0]
    assert partner_indices(["x"], ["a"]) == [None]


def test_a_partner_asked_the_same_question_comes_first():
    # "How many?" -> "Three." gets the "How many?" -> "Two." sample's image, not the colour question's
    # (whose image may show three shapes as well).
    targets, images = ["Three.", "Red.", "Two.", "Blue."], ["a", "b", "c", "d"]
    prompts = ["How many?", "Colour?", "How many?", "Colour?"]
    assert partner_indices(targets, images, prompts) == [2, 3, 0, 1]
    assert partner_indices(targets, images) == [1, 2, 3, 0]
    # Asked the same but answered the same: not a partner.
    assert partner_indices(["Three.", "Red.", "Three."], ["a", "b", "c"], ["q", "r", "q"]) == [1, 2, 1]
    view = stage_sample_view("<img>x/1.jpg</img>How many? Answer:", " Three.<|endoftext|>")
    other = stage_sample_view("<img>y/22.png</img>How many? Answer:", " Two.<|endoftext|>")
    assert prompt_ids(view.input_ids, view.labels) == prompt_ids(other.input_ids, other.labels)
    assert get_tokenizer().decode(list(prompt_ids(view.input_ids, view.labels))) == "How many? Answer:"


def test_a_lone_sample_and_text_only_samples_get_no_partner():
    (batch,) = loss_batches([_record(1)], "data", 16384)
    assert batch.items[0].partner_images == ()
    text = [_record(i, image=False) for i in range(3)]
    assert all(item.partner_images == () for b in loss_batches(text, "data", 16384) for item in b.items)
    assert partner_images(("a", "b", "c"), ("x", "y")) == ("x", "y", "x")
    assert partner_images(("a",), ()) == ()


class FakeModel(torch.nn.Module):
    """Its vision tower gives an image's mean pixel in every slot; the loss is the mean of the row's first
    image's features (or the row's length without images). It records every call."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(vision=SimpleNamespace(image_size=448))
        self.calls, self.encoded = [], []

    def visual(self, pixels):
        self.encoded.append(pixels.clone())
        return pixels.mean(dim=(1, 2, 3))[:, None, None].expand(-1, 256, 2)  # [n, slots, hidden]

    def token_losses(self, ids, labels, pixels=None, features=None):
        """Every supervised token of a row has the row's value, so any mean over them is that value."""
        self.calls.append((ids.clone(), labels.clone(), None if features is None else features.clone()))
        out, k = [], 0
        for row in range(ids.shape[0]):
            n_images = int((ids[row] == 151857).sum())
            out.append(float(features[k].mean()) if n_images else float((labels[row] != -100).sum()))
            k += n_images
        rows, cols = torch.nonzero(labels[:, 1:] != -100, as_tuple=True)
        return rows, cols, torch.tensor(out)[rows]


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (value, value, value)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _empty_cache():
    qwenvl_losses.clear_feature_cache()
    yield
    qwenvl_losses.clear_feature_cache()


def test_one_pass_own_images_then_partner_images_rows_padded_with_endoftext():
    images = {"/a.png": _jpeg(0), "/b.png": _jpeg(255)}
    short, long = _record(1, words=1), _record(2, words=5)
    batch = LossBatch(
        (
            LossItem(
                "s1", "t", tuple(short.view.input_ids), tuple(short.view.labels), ("/a.png",), ("/b.png",)
            ),
            LossItem(
                "s2", "t", tuple(long.view.input_ids), tuple(long.view.labels), ("/b.png",), ("/a.png",)
            ),
        )
    )
    model = FakeModel()
    results = sample_losses(model, batch, images.__getitem__)
    ((ids, labels, features),) = model.calls  # both passes in one call: rows 2 and 3 repeat rows 0 and 1
    # The padded length rounds up to a multiple of 64 (280 -> 320) so that batch shapes repeat.
    assert ids.shape == (4, 320) and len(long.view.input_ids) == 280 and torch.equal(ids[:2], ids[2:])
    pad = 320 - len(short.view.input_ids)
    assert (
        ids[0, -pad:].tolist() == [ENDOFTEXT_ID] * pad and labels[0, -pad:].tolist() == [IGNORE_INDEX] * pad
    )
    (pixels,) = model.encoded  # each distinct image decoded and encoded once, for both passes ...
    assert pixels.shape == (8, 3, 448, 448) and pixels.dtype == torch.float32  # ... padded to 8 images
    assert torch.equal(pixels[2:], pixels[2:3].expand(6, -1, -1, -1))  # blanks (all one normalized black)
    assert features.shape == (4, 256, 2)
    assert torch.equal(features[0], features[3]) and torch.equal(features[1], features[2])  # a, b, then b, a
    assert not torch.equal(features[0], features[1])
    assert [r.id for r in results] == ["s1", "s2"]
    assert results[0].loss < results[0].swap_loss and results[1].loss > results[1].swap_loss
    again = sample_losses(model, batch, images.__getitem__)
    assert again == results and len(model.encoded) == 1  # seen images come from the cache
    assert sample_losses(FakeModel(), batch, images.__getitem__) == results  # another model: encoded anew


def _half_white(mirrored: bool = False) -> bytes:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (20, 0, 40, 20) if not mirrored else (0, 0, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class LeftColumnModel(FakeModel):
    """Its features are the mean of the image's left-most pixel column: mirroring changes them."""

    def visual(self, pixels):
        self.encoded.append(pixels.clone())
        return pixels[:, :, :, 0].mean(dim=(1, 2))[:, None, None].expand(-1, 256, 2)


def test_a_sample_with_boxes_is_also_scored_with_its_images_mirrored():
    images = {"r/a.png": _half_white(), "r/b.png": _jpeg(128), "r/m.png": _half_white(mirrored=True)}
    boxed = stage_sample_view(
        "<img>a.png</img><ref>the square</ref>", "<box>(500,0),(999,999)</box><|endoftext|>"
    )
    plain = _record(2).view
    prompt_box = stage_sample_view(
        "<img>a.png</img><ref>This</ref><box>(0,0),(499,999)</box> is", " a square<|endoftext|>"
    )
    records = [
        SimpleNamespace(id="s1", task="t", view=boxed, images=("a.png",)),
        SimpleNamespace(id="s2", task="t", view=plain, images=("b.png",)),
        SimpleNamespace(id="s3", task="t", view=prompt_box, images=("a.png",)),
    ]
    items = {i.id: i for b in loss_batches(records, "r", 16384) for i in b.items}
    assert items["s1"].mirror and not items["s2"].mirror  # only answers with boxes ...
    assert not items["s3"].mirror  # ... not a box in the prompt (grounded captioning)
    batch = LossBatch((items["s1"], items["s2"]))
    model = LeftColumnModel()
    results = sample_losses(model, batch, images.__getitem__)
    ((ids, _, _),) = model.calls
    assert ids.shape[0] == 5 and torch.equal(ids[4], ids[0])  # own x2, partners x2, then s1 mirrored
    mirrored_file = LossItem("s1", "t", items["s1"].input_ids, items["s1"].labels, ("r/m.png",), ())
    (expected,) = sample_losses(LeftColumnModel(), LossBatch((mirrored_file,)), images.__getitem__)
    assert results[0].flip_loss == pytest.approx(expected.loss, abs=1e-6)  # as if the file were mirrored
    assert results[0].box_loss == results[0].loss != results[0].flip_loss
    assert results[1].flip_loss is None and results[1].box_loss is None


def test_only_the_coordinates_of_boxes_that_a_mirror_moves_are_compared():
    tok = get_tokenizer()
    view = stage_sample_view("<img>a.png</img><ref>it</ref>", "<box>(10,0),(300,999)</box> ok<|endoftext|>")
    positions = list(box_coordinate_positions(view.labels))
    assert tok.decode([view.labels[p] for p in positions]) == "(10,0),(300,999)"
    supervised = supervised_ids(view.labels)
    assert mirror_moves_boxes(supervised)  # mirrored: (700,0),(990,999), no overlap
    centred = stage_sample_view("<img>a.png</img><ref>it</ref>", "<box>(300,0),(700,999)</box><|endoftext|>")
    assert not mirror_moves_boxes(supervised_ids(centred.labels))  # its mirror is itself
    assert not mirror_moves_boxes(supervised_ids(_record(1).view.labels))  # no box at all
    # Both boxes must move: the second one's mirror is the first one.
    pair = stage_sample_view(
        "<img>a.png</img><ref>two</ref>", "<box>(0,0),(200,200)</box><box>(800,0),(999,200)</box>"
    )
    assert not mirror_moves_boxes(supervised_ids(pair.labels))
    assert (
        mirror_boxes([[0, 0, 40, 20]], 100) == [[60, 0, 100, 20]]
        and box_iou([0, 0, 2, 2], [1, 0, 3, 2]) == 1 / 3
    )


def test_a_batch_with_more_images_than_the_cache_holds(monkeypatch):
    monkeypatch.setattr(qwenvl_losses, "_features", qwenvl_losses._FeatureCache(budget=1))  # keeps none
    images = {f"/{i}.png": _jpeg(i * 40) for i in range(3)}
    record = _record(1)
    items = tuple(
        LossItem(f"s{i}", "t", tuple(record.view.input_ids), tuple(record.view.labels), (f"/{i}.png",), ())
        for i in range(3)
    )
    losses = [r.loss for r in sample_losses(FakeModel(), LossBatch(items), images.__getitem__)]
    assert losses == sorted(losses) and len(set(losses)) == 3  # each row its own image (darkest first)


def test_an_image_that_fails_to_load_gives_nan_not_an_exception():
    record = _record(1)
    item = LossItem("s1", "t", tuple(record.view.input_ids), tuple(record.view.labels), ("/gone.png",), ())
    (result,) = sample_losses(FakeModel(), LossBatch((item,)), {}.__getitem__)
    assert math.isnan(result.loss) and result.swap_loss is None and "/gone.png" in result.detail
