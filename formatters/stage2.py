"""Stage-2 multi-task samples (docs/qwenvl-format.md section 2) from one JSONL record per sample.

Input schemas. Every record is a JSON object with `task` and an optional `id` (string or integer).
`image` is the path as the trainer will see it (<= 254 UTF-8 bytes, NFC). `width`/`height` are the
ORIGINAL image size in pixels. Boxes are pixel corners `[x1, y1, x2, y2]`; quads are 4 pixel points
`[[x, y], [x, y], [x, y], [x, y]]` in reading order. Unknown keys are ignored.

- `captioning`: `image`, `caption`, `lang` (`"en"` or `"zh"`; default `"en"`)
- `vqa`: `image`, `question`, `answers`: `[{"answer": str, "confidence": c}, ...]`, where `c` is a
  number >= 0 or VQAv2's `"yes"`/`"maybe"`/`"no"` (optional, default 1)
- `caption_with_grounding`: `image`, `width`, `height`, `caption`,
  `refs`: `[{"span": [start, end], "boxes": [box, ...]}, ...]`
- `referring_grounding`: `image`, `width`, `height`, `phrase`, `boxes`: `[box, ...]`
- `grounded_captioning`: `image`, `width`, `height`, `box`, `caption`
- `ocr`: `image`, `width`, `height`, `lines`: `[{"text": str, "quad": quad}, ...]`
- `pure_text`: `text`

Examples (one JSONL line each) and the sample they give (prefix | target):
    {"task": "captioning", "image": "i/1.jpg", "caption": "A dog."}
        <img>i/1.jpg</img>Generate the caption in English: | " A dog.<|endoftext|>"
    {"task": "vqa", "image": "i/1.jpg", "question": "How many dogs?",
     "answers": [{"answer": "2", "confidence": "yes"}, {"answer": "3", "confidence": "maybe"}]}
        <img>i/1.jpg</img>How many dogs? Answer: | " 2<|endoftext|>"
    {"task": "caption_with_grounding", "image": "i/2.jpg", "width": 640, "height": 480,
     "caption": "Two bees on a flower", "refs": [{"span": [4, 8], "boxes": [[64, 48, 320, 240]]}]}
        <img>i/2.jpg</img>Generate the caption in English with grounding: |
        " Two <ref>bees</ref><box>(100,100),(500,500)</box> on a flower<|endoftext|>"
    {"task": "referring_grounding", "image": "i/2.jpg", "width": 640, "height": 480,
     "phrase": "the red car", "boxes": [[64, 48, 320, 240]]}
        <img>i/2.jpg</img><ref>the red car</ref> | "<box>(100,100),(500,500)</box><|endoftext|>"
    {"task": "grounded_captioning", "image": "i/2.jpg", "width": 640, "height": 480,
     "box": [64, 48, 320, 240], "caption": "a red car"}
        <img>i/2.jpg</img><ref>This</ref><box>(100,100),(500,500)</box> is | " a red car<|endoftext|>"
    {"task": "ocr", "image": "i/3.jpg", "width": 200, "height": 100,
     "lines": [{"text": "STOP", "quad": [[10, 10], [90, 10], [90, 40], [10, 40]]}]}
        <img>i/3.jpg</img>OCR with grounding: |
        "<ref>STOP</ref><quad>(50,100),(450,100),(450,400),(50,400)</quad><|endoftext|>"
    {"task": "pure_text", "text": "Hello world."}
        (empty) | "Hello world.<|endoftext|>"

Rules:
- VQA keeps one answer: confidences of identical answers are summed (VQAv2 has 10 annotators, so this is
  their consensus; "yes"/"maybe"/"no" count 1/0.5/0); ties go to the answer given more often, then to
  the lexicographically smallest, so the choice never depends on annotation order.
- `span` is [start, end) in Python string indices (code points) of the caption as given; spans must not
  overlap. Whitespace inside a span is moved outside its `<ref>`.
- Every free-text field (caption, question, answers, phrase, OCR text, text) is scrubbed of special-token
  strings before formatting; outer whitespace is stripped. Boxes and quads: see formatters/boxes.py.
- Bad input becomes a reject: `missing_field`, `bad_field`, `empty_field`, `bad_span`, `bad_box`,
  `degenerate_box`, `bad_image_size`, `image_path_too_long`, `image_path_invalid`, `unsupported_lang`,
  `bad_text` (lone surrogates), `special_tokens` (left after scrubbing), `unknown_task`, `bad_record`,
  `bad_json`. The detail names the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from vlcurate.formatters.boxes import BoxError, box_text, boxes_text, check_size, quad_text, ref_text
from vlcurate.formatters.stage1 import (
    Formatted,
    RejectSample,
    caption_parts,
    check_utf8,
    checked_image_path,
    free_text,
    image_tag,
    make_sample,
)
from vlcurate.model.qwen_tokenizer import QwenTokenizer

VQA_CONFIDENCE = {"yes": 1.0, "maybe": 0.5, "no": 0.0}


def _field(record: Mapping[str, Any], name: str, where: str = "") -> Any:
    value = record.get(name)
    if value is None:
        raise RejectSample("missing_field", where + name)
    return value


def _list(record: Mapping[str, Any], name: str) -> list:
    value = _field(record, name)
    if not isinstance(value, list):
        raise RejectSample("bad_field", f"{name} must be a list")
    if not value:
        raise RejectSample("empty_field", name)
    return value


def _size(record: Mapping[str, Any]) -> tuple[float, float]:
    return check_size(_field(record, "width"), _field(record, "height"))


def _sample_id(record: Mapping[str, Any]) -> str | None:
    value = record.get("id")
    if value is None:
        return None
    if isinstance(value, str):
        return check_utf8(value, "id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RejectSample("bad_field", "id must be a string or an integer")


# --- the seven tasks: record -> (task, images, prefix, target without <|endoftext|>) --------------


def captioning(record: Mapping[str, Any]) -> tuple[str, list[str], str, str]:
    return caption_parts(record.get("caption"), record.get("lang", "en"), record.get("image"))


def best_answer(answers: list) -> str:
    """The most confident answer (see the module docstring for the tie rules)."""
    scores: dict[str, list[float]] = {}
    for i, item in enumerate(answers):
        if not isinstance(item, Mapping):
            raise RejectSample("bad_field", f"answers[{i}] must be an object")
        text = free_text(item.get("answer"), f"answers[{i}].answer")
        confidence = item.get("confidence", 1.0)
        if isinstance(confidence, str) and confidence in VQA_CONFIDENCE:
            confidence = VQA_CONFIDENCE[confidence]
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, (int, float))
            or not math.isfinite(confidence)
            or confidence < 0
        ):
            raise RejectSample("bad_field", f"answers[{i}].confidence must be >= 0 or yes/maybe/no")
        scores.setdefault(text, []).append(float(confidence))
    # fsum is exact, so the total does not depend on the order the confidences come in.
    return min(scores, key=lambda a: (-math.fsum(scores[a]), -len(scores[a]), a))


def vqa(record: Mapping[str, Any]) -> tuple[str, list[str], str, str]:
    path = checked_image_path(record.get("image"))
    question = free_text(record.get("question"), "question")
    answer = best_answer(_list(record, "answers"))
    return "vqa", [path], f"{image_tag(path)}{question} Answer:", f" {answer}"


def _span(ref: object, i: int, length: int) -> tuple[int, int]:
    span = ref.get("span") if isinstance(ref, Mapping) else None
    if (
        not isinstance(span, list)
        or len(span) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)
        or not 0 <= span[0] < span[1] <= length
    ):
        raise RejectSample("bad_span", f"refs[{i}].span must be [start, end), 0 <= start < end <= {length}")
    return span[0], span[1]


def _outside(text: str) -> str:
    return free_text(text, "caption", strip=False, required=False)


def caption_with_grounding(record: Mapping[str, Any]) -> tuple[str, list[str], str, str]:
    path = checked_image_path(record.get("image"))
    width, height = _size(record)
    caption = _field(record, "caption")
    if not isinstance(caption, str):
        raise RejectSample("bad_field", "caption must be a string")
    refs = _list(record, "refs")
    spans = sorted((_span(ref, i, len(caption)), i) for i, ref in enumerate(refs))
    pieces, cursor = [], 0
    for (start, end), i in spans:
        if start < cursor:
            raise RejectSample("bad_span", f"refs[{i}].span overlaps another span")
        phrase = caption[start:end]
        inner = phrase.strip()
        lead = phrase[: len(phrase) - len(phrase.lstrip())]
        trail = phrase[len(phrase.rstrip()) :]
        # Outside text is scrubbed piece by piece so that the spans' offsets stay valid.
        pieces.append(_outside(caption[cursor:start] + lead))
        boxes = boxes_text(_field(refs[i], "boxes", f"refs[{i}]."), width, height)
        pieces.append(ref_text(free_text(inner, f"refs[{i}] phrase")) + boxes)
        pieces.append(_outside(trail))
        cursor = end
    pieces.append(_outside(caption[cursor:]))
    text = "".join(pieces).strip()
    prompt = "Generate the caption in English with grounding:"
    return "caption_with_grounding", [path], image_tag(path) + prompt, f" {text}"


def referring_grounding(record: Mapping[str, Any]) -> tuple[str, list[str], str, str]:
    path = checked_image_path(record.get("image"))
    width, height = _size(record)
    phrase = free_text(record.get("phrase"), "phrase")
    boxes = boxes_text(_field(record, "boxes"), width, height)
    return "referring_grounding", [path], image_tag(path) + ref_text(phrase), boxes


def grounded_captioning(record: Mapping[str, Any]) -> tuple[str, list[str], str, str]:
    path = checked_image_path(record.get("image"))
    width, height = _size(record)
    box = box_text(_field(record, "box"), width, height)
    caption = free_text(record.get("caption"), "caption")
    return "grounded_captioning", [path], f"{image_tag(path)}{ref_text('This')}{box} is", f" {caption}"


def ocr(record: Mapping[str, Any]) -> tuple[str, list[str], str, str]:
    path = checked_image_path(record.get("image"))
    width, height = _size(record)
    parts = []
    for i, line in enumerate(_list(record, "lines")):
        if not isinstance(line, Mapping):
            raise RejectSample("bad_field", f"lines[{i}] must be an object")
        text = free_text(line.get("text"), f"lines[{i}].text")
        parts.append(ref_text(text) + quad_text(_field(line, "quad", f"lines[{i}]."), width, height))
    return "ocr", [path], f"{image_tag(path)}OCR with grounding:", "".join(parts)


def pure_text(record: Mapping[str, Any]) -> tuple[str, list[str], str, str]:
    return "pure_text", [], "", free_text(record.get("text"), "text")


TASKS: dict[str, Callable[[Mapping[str, Any]], tuple[str, list[str], str, str]]] = {
    "captioning": captioning,
    "vqa": vqa,
    "caption_with_grounding": caption_with_grounding,
    "referring_grounding": referring_grounding,
    "grounded_captioning": grounded_captioning,
    "ocr": ocr,
    "pure_text": pure_text,
}


def format_stage2(record: object, tokenizer: QwenTokenizer | None = None) -> Formatted:
    """One stage-2 sample from one input record; bad data gives a reject, never an exception."""
    try:
        if not isinstance(record, Mapping):
            raise RejectSample("bad_record", "a record must be a JSON object")
        task = _field(record, "task")
        sample_id = _sample_id(record)
        if not isinstance(task, str) or task not in TASKS:
            raise RejectSample("unknown_task", f"{task!r}; valid: {', '.join(TASKS)}")
        name, images, prefix, target = TASKS[task](record)
        return Formatted(make_sample(name, images, prefix, target, sample_id, tokenizer))
    except RejectSample as exc:
        return Formatted(reason=exc.reason, detail=exc.detail)
    except BoxError as exc:
        return Formatted(reason=exc.reason, detail=str(exc))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        # Safety net for shapes the checks above missed: still a reject, named for the audit.
        return Formatted(reason="bad_record", detail=f"{type(exc).__name__}: {exc}")


def format_stage2_line(line: str | bytes, tokenizer: QwenTokenizer | None = None) -> Formatted:
    """One JSONL line (str or UTF-8 bytes) to a sample or a reject."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Formatted(reason="bad_json", detail=str(exc))
    return format_stage2(record, tokenizer)
