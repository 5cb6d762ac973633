"""Fuzz: random captions, JSON values and bytes through the real `vlcurate clean`.

Whatever the input, the job completes, every record is either kept or rejected with a reason
(input == kept + rejects, counted in stats.json and in the files written), and a second run writes the same
bytes. Each example runs a whole pipeline (about a second), so the example counts are small; hypothesis
keeps the failing example it found in its database only for the session (no cache folder is written).
"""

from __future__ import annotations

import io
import json
import os
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlcurate.cli import main
from vlcurate.pipelines.output import COMPLETED
from vlcurate.tests.pipelines.helpers import jpeg, kept_rows, output_files, reject_rows

pytestmark = pytest.mark.slow

NO_CLIP = ["--disable", "clip_score,clip_filter", "--no-progress"]
FUZZ = settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Every code point, lone surrogates included (they reach JSON as "\ud800" escapes).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=8,
)
GOOD_JPEG = jpeg(320, 240)
image_bytes = st.sampled_from(
    [GOOD_JPEG, GOOD_JPEG[: len(GOOD_JPEG) // 2], b"", b"not an image"]
) | st.binary(max_size=64)
records = st.lists(
    st.fixed_dictionaries(
        {
            "caption": any_text
            | st.sampled_from(["A blue square on a white wall", "一只猫坐在沙发上看着窗外"]),
            "image": image_bytes,
        },
        optional={"extra": json_values},
    ),
    min_size=1,
    max_size=6,
)


def clean(out, *args: str) -> dict:
    code = main(["clean", "--input", *args, "--output", str(out), *NO_CLIP])
    assert code == 0
    assert os.path.exists(os.path.join(out, COMPLETED))
    with open(os.path.join(out, "stats.json")) as fh:
        totals = json.load(fh)["totals"]
    # The files agree with the counts: nothing counted that was not written, nothing written uncounted.
    assert totals["kept"] == len(kept_rows(str(out)))
    assert totals["rejected"] == len(reject_rows(str(out)))
    assert totals["read"] == totals["kept"] + totals["rejected"]
    return totals


def write_jsonl(folder, rows: list[dict]) -> str:
    os.makedirs(folder / "images", exist_ok=True)
    lines = []
    for i, row in enumerate(rows):
        (folder / "images" / f"k{i}.jpg").write_bytes(row["image"])
        record = {"key": f"k{i}", "caption": row["caption"], "image": f"images/k{i}.jpg"}
        if "extra" in row:
            record["extra"] = row["extra"]
        lines.append(json.dumps(record))  # ensure_ascii: lone surrogates become \ud800 escapes
    path = folder / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@FUZZ
@given(rows=records)
def test_random_jsonl_records_are_each_kept_or_rejected(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("jsonl")
    path = write_jsonl(folder, rows)
    totals = clean(folder / "out", path)
    assert totals["read"] == len(rows)
    again = clean(folder / "again", path)
    assert again == totals
    assert output_files(str(folder / "out")) == output_files(str(folder / "again"))


@FUZZ
@given(
    rows=records,
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_byte_mutations_of_a_jsonl_file_never_fail_the_job(tmp_path_factory, rows, flips):
    folder = tmp_path_factory.mktemp("mutated")
    path = pathlib.Path(write_jsonl(folder, rows))
    data = bytearray(path.read_bytes())
    for offset, value in flips:
        data[offset % len(data)] = value
    path.write_bytes(bytes(data))
    # Each non-blank line is one record: a line that no longer parses is one reject, not the file's end.
    # Lines end at \n, \r or \r\n, as a text file read with universal newlines.
    text = io.TextIOWrapper(io.BytesIO(bytes(data)), encoding="utf-8", errors="surrogateescape", newline="")
    lines = [line for line in text if line.strip()]
    totals = clean(folder / "out", str(path))
    assert totals["read"] == len(lines)


@FUZZ
@given(rows=records, cut=st.none() | st.integers(0, 10**6))
def test_whole_and_truncated_tars_never_fail_the_job(tmp_path_factory, rows, cut):
    from vlcurate.formatters.webdataset import TarShardWriter

    folder = tmp_path_factory.mktemp("tar")
    path = folder / "shard.tar"
    with open(path, "wb") as fh, TarShardWriter(fh) as writer:
        for i, row in enumerate(rows):
            members = {"txt": row["caption"].encode("utf-8", "surrogatepass")}
            if "extra" in row:
                members["json"] = json.dumps({"extra": row["extra"]}).encode()
            if row["image"]:
                members["jpg"] = row["image"]
            writer.add(f"{i:05d}", members)
    if cut is None:
        assert clean(folder / "out", str(path))["read"] == len(rows)
        return
    data = path.read_bytes()
    path.write_bytes(data[: cut % (len(data) + 1)])
    totals = clean(folder / "out", str(path))
    # The samples read whole before the cut, and at most one file_unreadable reject for the broken rest.
    assert totals["read"] <= len(rows) + 1
