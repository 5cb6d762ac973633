"""Where a record's image came from (`image_ref`), so that a rejected image can be found."""

import pyarrow as pa
import pyarrow.parquet as pq

from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.pipelines.read import read_file
from vlcurate.schemas.config import SourceConfig
from vlcurate.schemas.rows import pair_from_row, pair_from_sample

WDS = SourceConfig(name="web", format="webdataset", paths=["x"])
PARQUET = SourceConfig(name="web", format="parquet", paths=["x"])


def test_a_tar_sample_names_its_image_member():
    files = {"png": b"\x89PNG", "txt": b"a cat", "json": b"{}"}
    pair = pair_from_sample(WDS, "part/000123", files, tar="/data/shard-00003.tar")
    assert pair.image_ref == "/data/shard-00003.tar#part/000123.png"
    assert pair.uid == "web/000123"  # the key without the member's folder, as before
    missing = pair_from_sample(WDS, "000124", {"txt": b"a dog"}, tar="/data/shard-00003.tar")
    assert missing.image_ref is None  # no image member: nothing to point at


def test_a_parquet_row_with_image_bytes_names_its_row():
    row = {"key": "k1", "caption": "a cat", "image": b"\xff\xd8\xff"}
    assert pair_from_row(PARQUET, row, "f-1", "/data", "/data/f.parquet#row=17").image_ref == (
        "/data/f.parquet#row=17"
    )
    hf = {**row, "image": {"bytes": b"\xff\xd8\xff", "path": "cat.jpg"}}  # HF datasets' Image struct
    assert pair_from_row(PARQUET, hf, "f-1", "/data", "/data/f.parquet#row=17").image_ref == (
        "/data/f.parquet#row=17"
    )


def test_a_row_naming_an_image_file_keeps_the_file_and_a_row_without_image_has_none():
    named = {"key": "k1", "caption": "a cat", "image": "img/cat.jpg"}
    assert pair_from_row(PARQUET, named, "f-1", "/data", "/data/f.parquet#row=0").image_ref == (
        "/data/img/cat.jpg"
    )
    for empty in (None, b""):  # becomes image_missing; an image_ref would be fetched as a file
        row = {"key": "k2", "caption": "a dog", "image": empty}
        assert pair_from_row(PARQUET, row, "f-2", "/data", "/data/f.parquet#row=1").image_ref is None


def test_readers_record_the_file_and_the_member_or_row(tmp_path):
    tar = tmp_path / "shard-00003.tar"
    with open(tar, "wb") as fh, TarShardWriter(fh) as writer:
        writer.add("000000", {"txt": b"a", "webp": b"RIFF"})
        writer.add("000001", {"jpg": b"\xff\xd8\xff", "txt": b"b"})
    refs = [p.image_ref for p in read_file(WDS, str(tar))]
    assert refs == [f"{tar}#000000.webp", f"{tar}#000001.jpg"]
    table = pa.table({"key": ["a", "b", "c"], "caption": ["x", "y", "z"], "image": [b"1", None, b"3"]})
    pq.write_table(table, tmp_path / "rows.parquet")
    refs = [p.image_ref for p in read_file(PARQUET, str(tmp_path / "rows.parquet"))]
    assert refs == [f"{tmp_path}/rows.parquet#row=0", None, f"{tmp_path}/rows.parquet#row=2"]
