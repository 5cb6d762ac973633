"""Stage-1 captioning samples, and the sample core that the stage-2 formatters share.

A sample is a plain dict, one row of the samples file:
    {"id": str | None, "task": str, "images": [path, ...], "prefix": str, "target": str,
     "prefix_tokens": int, "target_tokens": int, "num_tokens": int}
PREFIX carries no loss, TARGET does and ends with `<|endoftext|>`. Token counts come from the exact Qwen-VL
tokenizer with every special token allowed (what a trainer does), prefix and target tokenized separately
(as finetune.py tokenizes each piece); an image costs 258 prefix tokens.

Stage-1 input: a cleaned pair, i.e. caption, lang ("en" or "zh") and the image path as the trainer will
see it (at most 254 UTF-8 bytes). Output, docs/qwenvl-format.md section 2:
    prefix `<img>{path}</img>Generate the caption in English:` (zh: `... in Chinese:`)
    target ` {caption}<|endoftext|>`

Formatting never raises on bad data: it returns `Formatted` holding either the sample or a reject reason
(a short fixed string for counters) with a free-text detail.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vlcurate.model.qwen_tokenizer import (
    ENDOFTEXT,
    IMG_END,
    IMG_START,
    SPECIAL_PATTERN,
    ImagePathError,
    QwenTokenizer,
    get_tokenizer,
    image_path_bytes,
    nfc,
)
from vlcurate.model.token_scrub import scrub_special_tokens
from vlcurate.schemas.record import Pair

TASK_CAPTIONING = "captioning"
CAPTION_PROMPTS = {
    "en": "Generate the caption in English:",
    "zh": "Generate the caption in Chinese:",  # the paper's Chinese prompt is unconfirmed
}


class RejectSample(ValueError):
    """Raised inside the formatters only; the public format_* functions turn it into a `Formatted`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclasses.dataclass(frozen=True)
class Formatted:
    """The sample, or the reason it was rejected."""

    sample: dict[str, Any] | None = None
    reason: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.sample is not None


def check_utf8(text: str, field: str) -> str:
    """JSON input can carry lone surrogates (`"\\ud800"`): they cannot be written as UTF-8, reject them."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RejectSample("bad_text", f"{field} is not valid Unicode (lone surrogate)") from None
    return text


def free_text(value: object, field: str, *, strip: bool = True, required: bool = True) -> str:
    """A free-text input field, scrubbed and checked: RejectSample when missing, not text, or (when
    required) empty.

    Scrubbed pieces placed between template parts cannot form a special token across the junction:
    every special string has '<' only first and '>' only last, and every template part next to free
    text either is a whole special token or contains neither character.
    """
    if value is None:
        raise RejectSample("missing_field", field)
    if not isinstance(value, str):
        raise RejectSample("bad_field", f"{field} must be a string, got {type(value).__name__}")
    text = scrub_special_tokens(check_utf8(value, field))
    # Checked against the tokenizer's own definition, so nothing leaks whatever the scrub misses.
    if SPECIAL_PATTERN.search(nfc(text)):
        raise RejectSample("special_tokens", field)
    if strip:
        text = text.strip()
    if required and not text:
        raise RejectSample("empty_field", field)
    return text


def checked_image_path(path: object) -> str:
    """The path if the tokenizer and the model accept it, else RejectSample."""
    if not isinstance(path, str) or not path:
        raise RejectSample("missing_field", "image")
    check_utf8(path, "image")
    if SPECIAL_PATTERN.search(nfc(path)):
        raise RejectSample(ImagePathError.reason, "special token in the image path")
    if nfc(path) != path:  # the tokenizer would NFC the path and the loader would not find the file
        raise RejectSample(ImagePathError.reason, "image path is not NFC-normalized")
    try:
        image_path_bytes(path)
    except ImagePathError as exc:
        raise RejectSample(exc.reason, str(exc)) from None
    return path


def image_tag(path: str) -> str:
    return f"{IMG_START}{path}{IMG_END}"


def make_sample(
    task: str,
    images: list[str],
    prefix: str,
    target: str,
    sample_id: str | None = None,
    tokenizer: QwenTokenizer | None = None,
) -> dict[str, Any]:
    """The sample row, with `<|endoftext|>` appended to the target and both halves measured."""
    tok = tokenizer or get_tokenizer()
    target += ENDOFTEXT
    prefix_tokens, target_tokens = tok.count(prefix), tok.count(target)
    return {
        "id": sample_id,
        "task": task,
        "images": images,
        "prefix": prefix,
        "target": target,
        "prefix_tokens": prefix_tokens,
        "target_tokens": target_tokens,
        "num_tokens": prefix_tokens + target_tokens,
    }


def caption_parts(caption: object, lang: object, image_path: object) -> tuple[str, list[str], str, str]:
    """(task, images, prefix, target without `<|endoftext|>`) of a captioning sample; RejectSample on bad
    input. Stage 2 reuses it for its captioning task."""
    prompt = CAPTION_PROMPTS.get(lang) if isinstance(lang, str) else None
    if prompt is None:
        raise RejectSample("unsupported_lang", f"lang {lang!r} (expected 'en' or 'zh')")
    text = free_text(caption, "caption")
    path = checked_image_path(image_path)
    return TASK_CAPTIONING, [path], image_tag(path) + prompt, f" {text}"


def format_caption(
    caption: object,
    lang: object,
    image_path: object,
    sample_id: str | None = None,
    tokenizer: QwenTokenizer | None = None,
) -> Formatted:
    """Stage-1 sample from plain values; never raises on bad data."""
    try:
        return Formatted(make_sample(*caption_parts(caption, lang, image_path), sample_id, tokenizer))
    except RejectSample as exc:
        return Formatted(reason=exc.reason, detail=exc.detail)


def format_pair(
    pair: Pair, image_path: str | None = None, tokenizer: QwenTokenizer | None = None
) -> Formatted:
    """Stage-1 sample of a kept pair. `image_path` is where the trainer finds the image (default: the
    pair's image_ref); the sample id is the pair's uid."""
    path = image_path if image_path is not None else pair.image_ref
    return format_caption(pair.caption, pair.lang, path, pair.uid, tokenizer)
