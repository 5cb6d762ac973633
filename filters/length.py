"""Length filter: "removing pairs with text length too short or too long" (Qwen-VL paper, appendix A.1,
step 6). Thresholds were not published; the defaults are these public conventions:

- English minimum: DataComp's basic filter keeps captions with more than 2 words and more than 5
  characters (Gadre et al. 2023, "DataComp", appendix on the basic filtering baseline): `min_words=3`,
  `min_chars=6`.
- English maximum: the CLIP score step sees at most 77 tokens (OpenAI CLIP's context length); text past
  that is never checked against the image. At ~1.3 BPE tokens per English word and ~4 characters per
  token, 77 tokens are ~58 words or ~300 characters: `max_words=60`, `max_chars=300`. On the 10k web
  caption sample this drops 0.5% (news-agency paragraphs, keyword lists, product descriptions).
- Chinese (a caption whose letters are mostly CJK ideographs): words are not space-separated, so the
  ideographs are counted. Minimum `min_cjk_chars=4`, the DataComp "> 2 words" rule carried over at the
  usual 1.5-2 characters per Chinese word; maximum `max_cjk_chars=50`, the 52-token context of
  Chinese-CLIP (one token per ideograph, minus [CLS] and [SEP]), for the same reason as the 77 above.
  `max_chars` applies to Chinese captions as well.

Scores: `n_chars` (all characters), `n_words` (space-separated tokens), `n_cjk` (CJK ideographs),
`chinese` (1 when the Chinese rules applied, else 0).
An empty caption (everything cleaned away) is `too_short`.
"""

from __future__ import annotations

import regex

from vlcurate.filters.base import Filter
from vlcurate.schemas.record import Pair

_CJK = regex.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LETTER = regex.compile(r"\p{L}")


def cjk_counts(text: str) -> tuple[int, int]:
    """(CJK ideographs, letters of any script) in `text`."""
    if text.isascii():
        return 0, 0  # the letter count only matters when there are ideographs
    n_cjk = len(_CJK.findall(text))
    if n_cjk == 0:
        return 0, 0
    return n_cjk, len(_LETTER.findall(text))


def is_chinese(n_cjk: int, n_letters: int) -> bool:
    """A caption is Chinese when more than half of its letters are CJK ideographs."""
    return n_cjk * 2 > n_letters


class LengthFilter(Filter):
    """Drops captions too short or too long: words and characters, or ideographs for Chinese captions.

    Reasons `too_short` and `too_long`; defaults and their sources are in the module docstring."""

    name = "length"
    reasons = ("too_short", "too_long")
    score_names = ("n_chars", "n_words", "n_cjk", "chinese")
    histograms = {"n_chars": (0.0, 400.0, 80), "n_words": (0.0, 80.0, 80), "n_cjk": (0.0, 100.0, 50)}
    what_if = {
        "min_words": ("n_words", "min"),
        "max_words": ("n_words", "max"),
        "min_chars": ("n_chars", "min"),
        "max_chars": ("n_chars", "max"),
        "min_cjk_chars": ("n_cjk", "min"),
        "max_cjk_chars": ("n_cjk", "max"),
    }
    default_sources = {
        "min_words": "DataComp's basic filter, Gadre et al. 2023: more than 2 words",
        "min_chars": "DataComp's basic filter, Gadre et al. 2023: more than 5 characters",
        "max_words": "OpenAI CLIP reads 77 tokens, about 58 English words",
        "max_chars": "OpenAI CLIP reads 77 tokens, about 300 characters",
        "min_cjk_chars": "DataComp's more than 2 words, at 1.5-2 ideographs per Chinese word",
        "max_cjk_chars": "Chinese-CLIP reads 52 tokens, one per ideograph",
    }

    def __init__(
        self,
        min_words: int = 3,
        min_chars: int = 6,
        max_words: int = 60,
        max_chars: int = 300,
        min_cjk_chars: int = 4,
        max_cjk_chars: int = 50,
    ) -> None:
        self.min_words = min_words
        self.min_chars = min_chars
        self.max_words = max_words
        self.max_chars = max_chars
        self.min_cjk_chars = min_cjk_chars
        self.max_cjk_chars = max_cjk_chars
        if min_words > max_words or min_chars > max_chars or min_cjk_chars > max_cjk_chars:
            raise ValueError("each minimum must be at most its maximum")

    def score(self, pair: Pair) -> dict[str, float]:
        text = pair.caption
        n_cjk, n_letters = cjk_counts(text)
        return {
            "n_chars": len(text),
            "n_words": len(text.split()),
            "n_cjk": n_cjk,
            "chinese": 1 if n_cjk and is_chinese(n_cjk, n_letters) else 0,
        }

    def decide(self, scores: dict[str, float]) -> str | None:
        n_chars = scores["n_chars"]
        if scores["chinese"]:
            if scores["n_cjk"] < self.min_cjk_chars:
                return "too_short"
            if scores["n_cjk"] > self.max_cjk_chars or n_chars > self.max_chars:
                return "too_long"
            return None
        if scores["n_words"] < self.min_words or n_chars < self.min_chars:
            return "too_short"
        if scores["n_words"] > self.max_words or n_chars > self.max_chars:
            return "too_long"
        return None
