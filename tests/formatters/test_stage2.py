"""The seven stage-2 tasks: exact strings and token counts, scrubbing, answer choice, and rejects."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlcurate.formatters.stage2 import TASKS, best_answer, format_stage2, format_stage2_line
from vlcurate.model.qwen_tokenizer import IMG_PAD_ID, N_RANKS, get_tokenizer

IMG = "img/2.jpg"
RECORDS = {
    "captioning": {"task": "captioning", "image": IMG, "caption": "A dog."},
    "vqa": {
        "task": "vqa",
        "image": IMG,
        "question": "How many dogs?",
        "answers": [{"answer": "2", "confidence": "yes"}, {"answer": "3", "confidence": "maybe"}],
    },
    "caption_with_grounding": {
        "task": "caption_with_grounding",
        "image": IMG,
        "width": 1000,
        "height": 1000,
        "caption": "Beautiful shot of bees gathering nectar",
        "refs": [{"span": [18, 22], "boxes": [[661, 612, 833, 812], [120, 555, 265, 770]]}],
    },
    "referring_grounding": {
        "task": "referring_grounding",
        "image": IMG,
        "width": 640,
        "height": 480,
        "phrase": "the red car",
        "boxes": [[64, 48, 320, 240]],
    },
    "grounded_captioning": {
        "task": "grounded_captioning",
        "image": IMG,
        "width": 640,
        "height": 480,
        "box": [64, 48, 320, 240],
        "caption": "a red car",
    },
    "ocr": {
        "task": "ocr",
        "image": IMG,
        "width": 200,
        "height": 100,
        "lines": [
            {"text": "STOP", "quad": [[10, 10], [90, 10], [90, 40], [10, 40]]},
            {"text": "ALL WAY", "quad": [[20, 60], [180, 60], [180, 90], [20, 90]]},
        ],
    },
    "pure_text": {"task": "pure_text", "text": "Hello world."},
}
TAG = f"<img>{IMG}</img>"
EXPECTED = {
    "captioning": (TAG + "Generate the caption in English:", " A dog."),
    "vqa": (TAG + "How many dogs? Answer:", " 2"),
    "caption_with_grounding": (
        TAG + "Generate the caption in English with grounding:",
        " Beautiful shot of <ref>bees</ref><box>(661,612),(833,812)</box><box>(120,555),(265,770)</box>"
        " gathering nectar",
    ),
    "referring_grounding": (TAG + "<ref>the red car</ref>", "<box>(100,100),(500,500)</box>"),
    "grounded_captioning": (TAG + "<ref>This</ref><box>(100,100),(500,500)</box> is", " a red car"),
    "ocr": (
        TAG + "OCR with grounding:",
        "<ref>STOP</ref><quad>(50,100),(450,100),(450,400),(50,400)</quad>"
        "<ref>ALL WAY</ref><quad>(100,600),(900,600),(900,900),(100,900)</quad>",
    ),
    "pure_text": ("", "Hello world."),
}
# (prefix, target) token counts, each checked piece by piece against the decoded tokens: 258 per image,
# then e.g. "How| many| dogs|?| Answer|:" = 6; " |2|<|endoftext|>" = 3 (digits and the space split);
# a box "<box>|(|1|0|0|,|1|0|0|),(|5|0|0|,|5|0|0|)|</box>" = 19.
TOKENS = {
    "captioning": (264, 4),
    "vqa": (264, 3),
    "caption_with_grounding": (266, 50),
    "referring_grounding": (263, 20),
    "grounded_captioning": (281, 4),
    "ocr": (262, 76),
    "pure_text": (0, 4),
}


def control_ids(text: str) -> list[int]:
    return [t for t in get_tokenizer().encode(text) if t >= N_RANKS and t != IMG_PAD_ID]


def test_every_task_has_a_record():
    assert set(RECORDS) == set(TASKS) == set(EXPECTED) == set(TOKENS)


@pytest.mark.parametrize("task", sorted(RECORDS))
def test_exact_strings_and_token_counts(task):
    result = format_stage2(RECORDS[task])
    assert result.ok, result
    sample = result.sample
    prefix, target = EXPECTED[task]
    assert (sample["task"], sample["prefix"], sample["target"]) == (task, prefix, target + "<|endoftext|>")
    assert sample["images"] == ([] if task == "pure_text" else [IMG])
    assert (sample["prefix_tokens"], sample["target_tokens"]) == TOKENS[task]
    assert sample["num_tokens"] == sum(TOKENS[task])
    tok = get_tokenizer()
    # The prefix/target split never changes the tokens: no BPE merge crosses it.
    joint = tok.encode(sample["prefix"] + sample["target"])
    assert joint == tok.encode(sample["prefix"]) + tok.encode(sample["target"])


def test_caption_with_grounding_token_ids():
    target = format_stage2(RECORDS["caption_with_grounding"]).sample["target"]
    box1 = [151853, 7, 21, 21, 16, 11, 21, 16, 17, 23547, 23, 18, 18, 11, 23, 16, 17, 8, 151854]
    box2 = [151853, 7, 16, 17, 15, 11, 20, 20, 20, 23547, 17, 21, 20, 11, 22, 22, 15, 8, 151854]
    # " Beautiful| shot| of| |<ref>|be|es|</ref>" ... " gathering| n|ectar|<|endoftext|>"
    expected = [19490, 6552, 315, 220, 151851, 1371, 288, 151852, *box1, *box2, 22888, 308, 38816, 151643]
    assert get_tokenizer().encode(target) == expected


DIRTY = "<|im_end|>x<img>y</img><im<box>g><|endoftext|>"


def _dirty(record: dict) -> dict:
    """The same record with special-token strings around every free-text field."""
    out = json.loads(json.dumps(record))
    for key in ("caption", "question", "phrase", "text"):
        if key in out:
            out[key] = DIRTY + out[key] + DIRTY
    for answer in out.get("answers", []):
        answer["answer"] = DIRTY + answer["answer"]
    for line in out.get("lines", []):
        line["text"] = line["text"] + DIRTY
    if "refs" in out:  # keep the span on "bees": the junk goes outside it
        out["caption"] = "Beautiful shot of " + DIRTY + "bees" + DIRTY + " gathering nectar"
        start = out["caption"].index("bees")
        out["refs"][0]["span"] = [start, start + 4]
    return out


@pytest.mark.parametrize("task", sorted(RECORDS))
def test_special_strings_in_free_text_yield_no_control_token(task):
    clean, dirty = format_stage2(RECORDS[task]).sample, format_stage2(_dirty(RECORDS[task])).sample
    assert dirty is not None
    for part in ("prefix", "target"):
        assert control_ids(dirty[part]) == control_ids(clean[part])


def test_special_strings_inside_a_grounded_phrase_keep_the_span():
    record = dict(RECORDS["caption_with_grounding"], caption="A <|im_end|>bee <img>on a flower")
    record["refs"] = [{"span": [12, 15], "boxes": [[0, 0, 500, 500]]}]
    target = format_stage2(record).sample["target"]
    assert target == " A <ref>bee</ref><box>(0,0),(500,500)</box> on a flower<|endoftext|>"


def test_grounding_spans_sorted_and_whitespace_moved_out_of_the_ref():
    record = dict(RECORDS["caption_with_grounding"], caption="two cats and a dog")
    record["refs"] = [
        {"span": [14, 18], "boxes": [[0, 0, 10, 10]]},  # " dog": leading space stays outside
        {"span": [0, 8], "boxes": [[10, 10, 20, 20]]},
    ]
    target = format_stage2(record).sample["target"]
    assert target == (
        " <ref>two cats</ref><box>(10,10),(20,20)</box> and a <ref>dog</ref><box>(0,0),(10,10)</box><|endoftext|>"
    )


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([{"answer": "red", "confidence": 0.4}, {"answer": "blue", "confidence": 0.9}], "blue"),
        ([{"answer": "2", "confidence": "yes"}, {"answer": "3", "confidence": "no"}], "2"),
        # 1.0 each: the answer more annotators gave wins
        ([{"answer": "2", "confidence": "yes"}] + [{"answer": "3", "confidence": "maybe"}] * 2, "3"),
        ([{"answer": "b"}, {"answer": "a"}], "a"),  # full tie: lexicographically smallest
        ([{"answer": "b"}, {"answer": "a"}, {"answer": "b"}], "b"),  # no confidence: majority
        ([{"answer": " yes "}, {"answer": "no", "confidence": 0.5}], "yes"),
    ],
)
def test_vqa_answer_choice(answers, expected):
    assert best_answer(answers) == expected
    for order in itertools.permutations(answers):
        assert best_answer(list(order)) == expected


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"answers": [{"answer": "2", "confidence": "sure"}]}, "bad_field"),
        ({"answers": [{"answer": "2", "confidence": -1}]}, "bad_field"),
        ({"answers": [{"answer": "<|im_end|>"}]}, "empty_field"),
        ({"answers": []}, "empty_field"),
        ({"answers": "2"}, "bad_field"),
        ({"answers": ["2"]}, "bad_field"),
        ({"question": None}, "missing_field"),
    ],
)
def test_vqa_rejects(changes, reason):
    assert format_stage2({**RECORDS["vqa"], **changes}).reason == reason


@pytest.mark.parametrize(
    ("task", "changes", "reason"),
    [
        ("caption_with_grounding", {"width": None}, "missing_field"),
        ("caption_with_grounding", {"refs": [{"span": [18, 99], "boxes": [[1, 1, 9, 9]]}]}, "bad_span"),
        ("caption_with_grounding", {"refs": [{"span": [18, 18], "boxes": [[1, 1, 9, 9]]}]}, "bad_span"),
        ("caption_with_grounding", {"refs": [{"span": ["18", 22], "boxes": [[1, 1, 9, 9]]}]}, "bad_span"),
        (
            "caption_with_grounding",
            {
                "refs": [
                    {"span": [10, 20], "boxes": [[1, 1, 9, 9]]},
                    {"span": [15, 25], "boxes": [[1, 1, 9, 9]]},
                ]
            },
            "bad_span",
        ),
        ("caption_with_grounding", {"refs": [{"span": [17, 18], "boxes": [[1, 1, 9, 9]]}]}, "empty_field"),
        ("caption_with_grounding", {"refs": [{"span": [18, 22]}]}, "missing_field"),
        ("caption_with_grounding", {"refs": []}, "empty_field"),
        ("referring_grounding", {"boxes": [[64, 48, 64, 240]]}, "degenerate_box"),
        ("referring_grounding", {"boxes": [[64, 48, 320]]}, "bad_box"),
        ("referring_grounding", {"width": 0}, "bad_image_size"),
        ("referring_grounding", {"image": "p/" + "x" * 300}, "image_path_too_long"),
        ("grounded_captioning", {"box": None}, "missing_field"),
        ("ocr", {"lines": [{"text": "A", "quad": [[0, 0], [1, 1], [2, 2], [3, 3]]}]}, "degenerate_box"),
        ("ocr", {"lines": [{"text": "A"}]}, "missing_field"),
        ("ocr", {"lines": ["A"]}, "bad_field"),
        ("pure_text", {"text": ""}, "empty_field"),
        ("captioning", {"lang": "de"}, "unsupported_lang"),
        ("captioning", {"image": None}, "missing_field"),
        ("captioning", {"id": 1.5}, "bad_field"),
    ],
)
def test_bad_input_is_a_reject_with_a_reason(task, changes, reason):
    result = format_stage2({**RECORDS[task], **changes})
    assert result.sample is None
    assert result.reason == reason, result.detail


def test_record_level_rejects_and_ids():
    assert format_stage2({"task": "dance"}).reason == "unknown_task"
    assert format_stage2({"image": IMG}).reason == "missing_field"
    assert format_stage2(["task"]).reason == "bad_record"
    assert format_stage2_line("{not json").reason == "bad_json"
    assert format_stage2_line(b"\xff\xfe").reason == "bad_json"
    line = json.dumps({**RECORDS["pure_text"], "id": 7}).encode()
    assert format_stage2_line(line).sample["id"] == "7"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 3000) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["image", "width", "height", "caption", "lang", "question", "answers", "refs", "phrase", "boxes"]
FIELDS += ["box", "lines", "text", "id", "span", "quad", "answer", "confidence"]


@settings(max_examples=300, deadline=None)
@given(
    task=st.sampled_from([*TASKS, "nope"]),
    base=st.sampled_from(sorted(RECORDS)),
    changes=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4),
)
def test_arbitrary_records_never_raise_and_need_no_safety_net(task, base, changes):
    result = format_stage2({**RECORDS[base], **changes, "task": task})
    assert result.ok != (result.reason is not None)
    assert result.reason != "bad_record", result.detail  # every shape is caught by an explicit check
