"""check_stage_sample and check_pack: rows built by the stage-1/2 formatters and the packer pass; planted
defects give their exact reasons."""

from __future__ import annotations

import copy
import pathlib
import re

import pytest

from vlcurate.formatters import check_samples
from vlcurate.formatters.check_findings import STRUCTURAL_REASONS
from vlcurate.formatters.check_samples import check_pack, check_stage_sample
from vlcurate.formatters.packing import pack_samples
from vlcurate.formatters.stage1 import format_caption, make_sample
from vlcurate.formatters.stage2 import format_stage2
from vlcurate.model.qwen_tokenizer import ENDOFTEXT, IMG_END_ID, get_tokenizer
from vlcurate.model.trainer_view import stage_sample_view

MAX = 2048
IMG = "images/ab/ab12.jpg"
RECORDS = [
    {"task": "captioning", "image": IMG, "caption": "A dog."},
    {"task": "captioning", "image": IMG, "caption": "一只狗。", "lang": "zh"},
    {"task": "vqa", "image": IMG, "question": "How many dogs?", "answers": [{"answer": "2"}]},
    {
        "task": "caption_with_grounding",
        "image": IMG,
        "width": 640,
        "height": 480,
        "caption": "Two bees on a flower",
        "refs": [{"span": [4, 8], "boxes": [[64, 48, 320, 240], [0, 0, 10, 10]]}],
    },
    {
        "task": "referring_grounding",
        "image": IMG,
        "width": 640,
        "height": 480,
        "phrase": "the car",
        "boxes": [[64, 48, 320, 240]],
    },
    {
        "task": "grounded_captioning",
        "image": IMG,
        "width": 640,
        "height": 480,
        "box": [64, 48, 320, 240],
        "caption": "a car",
    },
    {
        "task": "ocr",
        "image": IMG,
        "width": 200,
        "height": 100,
        "lines": [
            {"text": "STOP", "quad": [[10, 10], [90, 10], [90, 40], [10, 40]]},
            {"text": "GO", "quad": [[1, 1], [9, 1], [9, 9], [1, 9]]},
        ],
    },
    {"task": "pure_text", "text": "Hello world."},
]


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer()


@pytest.fixture(scope="module")
def rows(tok) -> dict[str, dict]:
    out = {"stage1": format_caption("A brown dog on grass.", "en", "images/cd/cd34.jpg", "s1/1", tok).sample}
    for i, record in enumerate(RECORDS):
        formatted = format_stage2({**record, "id": f"s2/{i}"}, tok)
        assert formatted.ok, formatted
        out[f"{record['task']}/{i}"] = formatted.sample
    return out


def row_of(rows: dict, name: str) -> dict:
    return copy.deepcopy(next(row for key, row in rows.items() if key.startswith(name)))


def reasons(row: object, max_tokens: int = MAX) -> list[str]:
    problems, view = check_stage_sample(row, max_tokens)
    assert view is None
    assert all(p.reason in STRUCTURAL_REASONS for p in problems)
    return [p.reason for p in problems]


def remeasured(row: dict, prefix: str | None = None, target: str | None = None, images=None) -> dict:
    """The row with new text, its counts measured again, so only the planted defect shows."""
    target = row["target"] if target is None else target
    return make_sample(
        row["task"],
        row["images"] if images is None else images,
        row["prefix"] if prefix is None else prefix,
        target.removesuffix(ENDOFTEXT),
        row["id"],
    )


def test_formatted_rows_pass_with_the_trainer_view(rows, tok):
    for row in rows.values():
        problems, view = check_stage_sample(row, MAX, tok)
        assert problems == [], (row, problems)
        assert view == stage_sample_view(row["prefix"], row["target"], tok)
        assert view.images == row["images"]


@pytest.mark.parametrize("field", ["prefix_tokens", "target_tokens", "num_tokens"])
def test_stored_token_count_that_disagrees(rows, field):
    row = row_of(rows, "vqa")
    row[field] += 1
    assert reasons(row) == ["token_count_mismatch"]


@pytest.mark.parametrize(
    ("name", "where", "old", "new", "reason"),
    [
        ("stage1", "target", "dog", "dog<|im_end|>", "special_tokens"),
        ("captioning", "target", "dog", "<box>(1,2),(3,4)</box>dog", "special_tokens"),  # no boxes here
        ("vqa", "prefix", "How many", "How <|extra_3|> many", "special_tokens"),
        ("pure_text", "target", "world", "world<|endoftext|>", "special_tokens"),
        ("ocr", "target", "STOP", "STOP<box>", "special_tokens"),  # OCR writes quads, not boxes
        ("referring", "target", "(100,100)", "(1000,100)", "bad_box"),
        ("referring", "target", "(100,100),(500,500)", "(500,500),(100,100)", "bad_box"),
        ("caption_with_grounding", "target", "(0,0)", "(0,0.5)", "bad_box"),
        ("ocr", "target", ",(50,400)</quad>", "</quad>", "bad_quad"),  # 3 points
        ("ocr", "target", "(450,100)", "(450,1000)", "bad_quad"),
    ],
)
def test_planted_markup_defects(rows, name, where, old, new, reason):
    row = row_of(rows, name)
    assert old in row[where]
    assert reasons(remeasured(row, **{where: row[where].replace(old, new, 1)})) == [reason]


def test_image_markup_in_the_target(rows):
    row = row_of(rows, "vqa")
    row = remeasured(row, target=row["target"].replace(" 2", " 2 <img>x.jpg</img>"))
    # The trainer would load a second image the images field does not name.
    assert reasons(row) == ["bad_image_markup", "images_field_mismatch"]


def test_path_of_300_bytes(rows):
    row = row_of(rows, "stage1")
    path = "images/" + "p" * 293
    assert len(path.encode()) == 300
    row["prefix"] = row["prefix"].replace(row["images"][0], path)
    row["images"] = [path]
    assert reasons(row) == ["image_path_too_long"]


@pytest.mark.parametrize("path", ["/abs/a.jpg", "images/../../a.jpg", "images/e\u0301.jpg"])
def test_invalid_paths(rows, path):
    row = row_of(rows, "vqa")
    prefix = row["prefix"].replace(IMG, path)
    assert "image_path_invalid" in reasons(remeasured(row, prefix=prefix, images=[path]))


def test_images_field_that_differs_from_the_spans(rows):
    row = row_of(rows, "vqa")
    row["images"] = ["images/other.jpg"]
    assert reasons(row) == ["images_field_mismatch"]
    row["images"] = []
    assert reasons(row) == ["images_field_mismatch"]


@pytest.mark.parametrize("target", [ENDOFTEXT, " " + ENDOFTEXT])
def test_target_without_content(rows, target):
    assert reasons(remeasured(row_of(rows, "captioning"), target=target)) == ["no_supervised_tokens"]


def test_target_without_endoftext(rows, tok):
    row = row_of(rows, "captioning")
    row["target"] = row["target"].removesuffix(ENDOFTEXT)
    row["target_tokens"] = tok.count(row["target"])
    row["num_tokens"] = row["prefix_tokens"] + row["target_tokens"]
    assert reasons(row) == ["no_supervised_tokens"]


def test_too_long_is_exact(rows):
    row = row_of(rows, "ocr")
    assert check_stage_sample(row, row["num_tokens"])[0] == []
    assert reasons(row, row["num_tokens"] - 1) == ["too_long"]


def test_unknown_task_and_malformed_rows(rows):
    row = row_of(rows, "vqa")
    assert reasons({**row, "task": "dreaming"}) == ["unknown_task"]
    assert reasons({**row, "num_tokens": "281"}) == ["bad_sample"]
    assert reasons({k: v for k, v in row.items() if k != "target"}) == ["bad_sample"]
    assert reasons([row]) == ["bad_sample"]
    assert reasons({**row, "id": None}) == ["bad_sample"]


def test_several_problems_are_all_reported(rows):
    row = row_of(rows, "vqa")
    row["target"] = row["target"].replace(" 2", " 2<|im_end|>")
    row["images"] = []
    assert reasons(row, 10) == ["special_tokens", "images_field_mismatch", "token_count_mismatch", "too_long"]


# --- packs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed(tok):
    samples = [
        format_caption(f"Dog number {i} runs.", "en", f"images/{i:02d}/{i}.jpg", f"c/{i:02d}", tok).sample
        for i in range(20)
    ]
    packs, rejects, _ = pack_samples(samples, max_tokens=MAX, tokenizer=tok)
    assert not rejects and len(packs) >= 2
    return [pack.to_row() for pack in packs], {s["id"]: s for s in samples}


def pack_reasons(pack: dict, samples: dict, max_tokens: int = MAX) -> list[str]:
    problems = check_pack(pack, samples, max_tokens)
    assert all(p.reason in STRUCTURAL_REASONS for p in problems)
    return [p.reason for p in problems]


def test_packs_pass(packed):
    packs, samples = packed
    for pack in packs:
        assert check_pack(pack, samples, MAX) == []


def test_pack_input_id_changed(packed):
    packs, samples = packed
    pack = copy.deepcopy(packs[0])
    at = pack["boundaries"][1][2] - 3  # inside the second sample's caption
    pack["input_ids"][at] += 1
    [problem] = check_pack(pack, samples, MAX)
    assert problem.reason == "pack_mismatch"
    assert f"input_ids[{at}]" in problem.detail and repr(pack["ids"][1]) in problem.detail


def test_pack_refers_to_a_sample_that_does_not_exist(packed):
    packs, samples = packed
    pack = copy.deepcopy(packs[0])
    pack["ids"][0] = "c/nope"
    assert pack_reasons(pack, samples) == ["pack_sample_missing"]


def test_pack_with_a_span_broken_in_its_ids(packed):
    packs, samples = packed
    pack = copy.deepcopy(packs[0])
    end = pack["input_ids"].index(IMG_END_ID)
    pack["input_ids"][end] = 13  # the </img> of the first span becomes "."
    assert pack_reasons(pack, samples) == ["pack_mismatch", "image_span_invalid"]


@pytest.mark.parametrize(
    "plant",
    [
        lambda p: p["loss_mask"].__setitem__(0, 1),
        lambda p: p["boundaries"][1].__setitem__(1, p["boundaries"][1][1] + 1),
        lambda p: p.__setitem__("num_samples", p["num_samples"] + 1),
        lambda p: p.__setitem__("images", p["images"][::-1]),
        lambda p: p["ids"].reverse(),  # the same samples in another order
        lambda p: p.__setitem__("task", "vqa"),
    ],
)
def test_pack_fields_that_disagree(packed, plant):
    packs, samples = packed
    pack = copy.deepcopy(packs[0])
    plant(pack)
    assert pack_reasons(pack, samples) == ["pack_mismatch"]


def test_pack_too_long_and_malformed(packed):
    packs, samples = packed
    assert pack_reasons(packs[0], samples, packs[0]["num_tokens"] - 1) == ["too_long"]
    assert pack_reasons({**packs[0], "loss_mask": None}, samples) == ["bad_pack"]
    assert pack_reasons({**packs[0], "ids": [], "boundaries": [], "num_samples": 0}, samples) == ["bad_pack"]
    assert pack_reasons({**packs[0], "input_ids": None}, samples) == []  # packed without a tokenizer


def test_every_reason_the_checks_give_is_listed():
    folder = pathlib.Path(check_samples.__file__).parent
    names = [
        "check_images",
        "check_samples",
        "check_sft",
        "check_clean",
        "sft_validate",
        "../model/qwen_tokenizer",
    ]
    given = set()
    for name in names:
        text = (folder / f"{name}.py").read_text()
        given |= set(re.findall(r'Problem\(\s*"([a-z_]+)"', text))
        given |= {
            m for pair in re.findall(r'reason = "([a-z_]+)"|, "(bad_[a-z]+)"\)', text) for m in pair if m
        }
    assert given >= {
        "bad_image_markup",
        "bad_quad",
        "image_path_too_long",
        "image_truncated",
        "pack_mismatch",
    }
    assert given <= set(STRUCTURAL_REASONS), given - set(STRUCTURAL_REASONS)
