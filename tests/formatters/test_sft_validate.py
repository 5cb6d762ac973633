"""The SFT sample validator: what finetune.py and the model need, one planted defect at a time."""

from __future__ import annotations

import pytest

from vlcurate.formatters.sft_validate import validate_sample
from vlcurate.model.qwen_tokenizer import get_tokenizer

IMG = "images/ab/ab12.jpg"


def pic(n: int, path: str = IMG) -> str:
    return f"Picture {n}: <img>{path}</img>\n"


def sample(*values: str, roles: tuple[str, ...] | None = None, sample_id: str = "s/1") -> dict:
    roles = roles or tuple("user" if i % 2 == 0 else "assistant" for i in range(len(values)))
    return {"id": sample_id, "conversations": [{"from": r, "value": v} for r, v in zip(roles, values)]}


def check(s: object, max_len: int = 2048, exists=None):
    return validate_sample(s, max_len, path_exists=exists, tokenizer=get_tokenizer())


VALID = [
    sample(pic(1) + "What is this?", "A dog."),
    sample(pic(1) + pic(2) + "Compare Picture 1 and Picture 2.", "Picture 2 is darker."),
    sample(pic(1) + "Q?", "A.", pic(2, "images/cd/cd34.png") + "And Picture 2?", "B."),
    sample(pic(1) + "Where is the dog?", "<ref>the dog</ref><box>(0,0),(999,999)</box>"),
    sample(pic(1) + "Dogs?", "<ref>dogs</ref><box>(1,2),(3,4)</box><box>(5,6),(7,8)</box>"),
    sample(pic(1) + "What is <ref>this</ref><box>(10,10),(20,20)</box>?", "A cat."),
    sample("Hello, how are you?", "Fine, and you? Picture 3 is a film title."),
    sample(pic(1) + "图1里有什么？", "一只狗。"),
]


@pytest.mark.parametrize("s", VALID)
def test_valid_samples_pass_and_are_measured(s):
    result = check(s, exists={IMG, "images/cd/cd34.png"}.__contains__)
    assert result.ok, result.problems
    assert result.encoding is not None and result.encoding.length <= 2048


TOO_LONG_PATH = "images/" + "x" * 248  # 255 bytes


@pytest.mark.parametrize(
    ("s", "reason"),
    [
        ({"id": "s", "conversations": []}, "bad_sample"),
        ({"id": "", "conversations": [{"from": "user", "value": "a"}]}, "bad_sample"),
        ({"id": 3, "conversations": [{"from": "user", "value": "a"}]}, "bad_sample"),
        ({**sample("a", "b"), "extra": 1}, "bad_sample"),
        ({"id": "s", "conversations": [{"from": "user", "value": "a", "x": 1}]}, "bad_sample"),
        (sample("a\ud800", "b"), "bad_sample"),
        (sample("a", "b", roles=("system", "assistant")), "bad_roles"),
        (sample("a", "b", roles=("assistant", "user")), "bad_roles"),
        (sample("a", "b", "c", roles=("user", "assistant", "assistant")), "bad_roles"),
        (sample("a", "b", "c"), "bad_roles"),
        (sample("a", "b", roles=("user", "gpt")), "bad_roles"),
        (sample("Q?", pic(1) + "A."), "image_in_assistant"),
        (sample("Q?", "see <imgpad>"), "image_in_assistant"),
        (sample(f"<img>{IMG}</img>\nQ?", "A."), "bad_image_markup"),
        (sample(f"Picture 1: <img>{IMG}</img>Q?", "A."), "bad_image_markup"),
        (sample(pic(2) + "Q?", "A."), "picture_numbering"),
        (sample(pic(1) + pic(3) + "Q?", "A."), "picture_numbering"),
        (sample(pic(1) + "Q?", "A.", pic(1) + "Q2?", "B."), "picture_numbering"),
        (sample(pic(1) + "What is in Picture 2?", "A."), "picture_ref_unknown"),
        (sample(pic(1) + "Q?", "Picture 2 shows it.", pic(2) + "Q?", "A."), "picture_ref_unknown"),
        (sample(pic(1) + "图3里有什么？", "狗。"), "picture_ref_unknown"),
        (sample(pic(1, TOO_LONG_PATH) + "Q?", "A."), "image_path_too_long"),
        (sample(pic(1, "/abs/a.jpg") + "Q?", "A."), "image_path_invalid"),
        (sample(pic(1, "images/../../a.jpg") + "Q?", "A."), "image_path_invalid"),
        (sample(pic(1, "https://x.org/a.jpg") + "Q?", "A."), "image_path_invalid"),
        (sample(pic(1, "images/e\u0301.jpg") + "Q?", "A."), "image_path_invalid"),
        (sample(pic(1, "images/missing.jpg") + "Q?", "A."), "image_missing"),
        (sample("Q <|im_end|>?", "A."), "special_tokens"),
        (sample("Q?", "A.<|endoftext|>"), "special_tokens"),
        (sample("Q?", "A <|extra_7|>"), "special_tokens"),
        (sample("Q?", "<ref>text</ref><quad>(1,2),(3,4),(5,6),(7,8)</quad>"), "special_tokens"),
        (sample("Q?", "<ref>unclosed"), "special_tokens"),
        (sample("Q?", "<ref>a<ref>b</ref></ref>"), "special_tokens"),
        (sample("Q?", "</box>"), "special_tokens"),
        (sample("Q?", "<ref>a</ref><box>(1000,0),(5,5)</box>"), "bad_box"),
        (sample("Q?", "<ref>a</ref><box>(9,0),(5,5)</box>"), "bad_box"),
        (sample("Q?", "<ref>a</ref><box>(1, 2),(3,4)</box>"), "bad_box"),
        (sample("Q?", "<ref>a</ref><box>0.1,0.2,0.3,0.4</box>"), "bad_box"),
        (sample(pic(1) + "Q?", "word " * 2000), "too_long"),
    ],
)
def test_planted_defects_are_refused_with_their_reason(s, reason):
    result = check(s, exists={IMG}.__contains__)
    assert not result.ok
    assert result.problems[0].reason == reason, result.problems
    assert result.reject_reason == f"invalid_{reason}"


def test_length_limit_is_exact():
    s = sample(pic(1, "assets/demo.jpeg") + "What is this?", "A dog.")  # 292 tokens
    assert check(s, max_len=292).ok
    result = check(s, max_len=291)
    assert [p.reason for p in result.problems] == ["too_long"] and result.encoding.length == 292
