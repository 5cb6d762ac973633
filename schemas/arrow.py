"""Arrow schemas of what vlcurate writes: the metadata twin of each kept shard, and the rejects."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence

import pyarrow as pa

from vlcurate.schemas.record import Pair


def scores_type(score_names: Sequence[str]) -> pa.DataType:
    """A struct with one float64 field per score name of the run (filters/chain.py score_names), null
    where a pair has no such score. Not a map: HF datasets has no type for Arrow maps ("does not have a
    datasets dtype equivalent"). Every file of an output has the run's fields, so a whole directory loads
    as one dataset. Parquet cannot store a struct without fields: a run whose steps write no score gets a
    null column."""
    if not score_names:
        return pa.null()
    return pa.struct([(name, pa.float64()) for name in score_names])


def kept_schema(score_names: Sequence[str]) -> pa.Schema:
    """The metadata twin of a kept shard: one row per sample, in tar order."""
    return pa.schema(
        [
            ("key", pa.string()),  # the member name inside the shard's tar
            ("uid", pa.string()),
            ("source", pa.string()),
            ("caption", pa.string()),
            ("caption_raw", pa.string()),
            ("image_format", pa.string()),  # what the shard stores ("JPEG" unless output.image_format: keep)
            ("original_image_format", pa.string()),  # what the input held
            ("width", pa.int64()),  # int64: a header may claim any size (schemas/encoding.py)
            ("height", pa.int64()),
            ("lang", pa.string()),
            ("scores", scores_type(score_names)),
            ("meta", pa.string()),  # JSON: passthrough fields of the input
        ]
    )


def reject_schema(score_names: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [
            ("uid", pa.string()),
            ("source", pa.string()),
            ("reason", pa.string()),
            ("caption_raw", pa.string()),
            ("caption", pa.string()),
            ("lang", pa.string()),  # the caption language the language step found (per-language thresholds)
            ("image_ref", pa.string()),  # where the image is: a path, `file.tar#member`, `file.parquet#row=N`
            ("width", pa.int64()),  # int64: a header may claim any size (schemas/encoding.py)
            ("height", pa.int64()),
            ("scores", scores_type(score_names)),
            ("meta", pa.string()),
        ]
    )


# The JSON of written metadata (meta columns, shards' .json members): sorted keys, UTF-8, anything else as
# str. One encoder for all: json.dumps with these options builds a new one per call.
SORTED_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def meta_json(pair: Pair, other_scores: dict[str, float] | None = None) -> str:
    meta = {**pair.meta, "other_scores": other_scores} if other_scores else pair.meta
    return SORTED_JSON.encode(meta) if meta else "{}"


def _scores_columns(pairs: Sequence[Pair], score_names: Sequence[str]) -> tuple[pa.Array, list[str]]:
    """The scores column and the meta column. A score outside `score_names` (one an input written by an
    earlier run carried in, from a step this run leaves out) is kept in meta's `other_scores`, so no score
    is lost where the struct has no field for it."""
    known = frozenset(score_names)
    metas = [
        meta_json(p) if known.issuperset(p.scores) else meta_json(p, _others(p.scores, known)) for p in pairs
    ]
    if not score_names:
        return pa.nulls(len(pairs)), metas
    fields = [pa.array([p.scores.get(name) for p in pairs], pa.float64()) for name in score_names]
    return pa.StructArray.from_arrays(fields, names=list(score_names)), metas


def _others(scores: dict[str, float], known: frozenset[str]) -> dict[str, float]:
    return {name: value for name, value in scores.items() if name not in known}


# Columns built straight from the records, one getter per column: several times faster than a list of row
# dicts, and `map` with an attrgetter is twice as fast as a comprehension calling a lambda per record.
_ATTRIBUTES = (
    "uid",
    "source",
    "caption",
    "caption_raw",
    "lang",
    "image_ref",
    "width",
    "height",
)
_FIELDS = {
    **{name: operator.attrgetter(name) for name in _ATTRIBUTES},
    "reason": operator.attrgetter("reject"),
}


def _table(
    pairs: Sequence[Pair], schema: pa.Schema, score_names: Sequence[str], extra: dict[str, Sequence]
) -> pa.Table:
    scores, metas = _scores_columns(pairs, score_names)
    extra = {**extra, "scores": scores, "meta": metas}
    columns = {
        field.name: extra[field.name] if field.name in extra else list(map(_FIELDS[field.name], pairs))
        for field in schema
    }
    return pa.Table.from_pydict(columns, schema=schema)


def kept_table(
    pairs: Sequence[Pair],
    keys: Sequence[str],
    score_names: Sequence[str],
    image_formats: Sequence[str | None],
) -> pa.Table:
    """`image_formats`: what the shard stores for each pair (formatters/shard_images.py)."""
    if not len(keys) == len(image_formats) == len(pairs):
        raise ValueError("one key and one image format per pair")
    extra = {
        "key": list(keys),
        "image_format": list(image_formats),
        "original_image_format": [p.image_format for p in pairs],
    }
    return _table(pairs, kept_schema(score_names), score_names, extra)


def reject_table(pairs: Sequence[Pair], score_names: Sequence[str]) -> pa.Table:
    return _table(pairs, reject_schema(score_names), score_names, {})
