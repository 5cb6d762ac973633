"""`vlcurate check` of one sample of a `clean` shard: the tar members `<key>.<image ext>`, `<key>.txt`,
`<key>.json` (pipelines/write.py) against the Parquet twin row at the same position.

Reasons (formatters/check_findings.py STRUCTURAL_REASONS):
- `image_missing`: no image member; `bad_members`: no .txt or .json, several images, other members, or
  a member that is no regular file;
- `bad_json`: the .json is not a JSON object;
- `twin_differs`: no twin row, or the twin's key, uid, caption, width, height differ from the tar's;
- `txt_differs`: the .txt (UTF-8) is not the caption of the .json;
- `special_tokens`: a caption (.txt, .json, twin) holds a special-token string;
- the image's own problem (formatters/check_images.py: `image_undecodable`, `image_truncated`,
  `too_many_pixels`); `image_size_mismatch`: the decoded size after EXIF orientation is not the stored
  width x height (clean records the oriented size: filters/image_probe.py header_size).
Each clean image is distinct, so the image is decoded here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlcurate.formatters.check_findings import Problem, first_per_reason
from vlcurate.formatters.check_images import check_image_size
from vlcurate.model.qwen_tokenizer import find_special_tokens
from vlcurate.schemas.image_header import PIL_MAX_IMAGE_PIXELS
from vlcurate.schemas.record import IMAGE_EXTENSIONS
from vlcurate.schemas.rows import parse_json

_TEXT_MEMBERS = ("txt", "json")
_TWIN_FIELDS = ("uid", "caption", "width", "height")


def _members(key: str, members: Mapping[str, Any]) -> tuple[list[Problem], bytes | None]:
    """Problems of the member set, and the image bytes (None when there is no single image)."""
    problems = []
    odd = sorted(ext for ext, data in members.items() if not isinstance(data, bytes))
    if odd:
        problems.append(Problem("bad_members", f"{key}: not regular files: {', '.join(odd)}"))
    images = [ext for ext in members if ext in IMAGE_EXTENSIONS and isinstance(members[ext], bytes)]
    missing = [ext for ext in _TEXT_MEMBERS if not isinstance(members.get(ext), bytes)]
    extra = sorted(set(members) - set(IMAGE_EXTENSIONS) - set(_TEXT_MEMBERS))
    if missing or extra or len(images) > 1:
        what = [f"no .{ext}" for ext in missing] + [f"extra .{ext}" for ext in extra]
        what += [f"images {', '.join(images)}"] if len(images) > 1 else []
        problems.append(Problem("bad_members", f"{key}: {'; '.join(what)}"))
    if not images:
        problems.append(Problem("image_missing", f"{key}: no image member"))
        return problems, None
    return problems, members[images[0]]


def _twin(key: str, fields: Mapping[str, Any], twin_row: Mapping | None) -> Problem | None:
    if twin_row is None:
        return Problem("twin_differs", f"{key}: no Parquet twin row at this position")
    if twin_row.get("key") != key:
        return Problem("twin_differs", f"the twin row is {twin_row.get('key')!r}, the tar sample {key!r}")
    for name in _TWIN_FIELDS:
        if name in fields and fields[name] != twin_row.get(name):
            return Problem(
                "twin_differs", f"{key}: {name} {fields[name]!r} in .json, {twin_row.get(name)!r} in twin"
            )
    return None


def check_clean_sample(
    key: str, members: Mapping[str, bytes], twin_row: Mapping | None, max_pixels: int = PIL_MAX_IMAGE_PIXELS
) -> list[Problem]:
    """Every problem of one tar sample (members: extension -> bytes) and its twin row (None: none)."""
    problems, image = _members(key, members)
    fields: dict[str, Any] = {}
    if isinstance(members.get("json"), bytes):
        value, error = parse_json(members["json"])
        if isinstance(value, dict):
            fields = value
            if fields.get("key", key) != key:
                problems.append(Problem("twin_differs", f"the .json names key {fields.get('key')!r}"))
        else:
            problems.append(Problem("bad_json", f"{key}: {error or 'not a JSON object'}"))
    problems.append(_twin(key, fields, twin_row))
    captions = [fields.get("caption"), (twin_row or {}).get("caption")]
    if isinstance(members.get("txt"), bytes):
        try:
            txt = members["txt"].decode("utf-8")
        except UnicodeDecodeError:
            txt = None
        captions.append(txt)
        if "caption" in fields and txt != fields["caption"]:
            problems.append(Problem("txt_differs", f"{key}: .txt {txt!r} is not the caption"[:300]))
    for caption in captions:
        found = find_special_tokens(caption) if isinstance(caption, str) else []
        if found:
            problems.append(Problem("special_tokens", f"{key}: caption holds {found[0]}"))
    if image is not None:
        problem, size = check_image_size(image, max_pixels)
        problems.append(problem)
        stored = (fields.get("width"), fields.get("height")) if fields else _stored_size(twin_row)
        if size is not None and size != stored:
            problems.append(
                Problem("image_size_mismatch", f"{key}: decoded {size[0]}x{size[1]}, stored {stored}")
            )
    return first_per_reason(problems)


def _stored_size(twin_row: Mapping | None) -> tuple[Any, Any]:
    return (twin_row.get("width"), twin_row.get("height")) if twin_row else (None, None)
