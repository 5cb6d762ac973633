"""Finding and removing Qwen-VL special-token strings in free text (captions, answers).

finetune.py encodes with every special token allowed (docs/qwenvl-format.md section 4), so a literal
`<|im_end|>` or `<box>` in a caption would become a control token. The caption cleaner
(filters/patterns.py, `clean_patterns`) and the sample formatters (formatters/stage1.py) scrub text with
`scrub_special_tokens`; the strings come from the tokenizer, model/qwen_tokenizer.py, their one owner.
"""

from __future__ import annotations

import regex

from vlcurate.model.qwen_tokenizer import EXTRA_PREFIX, EXTRA_SUFFIX, SPECIAL_TOKENS

# The tokenizer's special tokens (model/qwen_tokenizer.py owns them), case-sensitive like tiktoken: every
# one exactly, but for the numbered <|extra_N|>, which goes for any digits N (<|extra_205|>, <|extra_007|>).
# The tokenizer reads only N = 0..204 as control tokens (its SPECIAL_PATTERN); captions lose the whole
# family because such a string is markup, never words about the image, and because one shape for every N
# keeps the scrub one linear pass (`_Open` counts digits instead of checking a number's range).
_NAMED = tuple(t for t in SPECIAL_TOKENS if not t.startswith(EXTRA_PREFIX))
_SPECIAL_TOKENS = regex.compile(
    "|".join(regex.escape(t) for t in _NAMED)
    + "|"
    + regex.escape(EXTRA_PREFIX)
    + r"\d+"
    + regex.escape(EXTRA_SUFFIX)
)


def scrub_special_tokens(text: str) -> str:
    """Removes every Qwen-VL special-token string from `text`, also those that removing one forms
    ("<im<img>g>" -> "<img>" -> "").

    One pass with a stack (`_scrub_nested`), not the pattern re-run until nothing changes: that took one
    pass per level of nesting, quadratic on a caption built to nest. Every token starts with its only "<"
    and ends with its only ">", so two occurrences never overlap and every order of removals ends in the
    same text.
    """
    if "<" not in text or _SPECIAL_TOKENS.search(text) is None:
        return text
    return _scrub_nested(text)


_PIECES = regex.compile(r"[<>]|[^<>]+")
# The longest token without its ">" (<|endoftext|), but for <|extra_N|> with many digits.
_SHORT = max(len(t) for t in _NAMED) - 1
_EXTRA = EXTRA_PREFIX
_DIGITS = regex.compile(r"\d*")
_DIGITS_BAR = regex.compile(r"\d*\|")


class _Open:
    """A "<" kept in the output and what follows it so far: its first characters (`head`), its length,
    and for a long one whether it is still `<|extra_` + digits (`digits`: how many), then "|" (`bar`)."""

    __slots__ = ("at", "bar", "dead", "digits", "head", "length")

    def __init__(self, at: int) -> None:
        self.at, self.head, self.length = at, "<", 1
        self.digits, self.bar, self.dead = 0, False, False

    def append(self, piece: str) -> None:
        before = self.length
        self.length += len(piece)
        if before <= _SHORT:
            self.head += piece[: _SHORT + 1 - before]
        if self.dead or self.length <= len(_EXTRA):
            return
        if not self.head.startswith(_EXTRA) or self.bar:
            self.dead = True
            return
        rest = piece[max(0, len(_EXTRA) - before) :]
        if _DIGITS.fullmatch(rest):
            self.digits += len(rest)
        elif _DIGITS_BAR.fullmatch(rest) and self.digits + len(rest) > 1:
            self.bar = True
        else:
            self.dead = True

    def closes_token(self) -> bool:
        """Whether this "<", what follows it and a ">" now form a special token."""
        if self.length <= _SHORT:
            return _SPECIAL_TOKENS.fullmatch(self.head + ">") is not None
        return self.bar and not self.dead


def _scrub_nested(text: str) -> str:
    out: list[str] = []
    opens: list[_Open] = []  # the "<" after the last ">" kept in `out`: only these can start a token
    for piece in _PIECES.findall(text):
        if piece == "<":
            opens.append(_Open(len(out)))
            out.append(piece)
        elif piece == ">":
            if opens and opens[-1].closes_token():
                del out[opens.pop().at :]  # what follows the "<" before it is as it was when this one came
            else:
                out.append(piece)
                opens.clear()  # a kept ">" ends every candidate before it for good
        else:
            out.append(piece)
            if opens:
                opens[-1].append(piece)
    return "".join(out)


def has_special_tokens(text: str) -> bool:
    """True when `text` holds a string the Qwen-VL tokenizer would read as a special token."""
    return "<" in text and _SPECIAL_TOKENS.search(text) is not None
