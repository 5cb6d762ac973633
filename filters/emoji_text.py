"""Emoji filter: "removing pairs with text containing emoji characters" (Qwen-VL paper, appendix A.1, step 5).

One compiled `regex` pattern counts emoji the way the `emoji` package's data does (one count per emoji,
however many code points it has) at regex speed:
- keycaps `[#*0-9]` + optional U+FE0F + U+20E3 (1️⃣),
- flags: a pair of regional indicators (🇯🇵); a lone regional indicator is not an emoji,
- everything else: an Extended_Pictographic or Emoji_Presentation base with an optional variation
  selector, skin tone or tag sequence (🏴 + tags = England), joined by ZWJ into one sequence (👨‍👩‍👧).

The one deliberate difference: bare ©, ® and ™ (text-presentation symbols that `emoji` counts) are not
emoji unless followed by U+FE0F, with `count_text_symbols=False` (the default). "© 2019 Getty Images" and
"Nike® shoes" are ordinary captions; dropping them would lose about 1% of English alt texts for no gain.
Set `count_text_symbols=True` to match `emoji.emoji_count` exactly.
"""

from __future__ import annotations

import regex

from vlcurate.filters.base import Filter
from vlcurate.schemas.record import Pair

_TEXT_SYMBOLS = "\u00a9\u00ae\u2122"  # © ® ™
_TAGS = r"[\U000e0020-\U000e007f]*"  # tag sequences: 🏴 + tag letters + cancel tag (England, Scotland)


def _emoji_pattern(count_text_symbols: bool) -> regex.Pattern:
    if count_text_symbols:
        base = r"[\p{Extended_Pictographic}\p{Emoji_Presentation}--\p{Regional_Indicator}]"
    else:
        base = (
            rf"(?:[\p{{Extended_Pictographic}}\p{{Emoji_Presentation}}--\p{{Regional_Indicator}}--[{_TEXT_SYMBOLS}]]"
            rf"|[{_TEXT_SYMBOLS}](?=\ufe0f))"
        )
    # A skin tone binds only to a modifier base (👍🏽); after anything else it is an emoji of its own.
    element = rf"(?:\p{{Emoji_Modifier_Base}}\p{{Emoji_Modifier}}|{base}[\ufe0e\ufe0f]?){_TAGS}"
    pictographic = rf"{element}(?:\u200d{element})*"
    keycap = r"[#*0-9]\ufe0f?\u20e3"
    flag = r"\p{Regional_Indicator}{2}"
    return regex.compile(f"{keycap}|{flag}|{pictographic}", regex.V1)


_PATTERNS = {flag: _emoji_pattern(flag) for flag in (False, True)}


def count_emoji(text: str, count_text_symbols: bool = False) -> int:
    """Number of emoji in `text`, counted as `emoji.emoji_count` does (see the module docstring)."""
    if text.isascii():  # every emoji, keycaps included, has a non-ASCII code point
        return 0
    pattern = _PATTERNS[count_text_symbols]
    if pattern.search(text) is None:
        return 0
    return len(pattern.findall(text))


class EmojiFilter(Filter):
    """Drops captions with more than `max_emoji` emoji, counted as the `emoji` package counts them.

    Default 0: the paper removes any. Reason `emoji`.

    Score `n_emoji`. `count_text_symbols` (default False): whether bare ©, ®, ™ count; see module docstring.
    """

    name = "emoji"
    reasons = ("emoji",)
    score_names = ("n_emoji",)
    histograms = {"n_emoji": (0.0, 20.0, 20)}
    default_sources = {"max_emoji": "Qwen-VL paper, appendix A.1 step 5: pairs with emoji are removed"}

    def __init__(self, max_emoji: int = 0, count_text_symbols: bool = False) -> None:
        self.max_emoji = max_emoji
        self.count_text_symbols = count_text_symbols

    def score(self, pair: Pair) -> dict[str, float]:
        return {"n_emoji": count_emoji(pair.caption, self.count_text_symbols)}

    def decide(self, scores: dict[str, float]) -> str | None:
        return "emoji" if scores["n_emoji"] > self.max_emoji else None
