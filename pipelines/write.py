"""Writers of kept shards and rejects. Shard membership and order depend only on uids.

A pair goes to shard `hash(uid) mod n`, with n = ceil(kept / pairs_per_shard) from a count side input,
and each shard is sorted by uid: byte-identical output for any number of workers, with one shuffle of the
records. Shards therefore hold pairs_per_shard on average, not exactly (hash buckets vary by about
sqrt(pairs_per_shard)).

Rejects go to `hash(uid) mod n` files too, but n comes from the input's size (one file per
BYTES_PER_BUCKET of input), known when the pipeline is built: counting the rejects first would hold every
reject back until all were counted.

Uids are unique in the shards: all kept copies of a uid (a tar that reuses a key, two rows with the same
key_column value) meet in one shard's group, where every copy but one becomes a `duplicate_uid` reject
(unique_uids), written beside the shards to rejects/uid-duplicates-NNNNN.parquet and counted there. Two
rejects may share a uid; a reject file orders them by their whole row after the uid (sort_rows), so
neither case lets arrival order, and so the number of workers, change a byte. Every text written goes
through schemas/encoding.py first (make_writable): a string UTF-8 cannot encode never fails a writer.

With output.embeddings, each shard's kept pairs that carry a CLIP image embedding have it written beside
the shard, in the shard's order (pipelines/embeddings_store.py); a shard without any has no such files.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.typehints import KV

from vlcurate.formatters.shard_images import StoredImage, stored_image
from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.pipelines import embeddings_store
from vlcurate.pipelines.image_spans import SpanReader
from vlcurate.pipelines.output import atomic_writer, ensure_dir, join, write_bytes_atomic
from vlcurate.pipelines.steps import STATS, as_rejects, in_global_window, publish_counters, thumbnail_maker
from vlcurate.schemas.arrow import SORTED_JSON, kept_table, reject_table
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.embedding import vector_of
from vlcurate.schemas.encoding import make_writable, utf8
from vlcurate.schemas.record import Pair, image_digest, stable_hash
from vlcurate.schemas.stats import RunStats

REJECTS_PER_FILE = 50_000  # the SFT job's reject files (counted; rejects there are few)
# Input bytes per hash bucket (reject files, dedup buckets): a bucket stays far below a worker's memory,
# and a caption-only job of a few hundred MB is one bucket (no tiny elements to shuffle).
BYTES_PER_BUCKET = 256 * 2**20
MAX_BUCKETS = 65_536
REJECT_FILES = "reject_files"  # tagged output: manifest rows of reject files written beside other output
DUPLICATE_UID = "duplicate_uid"  # the reason of a kept pair's extra copies (unique_uids)
UID_STEP = "unique_uid"  # the pseudo step that drops them, in stats.json


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
    return utf8(SORTED_JSON.encode(fields))


def sort_rows(pairs: Iterable[Pair]) -> list[Pair]:
    """Writable pairs (schemas/encoding.py) sorted by uid; pairs that share a uid by their whole row."""
    pairs = sorted(map(make_writable, pairs), key=lambda p: p.uid)
    start = 0
    for end in range(1, len(pairs) + 1):
        if end == len(pairs) or pairs[end].uid != pairs[start].uid:
            if end - start > 1:  # rare: a run of equal uids
                pairs[start:end] = sorted(pairs[start:end], key=_row_rank)
            start = end
    return pairs


def _row_rank(pair: Pair) -> str:
    """Everything a pair's rows hold, and its image's identity, as one comparable string."""
    span = pair.image_span
    image = image_digest(pair.image) if pair.image is not None else None
    return SORTED_JSON.encode(
        [
            pair.image_ref,
            dataclasses.astuple(span) if span is not None else None,
            pair.reject,
            pair.caption,
            pair.caption_raw,
            pair.meta,
            pair.scores,
            [pair.width, pair.height, pair.image_format, pair.lang, image],
        ]
    )


def unique_uids(pairs: Iterable[Pair]) -> tuple[list[Pair], list[Pair]]:
    """(kept pairs with one copy per uid, sorted by uid; the other copies, now `duplicate_uid` rejects).
    The copy kept is the first by _row_rank: where it was read (image_ref: a path, `file.tar#member`,
    `file.parquet#row=N`), then its content; never arrival order."""
    unique: list[Pair] = []
    duplicates: list[Pair] = []
    for pair in sort_rows(pairs):
        if unique and unique[-1].uid == pair.uid:
            pair.reject = DUPLICATE_UID
            duplicates.append(pair)
        else:
            unique.append(pair)
    return unique, duplicates


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
    (images re-encoded where they are not JPEG, formatters/shard_images.py) or "keep". Uids should be
    unique (unique_uids)."""
    pairs = sort_rows(pairs)
    name = shard_name(index, count)
    width = max(4, len(str(per_shard)) + 1)
    keys = [f"{name}{i:0{width}d}" for i in range(len(pairs))]
    folder = join(directory, "shards")
    ensure_dir(folder)
    formats: list[str | None] = []  # what each stored image is
    with (
        atomic_writer(join(folder, f"{name}.tar")) as fh,
        TarShardWriter(fh) as writer,
        SpanReader(pairs) as images,  # pairs: so each Parquet input is read once (image_spans.py)
    ):
        for pair, key in zip(pairs, keys):
            image = images.image(pair)  # None for text-only sources
            stored = None if image is None else stored_image(image, pair.image_format, image_format != "keep")
            files = {"txt": utf8(pair.caption), "json": sample_json(pair, key, stored)}
            if stored is not None:
                files = {stored.ext: stored.data, **files}
            formats.append(None if stored is None else stored.format)
            writer.add(key, files)
    table = kept_table(pairs, keys, score_names, formats)
    write_bytes_atomic(join(folder, f"{name}.parquet"), parquet_bytes(table))
    return {"shard": f"shards/{name}.tar", "metadata": f"shards/{name}.parquet", "pairs": len(pairs)}


def write_shard_embeddings(directory: str, name: str, pairs: Sequence[Pair]) -> dict:
    """Writes the embeddings of a shard's pairs (sorted as the shard) that have one, and returns the
    shard's manifest fields for them: their files and `embedded`, their count (none written: {})."""
    embedded = [pair for pair in pairs if pair.embedding is not None]
    if not embedded:  # a (0, 0) array would not stack with the other shards' [n, d]
        return {}
    matrix = np.stack([vector_of(pair.embedding) for pair in embedded])
    embeddings_store.write_embeddings(directory, name, [pair.uid for pair in embedded], matrix)
    return {  # relative to the output, as the shards' paths
        "embeddings": embeddings_store.vectors_path("", name),
        "embeddings_metadata": embeddings_store.metadata_path("", name),
        "embedded": len(embedded),
    }


def write_reject_file(
    directory: str,
    index: int,
    count: int,
    pairs: Iterable[Pair],
    score_names: Sequence[str],
    prefix: str = "rejects",
) -> dict:
    pairs = sort_rows(pairs)
    name = f"{prefix}-{shard_name(index, count)}.parquet"
    folder = join(directory, "rejects")
    ensure_dir(folder)
    write_bytes_atomic(join(folder, name), parquet_bytes(reject_table(pairs, score_names)))
    return {"file": f"rejects/{name}", "pairs": len(pairs)}


class _WriteShard(beam.DoFn):
    """(shard index, batches) -> the shard's files; copies of a uid after the first become
    `duplicate_uid` rejects, written to rejects/uid-duplicates-NNNNN.parquet (REJECT_FILES). Kept pairs
    and those rejects are counted here (STATS partials, as CountFinal counts other pairs), and the kept
    gallery's candidates leave what makes their thumbnail (read back from the input when the bytes were
    detached, only for the candidates still standing at the end of the bundle)."""

    def __init__(
        self,
        directory: str,
        per_shard: int,
        score_names: Sequence[str],
        image_format: str,
        embeddings: bool = False,
    ):
        self.directory, self.per_shard = directory, per_shard
        self.score_names, self.image_format, self.embeddings = list(score_names), image_format, embeddings

    def start_bundle(self) -> None:
        self._stats = RunStats()

    def process(self, shard: tuple[int, Iterable[PairBatch]], total: int) -> Iterator:
        index, parts = shard
        count = shard_count(total, self.per_shard)
        pairs, duplicates = unique_uids(_pairs(parts))
        stats = self._stats
        for pair in itertools.chain(pairs, duplicates):
            stats.step_seen[(UID_STEP, pair.source)] += 1
        for pair in pairs:
            stats.observe_final(pair, thumbnail_maker)
        written = write_kept_shard(
            self.directory, index, count, self.per_shard, pairs, self.score_names, self.image_format
        )
        if self.embeddings:  # `pairs` are sorted as the shard (unique_uids)
            written |= write_shard_embeddings(self.directory, shard_name(index, count), pairs)
        yield written
        if duplicates:
            for pair in as_rejects(duplicates, stats):
                stats.step_dropped[(UID_STEP, pair.source, DUPLICATE_UID)] += 1
                stats.observe_final(pair)
            written = write_reject_file(
                self.directory, index, count, duplicates, self.score_names, prefix="uid-duplicates"
            )
            yield beam.pvalue.TaggedOutput(REJECT_FILES, written)

    def finish_bundle(self) -> Iterator:
        publish_counters(self._stats)
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


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
    """Batches of kept pairs -> shards/NNNNN.tar + shards/NNNNN.parquet. Outputs `shards` (one manifest
    row per shard), REJECT_FILES (files of `duplicate_uid` rejects) and STATS partials, which count the
    kept pairs and those rejects. `score_names` and `image_format`: see write_kept_shard; `embeddings`
    (output.embeddings): the pairs' embeddings too (write_shard_embeddings)."""

    def __init__(
        self,
        directory: str,
        per_shard: int,
        score_names: Sequence[str],
        image_format: str = "jpg",
        embeddings: bool = False,
    ):
        super().__init__()
        self.directory, self.per_shard = directory, per_shard
        self.score_names, self.image_format, self.embeddings = list(score_names), image_format, embeddings

    def expand(self, pairs):
        total = pairs | "Count" >> CountPairs()
        write = _WriteShard(
            self.directory, self.per_shard, self.score_names, self.image_format, self.embeddings
        )
        return (
            pairs
            | "Bucket"
            >> beam.ParDo(_Bucket(self.per_shard), beam.pvalue.AsSingleton(total)).with_output_types(
                KV[int, PairBatch]
            )
            | "Group" >> beam.GroupByKey()
            | "Write"
            >> beam.ParDo(write, beam.pvalue.AsSingleton(total)).with_outputs(
                REJECT_FILES, STATS, main="shards"
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
