"""Arrow schemas of what vlcurate writes: the metadata twin of each kept shard, and the rejects."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

from vlcurate.schemas.record import Pair

SCORES = pa.map_(pa.string(), pa.float64())

KEPT_SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # the member name inside the shard's tar
        ("uid", pa.string()),
        ("source", pa.string()),
        ("caption", pa.string()),
        ("caption_raw", pa.string()),
        ("image_format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("lang", pa.string()),
        ("scores", SCORES),
        ("meta", pa.string()),  # JSON: passthrough fields of the input
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("source", pa.string()),
        ("reason", pa.string()),
        ("caption_raw", pa.string()),
        ("caption", pa.string()),
        ("image_ref", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("scores", SCORES),
        ("meta", pa.string()),
    ]
)


def meta_json(pair: Pair) -> str:
    return json.dumps(pair.meta, sort_keys=True, ensure_ascii=False, default=str)


def _scores(pair: Pair) -> list[tuple[str, float]]:
    return sorted(pair.scores.items())


def kept_table(pairs: Sequence[Pair], keys: Sequence[str]) -> pa.Table:
    rows = [
        {
            "key": key,
            "uid": p.uid,
            "source": p.source,
            "caption": p.caption,
            "caption_raw": p.caption_raw,
            "image_format": p.image_format,
            "width": p.width,
            "height": p.height,
            "lang": p.lang,
            "scores": _scores(p),
            "meta": meta_json(p),
        }
        for p, key in zip(pairs, keys, strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=KEPT_SCHEMA)


def reject_table(pairs: Sequence[Pair]) -> pa.Table:
    rows = [
        {
            "uid": p.uid,
            "source": p.source,
            "reason": p.reject,
            "caption_raw": p.caption_raw,
            "caption": p.caption,
            "image_ref": p.image_ref,
            "width": p.width,
            "height": p.height,
            "scores": _scores(p),
            "meta": meta_json(p),
        }
        for p in pairs
    ]
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)
