"""What vlcurate writes is UTF-8; this module is the one policy for strings that cannot be encoded.

A Python string can hold lone surrogates (U+D800-U+DFFF): JSON's `"\\ud800"` escape makes one, and so does
reading invalid UTF-8 with `surrogateescape` (bytes 0x80-0xFF become U+DC80-U+DCFF), as the readers and
`tarfile` do for member names. UTF-8 has no encoding for them, and every writer (tar members, Parquet
string columns, meta JSON, stats.json, info.json, report.html) raised UnicodeEncodeError on one: a single
such string killed the job.

Policy: a caption that does not decode is rejected by the readers (`caption_bad_utf8`); any other text
(keys and uids, paths, passthrough `meta` keys and values, score names) is written with each lone
surrogate replaced by U+FFFD (a surrogate pair spelled as two code points is joined), and a pair whose
written fields changed says so in `meta["unicode_replaced"]` (the field names). Where the raw value is
needed to find the input again, it is kept percent-escaped: `meta["image_ref_escaped"]` and
`meta["uid_escaped"]` hold the raw bytes (what `os.fsencode` gives for a surrogate-escaped name; other
lone surrogates as their 3-byte WTF-8 form), RFC 3986-escaped with `/`, `:`, `#` and `=` left as they are;
`os.fsdecode(urllib.parse.unquote_to_bytes(value))` is the path to open. Width and height are int64
columns: a size outside int64 (no image has one; a forged header can claim it) is written as null with
the claimed number as text in `meta["width_raw"]` / `meta["height_raw"]`. Plain Python, no Beam.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

REPLACED = "unicode_replaced"  # meta key: the fields whose written text differs from what was read
# The raw values kept (percent-escaped) when they were replaced: what finds the input again.
ESCAPED = {"uid": "uid_escaped", "image_ref": "image_ref_escaped"}
_TEXT_FIELDS = ("uid", "source", "caption", "caption_raw", "image_ref", "image_format", "lang")
_SIZE_FIELDS = ("width", "height")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def writable_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (and split surrogate pairs joined): the text
    vlcurate writes for it. Unchanged (the same object) when it encodes."""
    if encodable(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def utf8(text: str) -> bytes:
    """The UTF-8 bytes vlcurate writes for `text`; never raises."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return writable_text(text).encode("utf-8")


def escape_raw(text: str) -> str:
    """The raw bytes behind `text`, percent-escaped (see the module docstring)."""
    raw = bytearray()
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that did not decode (surrogateescape, os.fsdecode)
            raw.append(code - 0xDC00)
        else:
            raw += char.encode("utf-8", "surrogatepass")
    return urllib.parse.quote(bytes(raw), safe="/:#=")


def _clean(value: Any) -> bool:
    """Whether a JSON-like value holds no string UTF-8 cannot encode: the fast path, no copies. Strings and
    numbers inside containers are checked inline (a call per item cost more than the check)."""
    kind = type(value)
    if kind is str:
        return value.isascii() or encodable(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is str:
                if not key.isascii() and not encodable(key):
                    return False
            elif not _clean(key):
                return False
            kind = type(item)
            if kind is str:
                if not item.isascii() and not encodable(item):
                    return False
            elif kind not in _SCALARS and not _clean(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            if not (item.isascii() or encodable(item)) if type(item) is str else not _clean(item):
                return False
        return True
    return kind in _SCALARS or not isinstance(value, (str, dict, list, tuple)) or _clean(_plain(value))


_SCALARS = frozenset([int, float, bool, type(None)])


def _plain(value: Any) -> Any:
    """A subclass of str, dict, list or tuple as its plain type."""
    for plain in (str, dict, list, tuple):
        if isinstance(value, plain):
            return plain(value)
    return value


def writable_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with every string and dict key writable; the same
    object when nothing had to change."""
    if _clean(value):
        return value
    if isinstance(value, str):
        return writable_text(value)
    if isinstance(value, dict):
        items = [
            (writable_value(k) if isinstance(k, str) else k, writable_value(v)) for k, v in value.items()
        ]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items())):
            return value
        return dict(items)  # two keys that became equal keep the later value, as JSON objects do
    if isinstance(value, (list, tuple)):
        items = [writable_value(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    return value


def make_writable(pair: Any) -> Any:
    """Makes every text field and size of a Pair (schemas/record.py) writable, in place, and records what changed
    (see the module docstring). Returns the pair. Cheap when nothing needs it: ASCII checks only."""
    replaced = []
    for name in _TEXT_FIELDS:
        text = getattr(pair, name)
        if text is not None and not text.isascii() and not encodable(text):
            if name in ESCAPED:
                pair.meta[ESCAPED[name]] = escape_raw(text)
            setattr(pair, name, writable_text(text))
            replaced.append(name)
    for name in _SIZE_FIELDS:  # Arrow's int64 columns; a header can claim anything
        size = getattr(pair, name)
        if size is not None and not INT64_MIN <= size <= INT64_MAX:
            pair.meta[f"{name}_raw"] = str(size)
            setattr(pair, name, None)
    scores = writable_value(pair.scores)
    if scores is not pair.scores:
        pair.scores, replaced = scores, [*replaced, "scores"]
    meta = writable_value(pair.meta)
    if meta is not pair.meta:
        pair.meta, replaced = meta, [*replaced, "meta"]
    if replaced:
        earlier = pair.meta.get(REPLACED)  # an input written by vlcurate carries it through
        pair.meta[REPLACED] = sorted({*(earlier if isinstance(earlier, list) else ()), *replaced})
    return pair
