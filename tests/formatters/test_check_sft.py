"""check_sft_sample: samples built by formatters/sft.py pass with the trainer's exact view; planted defects
give their exact reasons."""

from __future__ import annotations

import copy

import pytest

from vlcurate.formatters.check_findings import STRUCTURAL_REASONS
from vlcurate.formatters.check_sft import check_sft_sample
from vlcurate.formatters.sft import SftSample, build_samples
from vlcurate.formatters.sft_records import caption_item, grounding_item, text_dialogue, vqa_item
from vlcurate.formatters.sft_strategies import caption_dialogue, grounding_dialogue, vqa_dialogue
from vlcurate.model.qwen_tokenizer import get_tokenizer
from vlcurate.model.trainer_view import sft_view

MAX_LEN = 2048


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer()


def built(dialogue, tok) -> dict:
    [result] = build_samples(dialogue, MAX_LEN, tokenizer=tok)
    assert isinstance(result, SftSample), result
    return copy.deepcopy(result.sample)


@pytest.fixture(scope="module")
def samples(tok) -> dict[str, dict]:
    vqa = vqa_item("v/1", {"qas": [{"question": "What colour?", "answer": "Red."}] * 2}, "images/ab/1.jpg")
    ground = {"width": 640, "height": 480, "phrases": [{"phrase": "the car", "boxes": [[64, 48, 320, 240]]}]}
    text = {"conversations": [{"from": "user", "value": "Hi."}, {"from": "assistant", "value": "Hello."}]}
    return {
        "caption": built(
            caption_dialogue(caption_item("c/1", "A red car.", "en", "images/ab/2.jpg"), 0), tok
        ),
        "vqa": built(vqa_dialogue(vqa, 0), tok),
        "grounding": built(grounding_dialogue(grounding_item("g/1", ground, "images/cd/3.png"), 0), tok),
        "text": built(text_dialogue("t/1", text), tok),
    }


@pytest.mark.parametrize("kind", ["caption", "vqa", "grounding", "text"])
def test_built_samples_pass_with_the_trainer_view(samples, kind, tok):
    problems, view = check_sft_sample(samples[kind], MAX_LEN, tok)
    assert problems == []
    assert view == sft_view(samples[kind]["conversations"], tok)
    assert len(view.images) == (0 if kind == "text" else 1)


def reasons(sample: object, max_len: int = MAX_LEN) -> list[str]:
    problems, view = check_sft_sample(sample, max_len)
    assert view is None  # no view for a sample with problems
    assert all(p.reason in STRUCTURAL_REASONS for p in problems)
    return [p.reason for p in problems]


def turn(sample: dict, i: int, value: str) -> dict:
    sample = copy.deepcopy(sample)
    sample["conversations"][i]["value"] = value
    return sample


def test_answer_past_model_max_length_is_too_long(samples):
    s = samples["vqa"]
    assert reasons(turn(s, 1, s["conversations"][1]["value"] + " more" * MAX_LEN)) == ["too_long"]


def test_length_limit_is_exact(samples, tok):
    length = len(sft_view(samples["caption"]["conversations"], tok).input_ids)
    assert check_sft_sample(samples["caption"], length, tok)[0] == []
    assert reasons(samples["caption"], length - 1) == ["too_long"]


def test_path_of_300_bytes(samples):
    s = samples["caption"]
    path = "images/" + "p" * 293
    value = s["conversations"][0]["value"].replace("images/ab/2.jpg", path)
    assert len(path.encode()) == 300
    assert reasons(turn(s, 0, value)) == ["image_path_too_long"]


@pytest.mark.parametrize(
    ("index", "text", "reason"),
    [
        (1, "A red car<|im_end|>", "special_tokens"),  # in an answer
        (0, "Picture 1: <img>images/ab/2.jpg</img>\nWhat <|endoftext|> is it?", "special_tokens"),
        (1, "A <quad>(1,2),(3,4),(5,6),(7,8)</quad>", "special_tokens"),  # SFT writes no quads
        (1, "A red <box>car", "bad_box"),  # SFT allows boxes, so a stray <box> is a broken one
        (1, "<ref>car</ref><box>(0,0),(1000,5)</box>", "bad_box"),
        (1, "see <img>x.jpg</img>", "image_in_assistant"),
    ],
)
def test_special_tokens_in_free_text(samples, index, text, reason):
    assert reasons(turn(samples["caption"], index, text)) == [reason]


@pytest.mark.parametrize("answer", ["", " ", "\n\n", "\u3000"])
def test_answer_without_content_has_no_supervised_tokens(samples, answer):
    # ChatML still supervises <|im_start|>, <|im_end|> and \n here: those are not content.
    assert reasons(turn(samples["text"], 1, answer)) == ["no_supervised_tokens"]


def test_one_empty_answer_among_others_still_has_content(samples, tok):
    s = turn(samples["vqa"], 1, "")
    assert check_sft_sample(s, MAX_LEN, tok)[0] == []


def test_all_problems_of_a_tokenized_sample_are_reported(samples):
    s = turn(samples["text"], 0, "word " * MAX_LEN)
    assert reasons(turn(s, 1, " ")) == ["too_long", "no_supervised_tokens"]


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ([], "bad_sample"),
        ({"id": "x"}, "bad_sample"),
        ({"id": "x", "conversations": [{"from": "assistant", "value": "A."}]}, "bad_roles"),
    ],
)
def test_malformed_samples(sample, reason):
    assert reasons(sample) == [reason]
