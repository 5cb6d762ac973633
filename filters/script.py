"""Script filter: "removing pairs with text containing non-English or non-Chinese characters"
(Qwen-VL paper, appendix A.1, step 4).

Allowed by default:
- ASCII printable characters and tab/newline/carriage return (English),
- CJK Unified Ideographs U+4E00-9FFF and Extension A U+3400-4DBF (Chinese), CJK Symbols and Punctuation
  U+3000-303F (。、《》【】), full-width ASCII variants and half-width CJK punctuation U+FF00-FF64 and
  full-width signs U+FFE0-FFEF (，：！１２３￥). Half-width katakana and Hangul (U+FF65-FFDC) are excluded
  with the rest of Japanese and Korean,
- General Punctuation U+2000-206F (curly quotes, dashes, ellipsis, bullet, ZWJ),
- with `allow_symbols` (default True): symbols that belong to no language and are common in English and
  Chinese captions: Latin-1 punctuation and signs U+00A0-00BF (© ® ° £ · « »), × ÷, currency signs
  U+20A0-20CF, letterlike symbols and number forms U+2100-218F (™ № ℃ Ⅻ), arrows, mathematical
  operators U+2190-22FF, enclosed alphanumerics U+2460-24FF (①), box drawing, block elements and
  geometric shapes U+2500-25FF (■ ●), miscellaneous symbols and dingbats U+2600-27BF (★ ✓),
- emoji code points (Extended_Pictographic and emoji components: ZWJ, variation selectors, skin tones,
  regional indicators, keycap, tags): not a script. They are left to the `emoji` step so that a rejected
  pair carries the reason that explains it.

Kana, Hangul, Cyrillic, Greek, Arabic, Thai, ... and accented Latin letters are disallowed, as the paper
says. `allow_latin_accents` (default False) admits Latin-1 Supplement letters, Latin Extended-A/B,
Latin Extended Additional and combining diacritical marks (French, German, Spanish, Vietnamese, ...).
`extra_ranges` admits more: a list of "XXXX-YYYY" or "XXXX" hex code points (e.g. ["0370-03FF"]).
"""

from __future__ import annotations

import regex

from vlcurate.filters.base import Filter, string_list
from vlcurate.schemas.record import Pair

_BASE = (
    r"\t\n\r\x20-\x7e"
    r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uff64\uffe0-\uffef"
    r"\u2000-\u206f"
    r"\p{Extended_Pictographic}\p{Emoji_Component}\ufe0e"
)
_SYMBOLS = (
    r"\u00a0-\u00bf\u00d7\u00f7\u20a0-\u20cf\u2100-\u218f\u2190-\u22ff\u2460-\u24ff\u2500-\u25ff\u2600-\u27bf"
)
_LATIN_ACCENTS = r"\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0300-\u036f\u1e00-\u1eff"


def _parse_range(spec: str) -> str:
    """'0370-03FF' or '00E9' (hex code points) -> a character-class fragment; raises ValueError."""
    parts = spec.strip().upper().removeprefix("U+").split("-")
    if len(parts) not in (1, 2) or not all(parts):
        raise ValueError(f"extra_ranges entry {spec!r} is not 'XXXX' or 'XXXX-YYYY' (hex code points)")
    low, high = (int(p.removeprefix("U+"), 16) for p in (parts[0], parts[-1]))
    if not 0 <= low <= high <= 0x10FFFF:
        raise ValueError(f"extra_ranges entry {spec!r} is not a valid code point range")
    return f"\\U{low:08x}-\\U{high:08x}"


def disallowed_pattern(
    allow_symbols: bool = True, allow_latin_accents: bool = False, extra_ranges: list[str] | None = None
) -> regex.Pattern:
    """A compiled class matching one character outside the allowed set."""
    allowed = _BASE
    if allow_symbols:
        allowed += _SYMBOLS
    if allow_latin_accents:
        allowed += _LATIN_ACCENTS
    allowed += "".join(_parse_range(r) for r in extra_ranges or ())
    return regex.compile(f"[^{allowed}]")


class ScriptFilter(Filter):
    """Drops captions holding characters that are neither English nor Chinese (kana, Hangul, Cyrillic, ...).

    Reason `disallowed_script`. Score `n_disallowed`: how many such characters. Allowed set and options: see the module docstring.
    """

    name = "script"
    reasons = ("disallowed_script",)
    score_names = ("n_disallowed",)
    histograms = {"n_disallowed": (0.0, 50.0, 50)}
    default_sources = {
        "allow_latin_accents": "Qwen-VL paper, appendix A.1 step 4: no non-English or non-Chinese characters",
        "max_disallowed": "Qwen-VL paper, appendix A.1 step 4: no non-English or non-Chinese characters",
    }

    def __init__(
        self,
        allow_symbols: bool = True,
        allow_latin_accents: bool = False,
        extra_ranges: list[str] | None = None,
        max_disallowed: int = 0,
    ) -> None:
        self.allow_symbols = allow_symbols
        self.allow_latin_accents = allow_latin_accents
        self.extra_ranges = string_list(extra_ranges or [], "extra_ranges")
        self.max_disallowed = max_disallowed
        self._disallowed = disallowed_pattern(allow_symbols, allow_latin_accents, self.extra_ranges)

    def count(self, text: str) -> int:
        if text.isascii() and text.isprintable():  # str.isascii is O(1): most captions stop here
            return 0
        if self._disallowed.search(text) is None:
            return 0
        return len(self._disallowed.findall(text))

    def score(self, pair: Pair) -> dict[str, float]:
        return {"n_disallowed": self.count(pair.caption)}

    def decide(self, scores: dict[str, float]) -> str | None:
        return "disallowed_script" if scores["n_disallowed"] > self.max_disallowed else None
