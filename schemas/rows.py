"""Input rows to Pair records: plain Python shared by every reader.

A row is a dict (a Parquet row, a JSONL object, a CSV line) or a WebDataset sample ({ext: bytes}).
Trouble in a row becomes a rejected Pair with a reason, never an exception.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from vlcurate.schemas.config import SourceConfig
from vlcurate.schemas.encoding import encodable
from vlcurate.schemas.image_paths import outside_root, resolve_image_path
from vlcurate.schemas.record import IMAGE_EXTENSIONS, ImageSpan, Pair, make_uid

# JSON metadata keys img2dataset writes that vlcurate tracks itself; everything else passes through.
_WDS_OWN_KEYS = ("key", "caption")
# Deeper JSON (a JSONL line, a tar's .json member) is refused: no real metadata nests more than a few
# levels, and Python's recursion limit (1000) is shared by the parser, the writers' JSON encoder and pickle,
# so a value 900 deep that parsed would fail a step or a writer later instead of costing one row.
MAX_JSON_DEPTH = 100
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a UTF-16 surrogate written as a JSON escape
_SURROGATES = re.compile("[\ud800-\udfff]")
# Undecodable bytes a text reader carries through (surrogateescape) are U+DC80..U+DCFF: not escapes.
_ESCAPE_ONLY_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def parse_json(text: str | bytes, caption_key: str | None = None) -> tuple[Any, str | None]:
    """(value, None) for usable JSON, else (None, why not). Every way a JSON text can fail costs its record
    only, never the rest of its file: bad syntax, bytes that are not UTF-8, an integer over Python's
    int-string conversion limit (4300 digits), nesting deeper than MAX_JSON_DEPTH (or deep enough to exhaust
    the parser's recursion), and a lone UTF-16 surrogate written as an escape (`"\\ud800"`: not Unicode,
    RFC 8259 section 8.2; no UTF-8 output can hold it). A lone surrogate in the top-level `caption_key`
    value is left to the caption's own check (`caption_bad_utf8`)."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")  # json.loads would also take UTF-16 and UTF-32
        value = json.loads(text)
    except RecursionError:
        return None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int-string conversion limit
        return None, f"{type(exc).__name__}: {exc}"[:200]
    deep = text.count("[") + text.count("{") > MAX_JSON_DEPTH
    escaped = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    if deep or escaped:
        surrogates = _SURROGATES if encodable(text) else _ESCAPE_ONLY_SURROGATES
        error = _walk_json(value, surrogates if escaped else None, caption_key)
        if error is not None:
            return None, error
    return value, None


def _walk_json(value: Any, surrogates: re.Pattern | None, caption_key: str | None) -> str | None:
    """Why a parsed JSON value is unusable (too deep, a lone surrogate in a string), or None; iterative, so
    the walk itself never exhausts the recursion limit."""
    stack = [(value, 1, False)]
    while stack:
        item, depth, exempt = stack.pop()
        if isinstance(item, str):
            if surrogates is not None and not exempt and (found := surrogates.search(item)) is not None:
                return f"lone surrogate \\u{ord(found.group()):04x} in a JSON string (not Unicode)"
            continue
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(item, dict):
                for k, v in item.items():
                    stack.append((k, depth, False))
                    stack.append((v, depth + 1, depth == 1 and k == caption_key))
            else:
                stack.extend((v, depth + 1, False) for v in item)
    return None


def _bad(source: str, key: str, reason: str, **meta: Any) -> Pair:
    return Pair(uid=make_uid(source, key), source=source, reject=reason, meta=meta)


@dataclasses.dataclass(frozen=True)
class NotAFile:
    """A tar member that is no regular file (formatters/webdataset.py), in a sample's files in place of
    bytes: what it is (`kind`, e.g. "symbolic link") and, for a link, its target."""

    kind: str
    target: str = ""


_SAMPLE_EXTENSIONS = (*IMAGE_EXTENSIONS, "txt", "json")  # the members a sample is made of


def _not_a_file(member_key: str, files: dict[str, bytes | NotAFile]) -> str | None:
    """Why a sample cannot be made (the reject's detail) when a member it is made of, or every member it
    has, is no file; None otherwise (other members that are none, beside real files, are not read)."""
    odd = sorted(ext for ext, data in files.items() if isinstance(data, NotAFile))
    used = [ext for ext in odd if ext in _SAMPLE_EXTENSIONS]
    if not used and len(odd) < len(files):
        return None
    ext = (used or odd)[0]
    member, link = files[ext], f" to {files[ext].target!r}" if files[ext].target else ""
    name = f"{member_key}.{ext}" if ext else member_key
    return f"tar member {name!r} is a {member.kind}{link}, not a file: the tar does not hold its bytes"


def pair_from_sample(
    source: SourceConfig,
    key: str,
    files: dict[str, bytes | NotAFile],
    path: str | None = None,
    offsets: dict[str, int] | None = None,
    tar: str | None = None,
) -> Pair:
    """A WebDataset sample (`key.jpg` + `key.txt` + `key.json`) as img2dataset writes it. With the tar's
    `path` and the members' `offsets` in it, the image's ImageSpan is recorded; with the tar's name as
    read (`tar`), the image's `image_ref` is `<tar>#<member>`, so a rejected image can be found. A sample
    whose image, caption or .json member is a link (or a device, a directory), or made of such members
    only, is `row_unparseable`: links are not followed."""
    member_key, key = key, key.rsplit("/", 1)[-1]
    not_a_file = _not_a_file(member_key, files)
    if not_a_file is not None:
        return _bad(source.name, key, "row_unparseable", error=not_a_file, file=tar)
    meta: dict[str, Any] = {}
    if "json" in files:
        # The .json member is metadata beside the sample: one that cannot be used costs its fields only.
        loaded, error = parse_json(files["json"], caption_key="caption")  # .txt is the caption
        if error is not None:
            meta = {"json_error": f"unparseable .json member: {error}"}
        elif isinstance(loaded, dict):
            meta = {k: v for k, v in loaded.items() if k not in _WDS_OWN_KEYS}
    try:
        caption = files.get("txt", b"").decode("utf-8")
    except UnicodeDecodeError:
        return _bad(source.name, key, "caption_bad_utf8", **meta)
    # vlcurate's own shards carry scores: re-reading them lets thresholds be re-tuned without the GPU step.
    scores = meta.pop("scores", None)
    scores = (
        {k: float(v) for k, v in scores.items() if isinstance(v, float) or _fits_float(v)}
        if isinstance(scores, dict)
        else {}
    )
    lang = meta.pop("lang", None)  # present in vlcurate's own shards
    image_ext = next((e for e in IMAGE_EXTENSIONS if e in files), None)
    span = None
    if image_ext and path is not None and offsets and image_ext in offsets:
        span = ImageSpan(path, offsets[image_ext], len(files[image_ext]))
    pair = Pair(
        uid=make_uid(source.name, key),
        source=source.name,
        caption=caption,
        caption_raw=caption,
        image=files[image_ext] if image_ext else None,
        image_ref=f"{tar}#{member_key}.{image_ext}" if image_ext and tar is not None else None,
        image_span=span,
        lang=lang if isinstance(lang, str) else None,
        scores=scores,
        meta=meta,
    )
    return pair


def pair_from_row(
    source: SourceConfig, row: dict[str, Any], fallback_key: str, file_dir: str, at: str | None = None
) -> Pair:
    """A Parquet/JSONL/CSV row. The image column holds bytes, an HF-datasets {bytes, path} struct, or a
    path (relative paths resolve against `image_root`, else the input file's folder). Bytes held in the
    row get `at` (where the row is, e.g. `file.parquet#row=17`) as their `image_ref`, so a rejected image
    can be found."""
    key_value = row.get(source.key_column)
    key = _replace_bad_bytes(str(key_value)) if key_value not in (None, "") else fallback_key
    caption = row.get(source.caption_column)
    if caption is None:
        caption = ""
    elif isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError:
            return _bad(source.name, key, "caption_bad_utf8")
    elif not isinstance(caption, str):
        caption = str(caption)
    if not encodable(caption):  # undecodable bytes a text reader carried through as surrogates
        return _bad(source.name, key, "caption_bad_utf8")
    image: bytes | None = None
    image_ref: str | None = None
    value = row.get(source.image_column) if source.image_column is not None else None
    if isinstance(value, dict):  # HF datasets Image feature: {"bytes": ..., "path": ...}
        image = value.get("bytes") or None
        image_ref = value.get("path") or None
    elif isinstance(value, (bytes, bytearray)):
        image = bytes(value) or None
    elif isinstance(value, str) and value:
        image_ref = value
    outside = None
    if image is None and image_ref is not None:
        root = source.image_root or file_dir
        image_ref = resolve_image_path(image_ref, root)
        outside = None if source.allow_outside_root else outside_root(image_ref, root)
    elif image is not None and at is not None:
        image_ref = at  # an HF {bytes, path} struct's path names the original file, not this copy
    own = {source.key_column, source.caption_column, source.image_column} - {None}
    meta = {k: _jsonable(v) for k, v in row.items() if k not in own}
    if outside is not None:  # never read: schemas/image_paths.py
        meta["error"] = outside
    return Pair(
        uid=make_uid(source.name, key),
        source=source.name,
        caption=caption,
        caption_raw=caption,
        image=image,
        image_ref=image_ref,
        reject="image_outside_root" if outside is not None else None,
        meta=meta,
    )


def _fits_float(value: Any) -> bool:
    """An int a score can hold (float() of a larger one raises OverflowError)."""
    return isinstance(value, int) and -(2**1023) < value < 2**1023


def _replace_bad_bytes(text: str) -> str:
    """Keys and passthrough fields keep their row: undecodable bytes become U+FFFD there (only the caption,
    which training reads, turns a row into a reject)."""
    if encodable(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates that are no carried bytes (from JSON escapes): U+FFFD too
        return _SURROGATES.sub("\ufffd", text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return _replace_bad_bytes(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {_replace_bad_bytes(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
