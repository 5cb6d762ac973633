"""Writers of kept shards and rejects. Shard membership and order depend only on uids.

A pair goes to shard `hash(uid) mod n`, with n = ceil(kept / pairs_per_shard) from a count side input,
and each shard is sorted by uid: byte-identical output for any number of workers, with one shuffle of the
records. Shards therefore hold pairs_per_shard on average, not exactly (hash buckets vary by about
sqrt(pairs_per_shard)).

Rejects go to `hash(uid) mod n` files too, but n comes from the input's size (one file per
BYTES_PER_BUCKET of input), known when the pipeline is built: counting the rejects first would hold every
reject back until all were counted.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.typehints import KV

from vlcurate.formatters.shard_images import StoredImage, stored_image
from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.pipelines.image_spans import SpanReader
from vlcurate.pipelines.output import atomic_writer, ensure_dir, join, write_bytes_atomic
from vlcurate.schemas.arrow import SORTED_JSON, kept_table, reject_table
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import Pair, stable_hash

REJECTS_PER_FILE = 50_000  # the SFT job's reject files (counted; rejects there are few)
# Input bytes per hash bucket (reject files, dedup buckets): a bucket stays far below a worker's memory,
# and a caption-only job of a few hundred MB is one bucket (no tiny elements to shuffle).
BYTES_PER_BUCKET = 256 * 2**20
MAX_BUCKETS = 65_536


def buckets_for_input(input_bytes: int) -> int:
    return max(1, min(MAX_BUCKETS, math.ceil(input_bytes / BYTES_PER_BUCKET)))


def shard_count(total: int, per_shard: int) -> int:
    return max(1, math.ceil(total / per_shard))


def shard_name(index: int, count: int) -> str:
    return f"{index:0{max(5, len(str(count - 1)))}d}"


def parquet_bytes(table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def sample_json(pair: Pair, key: str, stored: StoredImage | None = None) -> bytes:
    """The `.json` member: img2dataset's fields plus vlcurate's (uid, scores, sizes, and the format of the
    stored image next to the input's, `stored` being what the shard holds)."""
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
        "scores": pair.scores,  # SORTED_JSON sorts the keys of nested objects too
        "image_format": stored.format if stored is not None else None,
        "original_image_format": pair.image_format,
    }
    if stored is not None and stored.error is not None:
        fields["image_reencode_error"] = stored.error
    return SORTED_JSON.encode(fields).encode("utf-8")


def write_kept_shard(
    directory: str,
    index: int,
    count: int,
    per_shard: int,
    pairs: Iterable[Pair],
    score_names: Sequence[str],
    image_format: str = "jpg",
) -> dict:
    """Streams the tar to its file: images read back from their input files pass through one at a time.
    `score_names`: the run's (the Parquet twin's scores fields); `image_format`: output.image_format, "jpg"
    (images re-encoded where they are not JPEG, formatters/shard_images.py) or "keep"."""
    pairs = sorted(pairs, key=lambda p: p.uid)
    name = shard_name(index, count)
    width = max(4, len(str(per_shard)) + 1)
    keys = [f"{name}{i:0{width}d}" for i in range(len(pairs))]
    folder = join(directory, "shards")
    ensure_dir(folder)
    formats: list[str | None] = []  # what each stored image is
    with (
        atomic_writer(join(folder, f"{name}.tar")) as fh,
        TarShardWriter(fh) as writer,
        SpanReader() as images,
    ):
        for pair, key in zip(pairs, keys):
            image = images.image(pair)  # None for text-only sources
            stored = None if image is None else stored_image(image, pair.image_format, image_format != "keep")
            files = {"txt": pair.caption.encode("utf-8"), "json": sample_json(pair, key, stored)}
            if stored is not None:
                files = {stored.ext: stored.data, **files}
            formats.append(None if stored is None else stored.format)
            writer.add(key, files)
    table = kept_table(pairs, keys, score_names, formats)
    write_bytes_atomic(join(folder, f"{name}.parquet"), parquet_bytes(table))
    return {"shard": f"shards/{name}.tar", "metadata": f"shards/{name}.parquet", "pairs": len(pairs)}


def write_reject_file(
    directory: str,
    index: int,
    count: int,
    pairs: Iterable[Pair],
    score_names: Sequence[str],
    prefix: str = "rejects",
) -> dict:
    pairs = sorted(pairs, key=lambda p: p.uid)
    name = f"{prefix}-{shard_name(index, count)}.parquet"
    folder = join(directory, "rejects")
    ensure_dir(folder)
    write_bytes_atomic(join(folder, name), parquet_bytes(reject_table(pairs, score_names)))
    return {"file": f"rejects/{name}", "pairs": len(pairs)}


class _Bucket(beam.DoFn):
    """A batch -> (shard index, the batch's pairs in that shard)."""

    def __init__(self, per_shard: int) -> None:
        self.per_shard = per_shard

    def process(self, batch: PairBatch, total: int) -> Iterator[tuple[int, PairBatch]]:
        yield from split_by_uid(batch, shard_count(total, self.per_shard))


def split_by_uid(batch: PairBatch, count: int) -> Iterator[tuple[int, PairBatch]]:
    """(hash(uid) mod count, the batch's pairs in that bucket) for every non-empty bucket."""
    if count == 1:  # no hashing: a small job's kept pairs and rejects each go to one file
        if batch:
            yield 0, batch
        return
    parts: dict[int, PairBatch] = {}
    for pair in batch:
        parts.setdefault(stable_hash(pair.uid) % count, PairBatch()).append(pair)
    yield from parts.items()


def write_hash_buckets(rows, per_file: int, key, write, label: str):
    """Rows -> file `stable_hash(key(row)) mod n`, n = ceil(rows / per_file) from a count side input ->
    one `write(index, n, rows)` per file; outputs what `write` returns (manifest rows). The SFT and format
    jobs write their samples, packs and rejects this way."""
    total = rows | f"Count{label}" >> beam.combiners.Count.Globally()
    return (
        rows
        | f"Bucket{label}"
        >> beam.Map(
            lambda row, n: (stable_hash(key(row)) % shard_count(n, per_file), row),
            beam.pvalue.AsSingleton(total),
        )
        | f"Group{label}" >> beam.GroupByKey()
        | f"Write{label}"
        >> beam.Map(
            lambda kv, n: write(kv[0], shard_count(n, per_file), kv[1]), beam.pvalue.AsSingleton(total)
        )
    )


@beam.ptransform_fn
def CountPairs(batches):
    """The number of pairs in a PCollection of batches, as a singleton."""
    return batches | "Len" >> beam.Map(len) | "Sum" >> beam.CombineGlobally(sum)


def _pairs(parts: Iterable[PairBatch]) -> Iterator[Pair]:
    return itertools.chain.from_iterable(parts)


class WriteKeptShards(beam.PTransform):
    """Batches of kept pairs -> shards/NNNNN.tar + shards/NNNNN.parquet; outputs one manifest row per
    shard. `score_names` and `image_format`: see write_kept_shard."""

    def __init__(self, directory: str, per_shard: int, score_names: Sequence[str], image_format: str = "jpg"):
        super().__init__()
        self.directory, self.per_shard = directory, per_shard
        self.score_names, self.image_format = list(score_names), image_format

    def expand(self, pairs):
        total = pairs | "Count" >> CountPairs()
        directory, per_shard = self.directory, self.per_shard
        score_names, image_format = self.score_names, self.image_format
        return (
            pairs
            | "Bucket"
            >> beam.ParDo(_Bucket(per_shard), beam.pvalue.AsSingleton(total)).with_output_types(
                KV[int, PairBatch]
            )
            | "Group" >> beam.GroupByKey()
            | "Write"
            >> beam.Map(
                lambda kv, n: write_kept_shard(
                    directory,
                    kv[0],
                    shard_count(n, per_shard),
                    per_shard,
                    _pairs(kv[1]),
                    score_names,
                    image_format,
                ),
                beam.pvalue.AsSingleton(total),
            )
        )


class WriteRejects(beam.PTransform):
    """Batches of rejected pairs -> rejects/rejects-NNNNN.parquet; outputs one manifest row per file.
    `score_names`: the run's (the scores struct's fields)."""

    def __init__(self, directory: str, files: int, score_names: Sequence[str]) -> None:
        super().__init__()
        self.directory, self.files, self.score_names = directory, files, list(score_names)

    def expand(self, parts):
        """`parts`: one PCollection of batches, or several (bucketed each before they meet)."""
        directory, files, score_names = self.directory, self.files, self.score_names
        parts = parts if isinstance(parts, tuple) else (parts,)
        keyed = [
            part | f"Bucket/{i}" >> beam.FlatMap(split_by_uid, files).with_output_types(KV[int, PairBatch])
            for i, part in enumerate(parts)
        ]
        return (
            keyed
            | "Parts" >> beam.Flatten(pipeline=parts[0].pipeline)
            | "Group" >> beam.GroupByKey()
            | "Write"
            >> beam.Map(lambda kv: write_reject_file(directory, kv[0], files, _pairs(kv[1]), score_names))
        )
