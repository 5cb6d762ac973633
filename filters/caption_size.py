"""A guard before every other text step: captions longer than `max_bytes` UTF-8 bytes are rejected as
`caption_too_large` without being read further.

Default 4096 bytes, from what the later steps keep:
- the `length` filter's maximum is 300 characters / 60 words (filters/length.py: CLIP reads 77 tokens,
  OpenAI CLIP's context length; Chinese-CLIP reads 52), so no caption much longer is ever kept;
- 300 characters are at most 900 bytes of Chinese (3 bytes per ideograph in UTF-8) or 1,200 of 4-byte
  characters, and markup and entities that `clean_html` removes come on top: 4096 bytes leave 4.5x the
  Chinese maximum. On the 10,000 real web alt texts in tests/data the longest is 2,041 bytes (dropped as
  `too_long` later) and the longest kept 462, so the guard changes nothing there;
- the text steps cost time in proportion to a caption's length, and Python's html.parser more on some
  malformed markup before the fix of CVE-2025-6069 (filters/html_text.py); a 1 MB "caption" is a page or
  a payload, not a caption: with this guard no text step reads more than 4 KB.
"""

from __future__ import annotations

from vlcurate.filters.base import Step, reject
from vlcurate.schemas.record import Pair

# UTF-8 takes 1-4 bytes per code point (a lone surrogate, kept with surrogatepass, takes 3).
_MAX_BYTES_PER_CHAR = 4


def utf8_size_over(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes in UTF-8; encodes only when its length cannot tell."""
    if len(text) > limit:
        return True
    if len(text) * _MAX_BYTES_PER_CHAR <= limit or text.isascii():
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class MaxCaptionBytes(Step):
    """Rejects captions over `max_bytes` UTF-8 bytes; runs first, so no other text step reads them.

    Reason `caption_too_large`. Default 4096 and its sources: see the module docstring."""

    name = "max_caption_bytes"
    reasons = ("caption_too_large",)
    default_sources = {
        "max_bytes": "4.5x the longest Chinese caption `length` keeps, in UTF-8, with room for markup",
    }

    def __init__(self, max_bytes: int = 4096) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_bytes = max_bytes

    def apply(self, pair: Pair) -> None:
        if utf8_size_over(pair.caption, self.max_bytes):
            reject(pair, "caption_too_large")
