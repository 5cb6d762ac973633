"""Kept pairs travel to the shard writer without their image bytes where the bytes can be read back.

Readers record an ImageSpan (file, offset, length) for images stored whole in local, uncompressed files
(WebDataset tars, image folders), and (file, row group, row) for image bytes in a local Parquet file's
image column. After the last step that looks at pixels, `detach_images` drops the bytes and keeps their
CRC-32; the shard writer reads them back through a SpanReader, which checks it. Carrying every kept image
through the writer's shuffle cost most of a local run's time outside the model (bench/e2e_cpu.py), and on
the local runner, which holds a shuffle in memory, it made memory grow with the input (bench/memory.py).
On remote filesystems (gs://, Dataflow) the bytes travel with the record: a ranged read per image would
cost more than the shuffle does there.

Parquet pages are compressed, so a row is found by decoding its row group's image column up to it. A
SpanReader told the pairs it will be asked for (the writer's shard) reads each Parquet file once, in row
order, at its first request, keeping the rows it needs in an unnamed temporary file: any uid order costs
one pass per file and shard, and memory holds one small batch of images.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes

from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import ImageSpan, Pair, image_digest

_PARQUET_BATCH = 64  # rows decoded at a time when reading a Parquet image column back
_PARQUET_BUFFER = 1 << 20  # read column chunks in 1 MiB pieces, not whole (a row group can be GBs)


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
            pair.image_span = dataclasses.replace(span, crc32=zlib.crc32(image), digest=digest)
            pair.image = None
    return batch


class SpanReader:
    """Gives each pair's image bytes to the shard writer, reading detached ones back (CRC checked) as they
    are written, so a shard's images are never all in memory. The last MAX_OPEN input files stay open: in
    uid order, a shard's pairs come in runs from one input file. `pairs`: those it will be asked for, so
    that each Parquet file is read once (module docstring); without them a Parquet row is read alone."""

    MAX_OPEN = 32

    def __init__(self, pairs: Iterable[Pair] = ()) -> None:
        self._files: OrderedDict[str, BinaryIO] = OrderedDict()
        self._planned: dict[str, set[tuple[int, int, str]]] = {}  # Parquet file -> (row group, row, column)
        for pair in pairs:
            span = pair.image_span
            if pair.image is None and span is not None and span.row_group is not None:
                self._planned.setdefault(span.path, set()).add((span.row_group, span.offset, span.column))
        self._spill: BinaryIO | None = None
        self._spilled: dict[tuple[str, int, int, str], tuple[int, int]] = {}  # -> (offset, length) in spill

    def image(self, pair: Pair) -> bytes | None:
        """The pair's own bytes, or, once detached, the bytes read back; None for a pair without image."""
        span = pair.image_span
        if pair.image is not None or span is None or span.crc32 is None:
            return pair.image
        return self.read(span, pair.uid)

    def read(self, span: ImageSpan, uid: str = "") -> bytes:
        """The bytes one span addresses (checked against its CRC-32 when it has one); raises
        ImageChangedError if its file no longer holds them."""
        if span.row_group is not None:
            return _checked(self._parquet_row(span), span, uid)
        fh = self._files.get(span.path)
        if fh is None:
            fh = self._files[span.path] = _open(span.path)
            if len(self._files) > self.MAX_OPEN:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(span.path)
        return _read_checked(fh, span, uid)

    def _parquet_row(self, span: ImageSpan) -> bytes | None:
        wanted = (span.row_group, span.offset, span.column)
        planned = self._planned.pop(span.path, None)
        if planned is not None:  # the first request for this file: spill every row the shard needs
            if self._spill is None:
                self._spill = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
            for (group, row, column), data in _parquet_rows(span.path, planned | {wanted}):
                self._spilled[(span.path, group, row, column)] = (self._spill.seek(0, os.SEEK_END), len(data))
                self._spill.write(data)
        where = self._spilled.get((span.path, *wanted))
        if where is None:
            return next((data for _, data in _parquet_rows(span.path, {wanted})), None)
        self._spill.seek(where[0])
        return self._spill.read(where[1])

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._spilled.clear()

    def __enter__(self) -> SpanReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_span(span: ImageSpan, uid: str = "") -> bytes:
    """The bytes one span addresses (see SpanReader.read)."""
    with SpanReader() as reader:
        return reader.read(span, uid)


def _parquet_rows(
    path: str, wanted: set[tuple[int, int, str]]
) -> Iterator[tuple[tuple[int, int, str], bytes]]:
    """((row group, row, column), image bytes) of the wanted rows of a Parquet file, in file order, each
    row group's column decoded once up to its last wanted row; raises ImageChangedError where the file no
    longer has them."""
    by_group: dict[tuple[int, str], list[int]] = {}
    for group, row, column in wanted:
        by_group.setdefault((group, column), []).append(row)
    with _open(path) as fh:
        try:
            parquet = pq.ParquetFile(fh, buffer_size=_PARQUET_BUFFER)
            for (group, column), rows in sorted(by_group.items()):
                rows.sort()
                start, i = 0, 0
                for batch in parquet.iter_batches(_PARQUET_BATCH, row_groups=[group], columns=[column]):
                    values = batch.column(0)
                    end = start + len(values)
                    while i < len(rows) and rows[i] < end:
                        value = values[rows[i] - start].as_py()
                        yield (
                            (group, rows[i], column),
                            value.get("bytes") if isinstance(value, dict) else value,
                        )
                        i += 1
                    if i == len(rows):
                        break
                    start = end
                if i < len(rows):
                    raise ValueError(f"row group {group} has no row {rows[i]}")
        except (OSError, ValueError, KeyError, IndexError) as exc:  # pyarrow's errors are OSError/ValueError
            raise ImageChangedError(
                f"input file {path} changed while the run was going: it no longer holds the Parquet images "
                f"read from it earlier ({type(exc).__name__}: {exc}). Rerun once the input stays unchanged."
            ) from None


def _checked(data: bytes | None, span: ImageSpan, uid: str) -> bytes:
    if span.crc32 is not None and (
        not isinstance(data, bytes) or len(data) != span.length or zlib.crc32(data) != span.crc32
    ):
        raise ImageChangedError(
            f"input file {span.path} changed while the run was going: the image of {uid or 'a pair'} in row "
            f"{span.offset:,} of row group {span.row_group} is not what was read there earlier. Rerun once "
            "the input stays unchanged."
        )
    return data


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
