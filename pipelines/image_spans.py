"""Kept pairs travel to the shard writer without their image bytes where the bytes can be read back.

Readers record an ImageSpan (file, offset, length) for images stored whole in local, uncompressed files
(WebDataset tars, image folders). After the last step that looks at pixels, `detach_images` drops the
bytes and keeps their CRC-32; the shard writer reads them back through a SpanReader, which checks it.
Carrying every kept image through the writer's shuffle cost most of a local run's time outside the
model (bench/e2e_cpu.py). On remote filesystems (gs://, Dataflow) the bytes
travel with the record: a ranged read per image would cost more than the shuffle does there.
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes

from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import ImageSpan, Pair, image_digest


class ImageChangedError(RuntimeError):
    """An input file no longer holds the image bytes read from it earlier in the run."""


def rereadable_path(path: str) -> str | None:
    """The absolute path to record in ImageSpans of `path`'s images, or None where offsets would not
    address the bytes cheaply: remote files, and files Beam opens through a decompressor."""
    if "://" in path:
        return None
    if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
        return None
    return os.path.abspath(path)


def detach_images(batch: PairBatch, with_digest: bool = False) -> PairBatch:
    """Drops the bytes of every image with a span, keeping their CRC-32 (and, for dedup, their
    image_digest) in the span."""
    for pair in batch:
        span, image = pair.image_span, pair.image
        if image is not None and span is not None:
            digest = image_digest(image) if with_digest else ""
            pair.image_span = ImageSpan(span.path, span.offset, span.length, zlib.crc32(image), digest)
            pair.image = None
    return batch


class SpanReader:
    """Gives each pair's image bytes to the shard writer, reading detached ones back (CRC checked) as they
    are written, so a shard's images are never all in memory. The last MAX_OPEN input files stay open: in
    uid order, a shard's pairs come in runs from one input file."""

    MAX_OPEN = 32

    def __init__(self) -> None:
        self._files: OrderedDict[str, BinaryIO] = OrderedDict()

    def image(self, pair: Pair) -> bytes | None:
        """The pair's own bytes, or, once detached, the bytes read back; None for a pair without image."""
        span = pair.image_span
        if pair.image is not None or span is None or span.crc32 is None:
            return pair.image
        return self.read(span, pair.uid)

    def read(self, span: ImageSpan, uid: str = "") -> bytes:
        """The bytes one span addresses (checked against its CRC-32 when it has one); raises
        ImageChangedError if its file no longer holds them."""
        fh = self._files.get(span.path)
        if fh is None:
            fh = self._files[span.path] = _open(span.path)
            if len(self._files) > self.MAX_OPEN:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(span.path)
        return _read_checked(fh, span, uid)

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def __enter__(self) -> SpanReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_span(span: ImageSpan, uid: str = "") -> bytes:
    """The bytes one span addresses (see SpanReader.read)."""
    with SpanReader() as reader:
        return reader.read(span, uid)


def _open(path: str):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ImageChangedError(
            f"cannot reopen input file {path} to read back kept images ({exc}); input files must stay in "
            "place until the run has finished. Rerun it."
        ) from exc


def _read_checked(fh, span: ImageSpan, uid: str) -> bytes:
    fh.seek(span.offset)
    data = fh.read(span.length)
    if span.crc32 is not None and (len(data) != span.length or zlib.crc32(data) != span.crc32):
        raise ImageChangedError(
            f"input file {span.path} changed while the run was going: the image of {uid or 'a pair'} at "
            f"byte {span.offset:,} is not what was read there earlier. Rerun once the input stays unchanged."
        )
    return data
