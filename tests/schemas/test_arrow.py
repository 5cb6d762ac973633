"""Arrow tables of kept shards' twins and rejects: `scores` is a struct of the run's score names."""

import json

import pyarrow as pa
import pytest

from vlcurate.schemas.arrow import kept_table, reject_table, scores_type
from vlcurate.schemas.record import Pair

NAMES = ["n_chars", "lang_prob", "clip"]


def _pair(i: int, scores: dict, **kw) -> Pair:
    return Pair(uid=f"web/{i}", source="web", caption=f"a dog {i}", scores=scores, **kw)


def test_scores_is_a_struct_of_the_run_names_with_null_where_a_pair_has_none():
    pairs = [
        _pair(0, {"n_chars": 8, "lang_prob": 0.9, "clip": 0.31}),
        _pair(1, {"n_chars": 5}, reject="too_short"),  # the chain stopped before the other steps
    ]
    table = reject_table(pairs, NAMES)
    assert table.schema.field("scores").type == pa.struct([(n, pa.float64()) for n in NAMES])
    assert table.column("scores").to_pylist() == [
        {"n_chars": 8.0, "lang_prob": 0.9, "clip": 0.31},
        {"n_chars": 5.0, "lang_prob": None, "clip": None},
    ]
    assert [json.loads(m) for m in table.column("meta").to_pylist()] == [{}, {}]


def test_every_file_of_a_run_has_one_schema_whatever_its_pairs_hold():
    first = kept_table([_pair(0, {"clip": 0.5})], ["k0"], NAMES, ["JPEG"])
    second = kept_table([_pair(1, {"n_chars": 3, "lang_prob": 1.0})], ["k1"], NAMES, [None])
    empty = kept_table([], [], NAMES, [])
    assert first.schema == second.schema == empty.schema
    assert pa.concat_tables([first, second, empty]).num_rows == 2


def test_a_score_outside_the_run_names_is_kept_in_meta():
    # e.g. an input written by an earlier run carries `n_emoji`, and this run disables `emoji`
    pair = _pair(0, {"n_emoji": 2, "clip": 0.4}, meta={"url": "u"})
    (row,) = reject_table([pair], NAMES).to_pylist()
    assert row["scores"] == {"n_chars": None, "lang_prob": None, "clip": 0.4}
    assert json.loads(row["meta"]) == {"url": "u", "other_scores": {"n_emoji": 2}}
    assert pair.meta == {"url": "u"}  # the record itself is left alone


def test_a_run_without_scores_has_a_null_column():
    # Parquet cannot store a struct without fields.
    assert scores_type([]) == pa.null()
    table = reject_table([_pair(0, {}), _pair(1, {"clip": 0.2})], [])
    assert table.column("scores").to_pylist() == [None, None]
    assert json.loads(table.column("meta")[1].as_py()) == {"other_scores": {"clip": 0.2}}


def test_kept_rows_record_the_stored_and_the_original_image_format():
    pairs = [_pair(0, {}, image_format="PNG"), _pair(1, {}, image_format="JPEG")]
    rows = kept_table(pairs, ["000", "001"], NAMES, ["JPEG", "JPEG"]).to_pylist()
    assert [(r["key"], r["image_format"], r["original_image_format"]) for r in rows] == [
        ("000", "JPEG", "PNG"),
        ("001", "JPEG", "JPEG"),
    ]
    with pytest.raises(ValueError, match="one key and one image format per pair"):
        kept_table(pairs, ["000"], NAMES, ["JPEG"])
