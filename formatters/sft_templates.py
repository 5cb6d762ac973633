"""The SFT prompt and answer templates (formatters/sft.py), per dialogue language, and how one is filled.

Written for vlcurate. In a template `{n}` names a picture, `{q}` is a question, `{p}` a phrase and `{k}` a
count.
"""

from __future__ import annotations

import re

from vlcurate.formatters.sft_dialogue import Ref, Text

CAPTION_PROMPTS = {
    "en": (
        "Describe this image briefly.",
        "What is shown in this picture?",
        "Write a short caption for this image.",
        "What can you see in this image?",
        "Give a one-sentence description of the picture.",
        "Summarize the image in one sentence.",
    ),
    "zh": (
        "简要描述这张图片。",
        "这张图片里有什么？",
        "为这张图片写一句简短的说明。",
        "你在图中看到了什么？",
        "用一句话描述这张图。",
        "请概括一下图片的内容。",
    ),
}
MULTI_CAPTION_PROMPTS = {
    "en": (
        "Describe {n}.",
        "What does {n} show?",
        "Write a short caption for {n}.",
        "What can you see in {n}?",
    ),
    "zh": ("描述一下{n}。", "{n}里有什么？", "为{n}写一句简短的说明。", "{n}中能看到什么？"),
}
MULTI_QUESTION_PROMPTS = {
    "en": ("About {n}: {q}", "Look at {n}. {q}", "Regarding {n}: {q}"),
    "zh": ("关于{n}：{q}", "看{n}，{q}", "请看{n}。{q}"),
}
COUNT_PROMPTS = {
    "en": (
        ("How many pictures have I shared?", "{k} pictures."),
        ("How many images are there?", "There are {k}."),
    ),
    "zh": (("我一共发了几张图片？", "一共{k}张。"), ("这里有几张图？", "{k}张。")),
}
GROUNDING_PROMPTS = {
    "en": (
        "Where is {p}? Give its bounding box.",
        "Find {p} in the image.",
        "Locate {p} and output its bounding box.",
        "Detect {p}.",
    ),
    "zh": ("{p}在哪里？请给出它的检测框。", "找出图中的{p}。", "框出{p}。", "输出{p}的检测框。"),
}
PICTURE_NAME = {"en": "Picture {}", "zh": "图{}"}  # how text names a picture, by dialogue language

_FIELD = re.compile(r"(\{[a-z]\})")


def fill(template: str, ref: int | None = None, **texts: str) -> Text:
    """Template -> text parts, `{n}` becoming a Ref to picture `ref`. The template is split before the texts
    go in, so braces in input text stay literal; adjacent strings are merged."""
    parts: list[str | Ref] = []
    for piece in _FIELD.split(template):
        if piece == "{n}":
            if ref is None:  # a template/caller mismatch in this package, never bad data
                raise ValueError(f"template {template!r} names a picture but no picture was given")
            parts.append(Ref(ref))
            continue
        value = texts[piece[1:-1]] if _FIELD.fullmatch(piece) else piece
        if value:
            if parts and isinstance(parts[-1], str):
                parts[-1] += value
            else:
                parts.append(value)
    return tuple(parts)
