"""Kept images dropped from records and read back by the shard writer (pipelines/image_spans.py)."""

import gzip
import os
import zlib

import pytest

from vlcurate.filters.dedup import content_key
from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.pipelines import write
from vlcurate.pipelines.image_spans import (
    ImageChangedError,
    SpanReader,
    detach_images,
    read_span,
    rereadable_path,
)
from vlcurate.pipelines.read import read_file
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.config import SourceConfig
from vlcurate.schemas.record import ImageSpan, Pair, image_digest
from vlcurate.tests.pipelines.helpers import output_files, run, synth_config

IMAGES = [b"\xff\xd8first", b"\xff\xd8the second image", b"\x89PNG third"]


@pytest.fixture
def stored(tmp_path):
    """IMAGES at known offsets of one file, and one pair per image carrying its bytes and span."""
    path = str(tmp_path / "images.bin")
    pairs, offset = PairBatch(), 0
    with open(path, "wb") as fh:
        for i, image in enumerate(IMAGES):
            fh.write(b"-" * 7)  # other bytes between images
            offset += 7
            fh.write(image)
            pairs.append(
                Pair(uid=f"s/{i}", source="s", image=image, image_span=ImageSpan(path, offset, len(image)))
            )
            offset += len(image)
    return path, pairs


def test_rereadable_paths_are_local_and_uncompressed(tmp_path):
    assert rereadable_path("gs://bucket/shard.tar") is None
    assert rereadable_path(str(tmp_path / "shard.tar.gz")) is None
    assert rereadable_path("relative/shard.tar") == os.path.abspath("relative/shard.tar")


def test_detached_images_are_read_back_byte_for_byte(stored):
    _, pairs = stored
    unspanned = Pair(uid="s/x", source="s", image=b"parquet bytes")  # no span: carried as is
    detach_images(PairBatch([*pairs, unspanned]))
    assert [p.image for p in pairs] == [None, None, None]
    assert [p.image_span.crc32 for p in pairs] == [zlib.crc32(i) for i in IMAGES]
    assert [p.image_span.digest for p in pairs] == ["", "", ""]  # only computed for dedup
    assert unspanned.image == b"parquet bytes"
    with SpanReader() as reader:
        assert [reader.image(p) for p in reversed([*pairs, unspanned])] == [b"parquet bytes", *IMAGES[::-1]]
        assert reader.image(Pair(uid="s/t", source="s")) is None  # caption-only
    assert read_span(pairs[1].image_span) == IMAGES[1]


def test_the_reader_keeps_a_bounded_number_of_files_open(tmp_path, monkeypatch):
    monkeypatch.setattr(SpanReader, "MAX_OPEN", 2)
    pairs = []
    for i in range(5):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(b"xx" + IMAGES[i % 3])
        pairs.append(
            Pair(
                uid=f"s/{i}",
                source="s",
                image=IMAGES[i % 3],
                image_span=ImageSpan(str(path), 2, len(IMAGES[i % 3])),
            )
        )
    detach_images(pairs)
    with SpanReader() as reader:
        for _ in range(2):  # files evicted on the first pass are opened again on the second
            assert [reader.image(p) for p in pairs] == [IMAGES[i % 3] for i in range(5)]
            assert len(reader._files) == 2


def test_dedup_sees_the_same_image_with_or_without_its_bytes(stored):
    _, pairs = stored
    carried = Pair(uid="t/0", source="t", image=IMAGES[0])
    detach_images(pairs[:1], with_digest=True)
    assert pairs[0].image_span.digest == image_digest(IMAGES[0])
    assert content_key(pairs[0]) == content_key(carried)
    carried.caption = "another caption"
    assert content_key(pairs[0]) != content_key(carried)


def test_an_input_changed_during_the_run_fails_the_write_loudly(stored, tmp_path):
    path, pairs = stored
    detach_images(pairs)
    with open(path, "r+b") as fh:
        fh.seek(pairs[1].image_span.offset + 3)
        fh.write(b"X")
    with pytest.raises(ImageChangedError, match=r"images\.bin changed while the run was going.*s/1"):
        write.write_kept_shard(str(tmp_path / "out"), 0, 1, 10, pairs, [])
    assert os.listdir(tmp_path / "out" / "shards") == []  # no shard, not even a partial one
    os.remove(path)
    with pytest.raises(ImageChangedError, match=r"cannot reopen input file .*images\.bin"):
        read_span(pairs[0].image_span)


@pytest.mark.parametrize("fmt", ["webdataset", "jsonl", "parquet"])
def test_rereading_kept_images_changes_no_output_byte(synth_dir, tmp_path, monkeypatch, fmt):
    # WebDataset tars, image folders and Parquet image columns are read back.
    read_back = []

    def counting_image(reader, pair):
        if pair.image is None and pair.image_span is not None:
            read_back.append(pair.uid)
        return original_image(reader, pair)

    original_image = SpanReader.image
    monkeypatch.setattr(SpanReader, "image", counting_image)
    outs = {}
    for reread in (True, False):
        config = synth_config(
            synth_dir, fmt, str(tmp_path / f"out-{reread}"), disable=["clip_score", "clip_filter"]
        )
        config.output.reread_images = reread
        stats = run(config)
        outs[reread] = output_files(config.output.dir)
        if reread:
            assert len(set(read_back)) == len(read_back) == stats["totals"]["kept"]
            read_back.clear()
        else:
            assert read_back == []
    assert sorted(outs[True]) == sorted(outs[False])
    assert [name for name in outs[True] if outs[True][name] != outs[False][name]] == []


def test_readers_record_spans_only_where_offsets_address_the_file(tmp_path):
    plain, packed = tmp_path / "a.tar", tmp_path / "b.tar.gz"
    with open(plain, "wb") as fh, TarShardWriter(fh) as writer:
        for i, image in enumerate(IMAGES):
            writer.add(f"{i:03d}", {"txt": b"a caption", "jpg": image})
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    source = SourceConfig(name="w", format="webdataset", paths=[str(plain)])
    pairs = list(read_file(source, str(plain)))
    assert [p.image for p in pairs] == IMAGES
    data = plain.read_bytes()
    assert [data[p.image_span.offset : p.image_span.offset + p.image_span.length] for p in pairs] == IMAGES
    assert {p.image_span.path for p in pairs} == {str(plain)}
    compressed = list(read_file(source, str(packed)))
    assert [p.image for p in compressed] == IMAGES
    assert [p.image_span for p in compressed] == [None, None, None]


def test_parquet_images_are_read_back_by_row_group_and_row_in_any_order(tmp_path):
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [b"\xff\xd8" + bytes([i]) * (100 + i) for i in range(40)]
    path = tmp_path / "rows.parquet"
    hf = pa.array([{"bytes": image, "path": f"{i}.jpg"} for i, image in enumerate(images)])
    table = pa.table({"key": [f"{i:02d}" for i in range(40)], "caption": ["a caption"] * 40, "image": hf})
    pq.write_table(table, path, row_group_size=15)  # row groups of 15, 15 and 10 rows
    source = SourceConfig(name="p", format="parquet", paths=[str(path)])
    pairs = list(read_file(source, str(path)))
    assert [(p.image_span.row_group, p.image_span.offset) for p in pairs[14:17]] == [(0, 14), (1, 0), (1, 1)]
    assert [p.image_ref for p in pairs[:2]] == [f"{path}#row=0", f"{path}#row=1"]
    detach_images(pairs)
    assert all(p.image is None for p in pairs)
    shuffled = random.Random(3).sample(pairs, len(pairs))  # keys in no row order: still one pass
    with SpanReader(shuffled[:30]) as reader:
        assert [reader.image(p) for p in shuffled] == [images[int(p.key)] for p in shuffled]
    assert read_span(pairs[33].image_span) == images[33]
    pq.write_table(table.slice(0, 20), path)  # the input changed under the run
    with (
        pytest.raises(ImageChangedError, match=r"rows\.parquet changed while the run was going"),
        SpanReader(pairs) as reader,
    ):
        [reader.image(p) for p in pairs]
