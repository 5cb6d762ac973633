"""Arrow schemas of what vlcurate writes: the metadata twin of each kept shard, and the rejects."""

from __future__ import annotations

import json
import operator
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


# The JSON of written metadata (meta columns, shards' .json members): sorted keys, UTF-8, anything else as
# str. One encoder for all: json.dumps with these options builds a new one per call.
SORTED_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def meta_json(pair: Pair) -> str:
    return SORTED_JSON.encode(pair.meta) if pair.meta else "{}"


def _scores_array(pairs: Sequence[Pair]) -> pa.MapArray:
    """The scores column. Entries keep the order the steps wrote them in, which is the same for every
    run and worker count (the chain's order), so no per-row sort is needed."""
    offsets, keys, values = [0], [], []
    for pair in pairs:
        keys.extend(pair.scores)
        values.extend(pair.scores.values())
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.float64())
    )


# Columns built straight from the records, one getter per column: several times faster than a list of row
# dicts, and `map` with an attrgetter is twice as fast as a comprehension calling a lambda per record.
_ATTRIBUTES = (
    "uid",
    "source",
    "caption",
    "caption_raw",
    "lang",
    "image_ref",
    "image_format",
    "width",
    "height",
)
_FIELDS = {
    **{name: operator.attrgetter(name) for name in _ATTRIBUTES},
    "reason": operator.attrgetter("reject"),
    "meta": meta_json,
}


def _table(pairs: Sequence[Pair], schema: pa.Schema, extra: dict[str, Sequence] | None = None) -> pa.Table:
    extra = {**(extra or {}), "scores": _scores_array(pairs)}
    columns = {
        field.name: extra[field.name] if field.name in extra else list(map(_FIELDS[field.name], pairs))
        for field in schema
    }
    return pa.Table.from_pydict(columns, schema=schema)


def kept_table(pairs: Sequence[Pair], keys: Sequence[str]) -> pa.Table:
    if len(keys) != len(pairs):
        raise ValueError("one key per pair")
    return _table(pairs, KEPT_SCHEMA, {"key": list(keys)})


def reject_table(pairs: Sequence[Pair]) -> pa.Table:
    return _table(pairs, REJECT_SCHEMA)
