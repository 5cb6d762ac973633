"""Writers of kept shards and rejects. Shard membership and order depend only on uids.

A pair goes to shard `hash(uid) mod n`, with n = ceil(kept / pairs_per_shard) from a count side input,
and each shard is sorted by uid: byte-identical output for any number of workers, with one shuffle of the
records. Shards therefore hold pairs_per_shard on average, not exactly (hash buckets vary by about
sqrt(pairs_per_shard)).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow.parquet as pq

from vlcurate.formatters.webdataset import EXTENSION_OF_FORMAT, TarShardWriter
from vlcurate.pipelines.output import ensure_dir, join, write_bytes_atomic
from vlcurate.schemas.arrow import kept_table, reject_table
from vlcurate.schemas.record import Pair, stable_hash

REJECTS_PER_FILE = 50_000


def shard_count(total: int, per_shard: int) -> int:
    return max(1, math.ceil(total / per_shard))


def shard_name(index: int, count: int) -> str:
    return f"{index:0{max(5, len(str(count - 1)))}d}"


def parquet_bytes(table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def sample_json(pair: Pair, key: str) -> bytes:
    """The `.json` member: img2dataset's fields plus vlcurate's (uid, scores, sizes)."""
    fields = {
        **pair.meta,
        "key": key,
        "uid": pair.uid,
        "source": pair.source,
        "caption": pair.caption,
        "caption_raw": pair.caption_raw,
        "width": pair.width,
        "height": pair.height,
        "lang": pair.lang,
        "scores": dict(sorted(pair.scores.items())),
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")


def write_kept_shard(directory: str, index: int, count: int, per_shard: int, pairs: Iterable[Pair]) -> dict:
    pairs = sorted(pairs, key=lambda p: p.uid)
    name = shard_name(index, count)
    width = max(4, len(str(per_shard)) + 1)
    keys = [f"{name}{i:0{width}d}" for i in range(len(pairs))]
    tar = io.BytesIO()
    with TarShardWriter(tar) as writer:
        for pair, key in zip(pairs, keys):
            files = {"txt": pair.caption.encode("utf-8"), "json": sample_json(pair, key)}
            if pair.image is not None:  # text-only sources have none
                files = {EXTENSION_OF_FORMAT.get(pair.image_format or "", "img"): pair.image, **files}
            writer.add(key, files)
    folder = join(directory, "shards")
    ensure_dir(folder)
    write_bytes_atomic(join(folder, f"{name}.tar"), tar.getvalue())
    write_bytes_atomic(join(folder, f"{name}.parquet"), parquet_bytes(kept_table(pairs, keys)))
    return {"shard": f"shards/{name}.tar", "metadata": f"shards/{name}.parquet", "pairs": len(pairs)}


def write_reject_file(directory: str, index: int, count: int, pairs: Iterable[Pair]) -> dict:
    pairs = sorted(pairs, key=lambda p: p.uid)
    name = f"rejects-{shard_name(index, count)}.parquet"
    folder = join(directory, "rejects")
    ensure_dir(folder)
    write_bytes_atomic(join(folder, name), parquet_bytes(reject_table(pairs)))
    return {"file": f"rejects/{name}", "pairs": len(pairs)}


class _Bucket(beam.DoFn):
    def __init__(self, per_shard: int) -> None:
        self.per_shard = per_shard

    def process(self, pair: Pair, total: int) -> Iterator[tuple[int, Pair]]:
        yield stable_hash(pair.uid) % shard_count(total, self.per_shard), pair


class WriteKeptShards(beam.PTransform):
    """Kept pairs -> shards/NNNNN.tar + shards/NNNNN.parquet; outputs one manifest row per shard."""

    def __init__(self, directory: str, per_shard: int) -> None:
        super().__init__()
        self.directory, self.per_shard = directory, per_shard

    def expand(self, pairs):
        total = pairs | "Count" >> beam.combiners.Count.Globally()
        directory, per_shard = self.directory, self.per_shard
        return (
            pairs
            | "Bucket" >> beam.ParDo(_Bucket(per_shard), beam.pvalue.AsSingleton(total))
            | "Group" >> beam.GroupByKey()
            | "Write"
            >> beam.Map(
                lambda kv, n: write_kept_shard(directory, kv[0], shard_count(n, per_shard), per_shard, kv[1]),
                beam.pvalue.AsSingleton(total),
            )
        )


class WriteRejects(beam.PTransform):
    """Rejected pairs -> rejects/rejects-NNNNN.parquet; outputs one manifest row per file."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def expand(self, pairs):
        total = pairs | "Count" >> beam.combiners.Count.Globally()
        directory = self.directory
        return (
            pairs
            | "Bucket" >> beam.ParDo(_Bucket(REJECTS_PER_FILE), beam.pvalue.AsSingleton(total))
            | "Group" >> beam.GroupByKey()
            | "Write"
            >> beam.Map(
                lambda kv, n: write_reject_file(directory, kv[0], shard_count(n, REJECTS_PER_FILE), kv[1]),
                beam.pvalue.AsSingleton(total),
            )
        )
