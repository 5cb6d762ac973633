"""Input rows to Pair records: plain Python shared by every reader.

A row is a dict (a Parquet row, a JSONL object, a CSV line) or a WebDataset sample ({ext: bytes}).
Trouble in a row becomes a rejected Pair with a reason, never an exception.
"""

from __future__ import annotations

import json
from typing import Any

from vlcurate.schemas.config import SourceConfig
from vlcurate.schemas.image_paths import outside_root, resolve_image_path
from vlcurate.schemas.record import IMAGE_EXTENSIONS, ImageSpan, Pair, make_uid

# JSON metadata keys img2dataset writes that vlcurate tracks itself; everything else passes through.
_WDS_OWN_KEYS = ("key", "caption")


def _bad(source: str, key: str, reason: str, **meta: Any) -> Pair:
    return Pair(uid=make_uid(source, key), source=source, reject=reason, meta=meta)


def pair_from_sample(
    source: SourceConfig,
    key: str,
    files: dict[str, bytes],
    path: str | None = None,
    offsets: dict[str, int] | None = None,
    tar: str | None = None,
) -> Pair:
    """A WebDataset sample (`key.jpg` + `key.txt` + `key.json`) as img2dataset writes it. With the tar's
    `path` and the members' `offsets` in it, the image's ImageSpan is recorded; with the tar's name as
    read (`tar`), the image's `image_ref` is `<tar>#<member>`, so a rejected image can be found."""
    member_key, key = key, key.rsplit("/", 1)[-1]
    meta: dict[str, Any] = {}
    if "json" in files:
        try:
            loaded = json.loads(files["json"])
            if isinstance(loaded, dict):
                meta = {k: v for k, v in loaded.items() if k not in _WDS_OWN_KEYS}
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = {"json_error": "unparseable .json member"}
    try:
        caption = files.get("txt", b"").decode("utf-8")
    except UnicodeDecodeError:
        return _bad(source.name, key, "caption_bad_utf8", **meta)
    # vlcurate's own shards carry scores: re-reading them lets thresholds be re-tuned without the GPU step.
    scores = meta.pop("scores", None)
    scores = (
        {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}
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
    if not _utf8_clean(caption):  # undecodable bytes a text reader carried through as surrogates
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


def _utf8_clean(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _replace_bad_bytes(text: str) -> str:
    """Keys and passthrough fields keep their row: undecodable bytes become U+FFFD there (only the caption,
    which training reads, turns a row into a reject)."""
    if _utf8_clean(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return _replace_bad_bytes(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
