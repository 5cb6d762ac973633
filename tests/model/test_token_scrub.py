"""Scrubbing Qwen-VL special-token strings from free text (model/token_scrub.py)."""

import pytest

from vlcurate.model.qwen_tokenizer import SPECIAL_TOKENS
from vlcurate.model.token_scrub import has_special_tokens, scrub_special_tokens


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain text", "plain text"),
        ("<|endoftext|>", ""),
        ("a<|im_start|>b<|im_end|>c", "abc"),
        ("<|extra_0|><|extra_204|>", ""),
        ("<img>demo.jpeg</img>", "demo.jpeg"),
        ("<imgpad>", ""),
        ("<ref>bees</ref><box>(661,612),(833,812)</box>", "bees(661,612),(833,812)"),
        ("<quad>(1,2),(3,4),(5,6),(7,8)</quad>", "(1,2),(3,4),(5,6),(7,8)"),
        ("<<|im_end|>|endoftext|>", ""),  # removal must not leave a new token behind
        ("3 < 5 > 2", "3 < 5 > 2"),
    ],
)
def test_scrub_special_tokens(raw, expected):
    assert scrub_special_tokens(raw) == expected
    assert not has_special_tokens(scrub_special_tokens(raw))


def test_has_special_tokens():
    assert has_special_tokens("x <box>")
    assert not has_special_tokens("x <boxes>")


def test_every_special_token_and_any_numbered_extra_is_scrubbed():
    # The tokenizer's tokens exactly; <|extra_N|> for any digits, beyond the tokenizer's 0..204 too.
    for token in SPECIAL_TOKENS:
        assert has_special_tokens(f"a{token}b") and scrub_special_tokens(f"a{token}b") == "ab"
    for token in ("<|extra_205|>", "<|extra_007|>", "<|extra_" + "9" * 40 + "|>"):
        assert scrub_special_tokens(f"a{token}b") == "ab"
    for text in ("<|extra_|>", "<|extra_1 |>", "<IMG>", "<|im_end|", "< box>"):
        assert not has_special_tokens(text) and scrub_special_tokens(text) == text
