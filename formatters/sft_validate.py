"""Validation of finetune.py SFT samples (docs/qwenvl-format.md section 3) before they are written (and, by
pipelines/sft_io.validate_output_dir, after).

A sample is `{"id": str, "conversations": [{"from": "user"|"assistant", "value": str}, ...]}`. It is valid
when all of these hold (the reason names in brackets become `invalid_<reason>` rejects):
- [bad_sample] a mapping with exactly `id` (non-empty string) and `conversations` (non-empty list of
  `{"from", "value"}` mappings with string values that encode as UTF-8);
- [bad_roles] roles are only user/assistant, the first is user, they alternate, the last is assistant;
- [image_in_assistant] no `<img>`, `</img>` or `<imgpad>` in an assistant turn;
- [bad_image_markup] every image in a user turn is announced exactly as `Picture {n}: <img>{path}</img>\\n`;
- [picture_numbering] announcements count 1..k in order across the whole conversation;
- [picture_ref_unknown] text naming `Picture {n}` (or `图{n}`) names an image announced at or before that
  turn (checked in samples that hold images);
- [image_path_too_long] a path has at most 254 UTF-8 bytes; [image_path_invalid] it is NFC, relative,
  without `..`, backslashes or a URL scheme, and holds no special token; [image_missing] it resolves
  relative to the output root (a `path_exists` callable decides);
- [special_tokens] no special-token string outside the markup the format intends: image announcements,
  `<ref>...</ref>` (not nested, no markup inside) and `<box>(x1,y1),(x2,y2)</box>` ([bad_box]: integers
  0..999, x1 <= x2, y1 <= y2); `check_markup` also serves stage-2 text, where `<quad>` with 4 points
  ([bad_quad]) is allowed too;
- [too_long] the exact token length of finetune.py's `preprocess` is at most `max_len` (nothing is cut).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

from vlcurate.model.qwen_tokenizer import (
    BOX_PATTERN,
    BOX_START,
    IMG_END,
    IMG_PAD,
    IMG_START,
    QUAD_START,
    REF_END,
    REF_START,
    SPECIAL_PATTERN,
    ChatMLEncoding,
    ImagePathError,
    QwenTokenizer,
    get_tokenizer,
    image_path_bytes,
    nfc,
    preprocess_chatml,
)

ROLES = ("user", "assistant")
ANNOUNCEMENT = re.compile(r"Picture (\d+): <img>([^\n]*?)</img>\n")
# Text that names a picture: "Picture 2" (not an announcement) or "图2".
PICTURE_REF = re.compile(r"Picture (\d+)(?!\d|: <img>)|图(\d+)(?!\d)")
QUAD = re.compile(r"<quad>\(\d{1,3},\d{1,3}\)(?:,\(\d{1,3},\d{1,3}\)){3}</quad>")
_IMAGE_TOKENS = (IMG_START, IMG_END, IMG_PAD)
SFT_MARKUP = frozenset({REF_START, BOX_START})  # what SFT text may hold besides image announcements


@dataclasses.dataclass(frozen=True)
class Problem:
    reason: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Validation:
    """The problems found (empty when valid) and, when the sample could be tokenized, its encoding."""

    problems: list[Problem]
    encoding: ChatMLEncoding | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reject_reason(self) -> str:
        return f"invalid_{self.problems[0].reason}" if self.problems else ""


def _structure(sample: object) -> Problem | None:
    if not isinstance(sample, Mapping) or set(sample) != {"id", "conversations"}:
        return Problem("bad_sample", "a sample is an object with exactly `id` and `conversations`")
    if not isinstance(sample["id"], str) or not sample["id"]:
        return Problem("bad_sample", "id must be a non-empty string")
    turns = sample["conversations"]
    if not isinstance(turns, list) or not turns:
        return Problem("bad_sample", "conversations must be a non-empty list")
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or set(turn) != {"from", "value"}:
            return Problem("bad_sample", f"turn {i} must be an object with exactly `from` and `value`")
        if not isinstance(turn["from"], str) or not isinstance(turn["value"], str):
            return Problem("bad_sample", f"turn {i}: `from` and `value` must be strings")
        try:
            (sample["id"] + turn["value"]).encode("utf-8")
        except UnicodeEncodeError:
            return Problem("bad_sample", f"turn {i} is not valid Unicode (lone surrogate)")
    return None


def _roles(turns: list[Mapping[str, str]]) -> Problem | None:
    for i, turn in enumerate(turns):
        if turn["from"] not in ROLES:
            return Problem("bad_roles", f"turn {i} is from {turn['from']!r}; only user/assistant")
        if turn["from"] != ROLES[i % 2]:
            return Problem("bad_roles", f"turn {i} should be from {ROLES[i % 2]} (first user, alternating)")
    if turns[-1]["from"] != "assistant":
        return Problem("bad_roles", "the last turn must be from the assistant")
    return None


def check_image_path(path: str, path_exists: Callable[[str], bool] | None) -> Problem | None:
    """What the model and the loader need of a path in `<img>...</img>`."""
    try:
        image_path_bytes(path)
    except ImagePathError as exc:
        return Problem(exc.reason, str(exc))
    if nfc(path) != path:
        return Problem(
            "image_path_invalid", f"{path!r} is not NFC-normalized (the tokenizer would change it)"
        )
    if not path or path.startswith("/") or "\\" in path or "://" in path or ".." in path.split("/"):
        return Problem("image_path_invalid", f"{path!r} must be a relative path under the output root")
    if SPECIAL_PATTERN.search(path):
        return Problem("image_path_invalid", f"{path!r} holds a special-token string")
    if path_exists is not None and not path_exists(path):
        return Problem("image_missing", f"{path!r} does not resolve under the output root")
    return None


def check_markup(text: str, where: str, allowed: frozenset[str] = SFT_MARKUP) -> Problem | None:
    """Special tokens in `text` (NFC, image announcements already cut out): only well-formed markup of the
    kinds in `allowed` (REF_START, BOX_START, QUAD_START), else the first problem found."""
    in_ref = False
    pos = 0
    while True:
        match = SPECIAL_PATTERN.search(text, pos)
        if match is None:
            break
        token = match.group()
        if token in (BOX_START, QUAD_START) and token in allowed:
            shape, reason = (BOX_PATTERN, "bad_box") if token == BOX_START else (QUAD, "bad_quad")
            found = shape.match(text, match.start())
            if found is None:
                return Problem(reason, f"{where}: {text[match.start() : match.start() + 60]!r}")
            if token == BOX_START:
                x1, y1, x2, y2 = (int(v) for v in found.groups())
                if x1 > x2 or y1 > y2:
                    return Problem("bad_box", f"{where}: {found.group()} is not top-left then bottom-right")
            pos = found.end()
            continue
        if token == REF_START and not in_ref and REF_START in allowed:
            in_ref = True
        elif token == REF_END and in_ref:
            in_ref = False
        elif token in _IMAGE_TOKENS:
            return Problem(
                "bad_image_markup", f"{where}: {token} outside the image markup the format intends"
            )
        else:
            return Problem("special_tokens", f"{where}: {token} is not allowed here")
        pos = match.end()
    if in_ref:
        return Problem("special_tokens", f"{where}: <ref> is not closed")
    return None


def _turns(turns: list[Mapping[str, str]], path_exists: Callable[[str], bool] | None) -> Problem | None:
    shown = 0
    refs: list[tuple[int, int, str]] = []  # (picture number, images shown by then, where)
    for i, turn in enumerate(turns):
        value, where = turn["value"], f"turn {i}"
        if turn["from"] == "assistant":
            if any(t in nfc(value) for t in _IMAGE_TOKENS):
                return Problem("image_in_assistant", where)
        else:
            pieces, pos = [], 0
            for match in ANNOUNCEMENT.finditer(value):
                number, path = int(match.group(1)), match.group(2)
                shown += 1
                if number != shown:
                    return Problem("picture_numbering", f"{where}: Picture {number} where {shown} is due")
                problem = check_image_path(path, path_exists)
                if problem is not None:
                    return problem
                pieces.append(value[pos : match.start()])
                pos = match.end()
            pieces.append(value[pos:])
            value = "".join(pieces)  # what is left must hold no image markup
        value = nfc(value)  # as the tokenizer sees it
        problem = check_markup(value, where)
        if problem is not None:
            return problem
        refs += [(int(m.group(1) or m.group(2)), shown, where) for m in PICTURE_REF.finditer(value)]
    if shown:
        for number, by_then, where in refs:
            if not 1 <= number <= by_then:
                return Problem("picture_ref_unknown", f"{where} names picture {number}; {by_then} shown")
    return None


def validate_sample(
    sample: object,
    max_len: int,
    *,
    path_exists: Callable[[str], bool] | None = None,
    tokenizer: QwenTokenizer | None = None,
    length_hint: int | None = None,
    pad: bool = True,
) -> Validation:
    """Checks one sample (see the module docstring). `path_exists(path)` says whether an image path
    resolves under the output root; None skips that check. Tokenizes only a structurally valid sample.

    The encoding is finetune.py's, padded and cut at `max_len`. With `length_hint` (the caller's own
    count) it is cut at min(max_len, length_hint) instead: no padding to build when the hint is right,
    which is most of the cost for short samples. With `pad=False` it is the whole sequence, neither
    padded nor cut (what `vlcurate check` inspects). `encoding.length` is the real length either way."""
    problem = _structure(sample)
    if problem is None:
        problem = _roles(sample["conversations"]) or _turns(sample["conversations"], path_exists)
    if problem is not None:
        return Validation([problem])
    cut = None if not pad else max_len if length_hint is None else min(max_len, length_hint)
    encoding = preprocess_chatml(sample["conversations"], cut, tokenizer=tokenizer or get_tokenizer())
    if encoding.length > max_len:
        return Validation([Problem("too_long", f"{encoding.length} tokens > {max_len}")], encoding)
    return Validation([], encoding)
