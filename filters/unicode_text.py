"""Caption normalization: repair mojibake, NFC, drop invisible characters, collapse whitespace."""

from __future__ import annotations

import unicodedata

import ftfy
import regex

from vlcurate.filters.base import Cleaner, reject
from vlcurate.schemas.record import Pair

# Zero-width and bidi controls, soft hyphen, BOM, and C0/C1 controls other than whitespace.
_INVISIBLE = regex.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u00ad\ufeff\p{Cc}--[\t\n\r]]", regex.V1)


class NormalizeCaption(Cleaner):
    """Repairs mojibake (ftfy), NFC, removes invisible characters, collapses whitespace.

    ftfy runs only on non-ASCII text: pure ASCII has no mojibake to fix. Invisible characters are removed
    and whitespace runs collapsed to one space. An empty result is rejected as `caption_empty`.

    `fix_width` (off by default) lets ftfy fold full-width forms to ASCII; that would also turn Chinese
    punctuation (，（）！) into ASCII, which Chinese captions should keep as written."""

    name = "normalize_caption"
    reasons = ("caption_empty",)

    def __init__(self, fix_unicode: bool = True, fix_width: bool = False) -> None:
        self.fix_unicode, self.fix_width = fix_unicode, fix_width

    def clean(self, text: str) -> str:
        if not text.isascii():
            if self.fix_unicode:
                text = ftfy.fix_text(text, normalization="NFC", fix_character_width=self.fix_width)
            text = unicodedata.normalize("NFC", text)
            text = _INVISIBLE.sub("", text)
        elif not text.isprintable():  # ASCII control characters (tabs and newlines become spaces below)
            text = _INVISIBLE.sub("", text)
        return " ".join(text.split())

    def apply(self, pair: Pair) -> None:
        super().apply(pair)
        if not pair.caption:
            reject(pair, "caption_empty")
