"""SFT input records -> checked, scrubbed items (formatters/sft.py documents the record schemas).

Caption, VQA and grounding records become `ImageItem`s for the strategies (formatters/sft_strategies.py);
a text record is a `Dialogue` as given. Bad data raises RejectSample with a reason, never anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from vlcurate.formatters.boxes import BoxError, boxes_text, check_size
from vlcurate.formatters.sft_dialogue import Dialogue, Exchange, ImageItem
from vlcurate.formatters.stage1 import RejectSample, check_utf8, checked_image_path, free_text

LANGS = ("en", "zh")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def record_id(record: Mapping[str, Any], fallback: str) -> str:
    value = record.get("id")
    if value is None or value == "":
        return fallback
    if isinstance(value, str):
        return check_utf8(value, "id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RejectSample("bad_field", "id must be a string or an integer")


def resolve_lang(lang: object, *texts: str) -> str:
    """The given language, or "zh" when the text holds Han characters, else "en"."""
    if lang is None:
        return "zh" if any(_HAN.search(t) for t in texts) else "en"
    if lang not in LANGS:
        raise RejectSample("unsupported_lang", f"lang {lang!r} (expected 'en' or 'zh')")
    return str(lang)


def _list(record: Mapping[str, Any], name: str) -> list:
    value = record.get(name)
    if value is None:
        raise RejectSample("missing_field", name)
    if not isinstance(value, list):
        raise RejectSample("bad_field", f"{name} must be a list")
    if not value:
        raise RejectSample("empty_field", name)
    return value


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RejectSample("bad_field", f"{where} must be an object")
    return value


def caption_item(item_id: str, caption: object, lang: object, image: str) -> ImageItem:
    text = free_text(caption, "caption")
    return ImageItem(item_id, "caption", resolve_lang(lang, text), checked_image_path(image), caption=text)


def vqa_item(item_id: str, record: Mapping[str, Any], image: str) -> ImageItem:
    qas = []
    for i, qa in enumerate(_list(record, "qas")):
        qa = _object(qa, f"qas[{i}]")
        qas.append(
            (
                free_text(qa.get("question"), f"qas[{i}].question"),
                free_text(qa.get("answer"), f"qas[{i}].answer"),
            )
        )
    lang = resolve_lang(record.get("lang"), *(q for q, _ in qas))
    return ImageItem(item_id, "vqa", lang, checked_image_path(image), qas=tuple(qas))


def grounding_item(
    item_id: str, record: Mapping[str, Any], image: str, file_size: tuple[int, int] | None = None
) -> ImageItem:
    """`file_size`: the image file's (width, height); boxes are only right relative to the real pixels."""
    width, height = check_size(record.get("width"), record.get("height"))
    if file_size is not None and (width, height) != tuple(file_size):
        raise RejectSample(
            "image_size_mismatch",
            f"record says {width:g}x{height:g}, the file is {file_size[0]}x{file_size[1]}",
        )
    grounds = []
    for i, entry in enumerate(_list(record, "phrases")):
        entry = _object(entry, f"phrases[{i}]")
        phrase = free_text(entry.get("phrase"), f"phrases[{i}].phrase")
        if entry.get("boxes") is None:
            raise RejectSample("missing_field", f"phrases[{i}].boxes")
        grounds.append((phrase, boxes_text(entry["boxes"], width, height)))
    lang = resolve_lang(record.get("lang"), *(p for p, _ in grounds))
    return ImageItem(item_id, "grounding", lang, checked_image_path(image), grounds=tuple(grounds))


def text_dialogue(item_id: str, record: Mapping[str, Any]) -> Dialogue:
    turns = _list(record, "conversations")
    values = []
    for i, turn in enumerate(turns):
        turn = _object(turn, f"conversations[{i}]")
        expected = "user" if i % 2 == 0 else "assistant"
        if turn.get("from") != expected:
            raise RejectSample(
                "bad_roles", f"conversations[{i}] must be from {expected} (first user, alternating)"
            )
        values.append(free_text(turn.get("value"), f"conversations[{i}].value"))
    if len(values) % 2:
        raise RejectSample("bad_roles", "the last turn must be from the assistant")
    exchanges = tuple(Exchange((q,), (a,)) for q, a in zip(values[0::2], values[1::2]))
    return Dialogue(item_id, "text", resolve_lang(record.get("lang"), *values), (), exchanges, (item_id,))


def parse_guard(build: Callable[[], Any]) -> Any:
    """Runs a parser; box errors become RejectSample too (callers catch only RejectSample)."""
    try:
        return build()
    except BoxError as exc:
        raise RejectSample(exc.reason, str(exc)) from None
