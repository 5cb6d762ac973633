"""The one record that travels through every pipeline step."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from vlcurate.schemas.encoding import utf8

# File extensions of image members/files, in the order a sample's image is picked.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")


@dataclasses.dataclass(frozen=True)
class ImageSpan:
    """Where a pair's image bytes lie in a local input file (`length` bytes from `offset`), or, with
    `row_group` set, in a Parquet file's image column: row `offset` of row group `row_group` of `column`
    (its bytes, or the `bytes` field of an HF datasets {bytes, path} struct).

    Kept pairs travel to the shard writer without their bytes when a span says where to read them back:
    carrying every image through the writer's shuffle cost most of a local run's time. When the bytes
    are dropped, `crc32` (checked when they are read back) and, if dedup will compare images, `digest`
    (image_digest of the bytes) are set.
    """

    path: str
    offset: int
    length: int
    crc32: int | None = None
    digest: str = ""
    row_group: int | None = None
    column: str | None = None


@dataclasses.dataclass
class Pair:
    """An image-text pair and everything the steps learned about it.

    `uid` is `<source>/<source key>`, stable across runs, and the only thing shard assignment and output
    order depend on. `reject` is the first reason a step dropped the pair for; in audit mode later steps
    keep running and append their reasons to `meta["audit_reasons"]`. `embedding`: the image's
    L2-normalized CLIP embedding as little-endian float16 bytes (pipelines/embeddings_store.py
    vector_bytes), for semantic dedup and the embedding store; never written into shards' metadata or
    reject rows (their columns are listed in schemas/arrow.py), and dropped from rejects (as_rejects).
    """

    uid: str
    source: str
    caption: str = ""
    caption_raw: str = ""
    image: bytes | None = None
    image_ref: str | None = None
    image_span: ImageSpan | None = None
    width: int | None = None
    height: int | None = None
    image_format: str | None = None
    lang: str | None = None
    scores: dict[str, float] = dataclasses.field(default_factory=dict)
    reject: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Last, so rows pickled by PairBatch (schemas/batch.py) keep the order of the fields before it.
    embedding: bytes | None = None

    @property
    def key(self) -> str:
        """The source's own key (the uid without the source prefix)."""
        return self.uid[len(self.source) + 1 :] if self.uid.startswith(self.source + "/") else self.uid

    def copy(self) -> Pair:
        return dataclasses.replace(self, scores=dict(self.scores), meta=dict(self.meta))


def make_uid(source: str, key: str) -> str:
    return f"{source}/{key}"


def image_digest(data: bytes) -> str:
    """The identity of image bytes that dedup compares (kept in ImageSpan.digest once they are dropped)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() is salted per process). Text that
    cannot be encoded hashes as it is written (schemas/encoding.py), so a uid and its written form share
    a shard."""
    return int.from_bytes(hashlib.blake2b(utf8(text), digest_size=8).digest(), "big")
