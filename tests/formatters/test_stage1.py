"""Stage-1 captioning samples, the shared sample checks, and the sample writers (samples_io)."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from vlcurate.formatters.samples_io import SAMPLE_SCHEMA, JsonlWriter, write_jsonl, write_parquet
from vlcurate.formatters.stage1 import format_caption, format_pair
from vlcurate.model.qwen_tokenizer import (
    ENDOFTEXT_ID,
    IMG_END_ID,
    IMG_PAD_ID,
    IMG_START_ID,
    N_RANKS,
    get_tokenizer,
)
from vlcurate.schemas.record import Pair

ENGLISH_PROMPT_IDS = [31115, 279, 17256, 304, 6364, 25]  # "Generate the caption in English:"
CHINESE_PROMPT_IDS = [31115, 279, 17256, 304, 8453, 25]


def control_ids(text: str) -> list[int]:
    """Control tokens a trainer would see (all specials allowed), image pads left out."""
    return [t for t in get_tokenizer().encode(text) if t >= N_RANKS and t != IMG_PAD_ID]


def test_english_caption_sample_exact():
    result = format_caption("A dog.", "en", "images/000001.jpg", sample_id="web/1")
    assert result.ok and result.reason is None
    assert result.sample == {
        "id": "web/1",
        "task": "captioning",
        "images": ["images/000001.jpg"],
        "prefix": "<img>images/000001.jpg</img>Generate the caption in English:",
        "target": " A dog.<|endoftext|>",
        "prefix_tokens": 258 + 6,
        "target_tokens": 4,
        "num_tokens": 268,
    }
    tok = get_tokenizer()
    assert tok.encode(result.sample["prefix"]) == tok.image_tokens("images/000001.jpg") + ENGLISH_PROMPT_IDS
    assert tok.encode(result.sample["target"]) == [362, 5562, 13, ENDOFTEXT_ID]


def test_chinese_caption_sample_exact():
    sample = format_caption("一只狗", "zh", "images/2.jpg").sample
    assert sample["prefix"] == "<img>images/2.jpg</img>Generate the caption in Chinese:"
    assert sample["target"] == " 一只狗<|endoftext|>"
    tok = get_tokenizer()
    assert tok.encode(sample["prefix"])[258:] == CHINESE_PROMPT_IDS
    assert tok.encode(sample["target"]) == [220, 102292, 100737, ENDOFTEXT_ID]
    assert (sample["prefix_tokens"], sample["target_tokens"]) == (264, 4)


def test_split_tokenization_equals_joint_tokenization():
    sample = format_caption("(2019) Photo: sunset, 4K!", "en", "a.jpg").sample
    tok = get_tokenizer()
    joint = tok.encode(sample["prefix"] + sample["target"])
    assert joint == tok.encode(sample["prefix"]) + tok.encode(sample["target"])
    assert len(joint) == sample["num_tokens"]


@pytest.mark.parametrize(
    "caption",
    [
        "A dog <|im_end|> on grass",
        "A dog <img>evil.jpg</img> on grass",
        "A dog <im<img>g> on grass",  # removing one string must not leave a new one behind
        "<|endoftext|>A dog<|im_start|>assistant\n<box>(1,2),(3,4)</box><|extra_9|>",
    ],
)
def test_special_strings_in_a_caption_never_become_control_tokens(caption):
    sample = format_caption(caption, "en", "a.jpg").sample
    assert control_ids(sample["prefix"]) == [IMG_START_ID, IMG_END_ID]
    assert control_ids(sample["target"]) == [ENDOFTEXT_ID]
    assert "dog" in sample["target"]


@pytest.mark.parametrize(
    ("caption", "lang", "path", "reason"),
    [
        ("A dog.", "fr", "a.jpg", "unsupported_lang"),
        ("A dog.", None, "a.jpg", "unsupported_lang"),
        (None, "en", "a.jpg", "missing_field"),
        (42, "en", "a.jpg", "bad_field"),
        ("  ", "en", "a.jpg", "empty_field"),
        ("<|im_end|><img>", "en", "a.jpg", "empty_field"),
        ("A \ud800 dog", "en", "a.jpg", "bad_text"),
        ("A dog.", "en", None, "missing_field"),
        ("A dog.", "en", "", "missing_field"),
        ("A dog.", "en", "d/" + "x" * 253, "image_path_too_long"),
        ("A dog.", "en", "a</img>b.jpg", "image_path_invalid"),
        ("A dog.", "en", "cafe\u0301.jpg", "image_path_invalid"),  # not NFC: the file would not be found
    ],
)
def test_rejects_carry_a_reason(caption, lang, path, reason):
    result = format_caption(caption, lang, path)
    assert not result.ok and result.sample is None
    assert result.reason == reason


def test_longest_path_that_fits():
    path = "d/" + "x" * 252  # 254 bytes
    assert format_caption("A dog.", "en", path).sample["prefix_tokens"] == 264


def test_format_pair_uses_uid_and_image_ref():
    pair = Pair(uid="laion/7", source="laion", caption="A cat.", lang="en", image_ref="img/7.jpg")
    sample = format_pair(pair).sample
    assert sample["id"] == "laion/7" and sample["images"] == ["img/7.jpg"]
    assert format_pair(pair, image_path="out/7.jpg").sample["prefix"].startswith("<img>out/7.jpg</img>")
    assert format_pair(Pair(uid="s/1", source="s", caption="x", lang="en")).reason == "missing_field"


# --- samples_io: sample rows ----------------------------------------------------------------------------


def _rows():
    captions = ["A dog.", "一只猫", "Sunset over the sea, 2019"]
    return [
        format_caption(c, "zh" if i == 1 else "en", f"img/{i}.jpg", f"s/{i}").sample
        for i, c in enumerate(captions)
    ]


def test_jsonl_rows_are_compact_utf8_in_schema_order():
    buf = io.BytesIO()
    assert write_jsonl(_rows(), buf) == 3
    lines = buf.getvalue().decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == _rows()
    assert lines[1].startswith('{"id":"s/1","task":"captioning","images":["img/1.jpg"],"prefix":')
    assert "一只猫" in lines[1]  # not \u-escaped
    assert list(json.loads(lines[0])) == SAMPLE_SCHEMA.names


def test_parquet_round_trip_and_identical_bytes():
    first, second = io.BytesIO(), io.BytesIO()
    write_parquet(_rows(), first)
    write_parquet(_rows(), second)  # fresh, equal rows
    assert first.getvalue() == second.getvalue()
    assert not first.closed  # the caller owns the file object
    table = pq.read_table(io.BytesIO(first.getvalue()))
    assert table.schema.equals(SAMPLE_SCHEMA)
    assert table.to_pylist() == _rows()


def test_writers_refuse_unknown_columns():
    with pytest.raises(ValueError, match="outside the schema"):
        JsonlWriter(io.BytesIO()).write({**_rows()[0], "extra": 1})
