"""Writes sample rows and pack rows as JSONL or Parquet to a binary file object (local file, BytesIO,
or a Beam filesystem stream). Output bytes depend only on the rows: keys in schema order, no timestamps,
fixed compression. The writers never close the file object (Beam's sinks close their own handles).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("images", pa.list_(pa.string())),
        ("prefix", pa.string()),  # no loss
        ("target", pa.string()),  # loss; ends with <|endoftext|>
        ("prefix_tokens", pa.int32()),
        ("target_tokens", pa.int32()),
        ("num_tokens", pa.int32()),
    ]
)

PACK_SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("ids", pa.list_(pa.string())),  # sample ids, in pack order
        ("images", pa.list_(pa.string())),  # every sample's images, in order of their <img> spans
        ("num_samples", pa.int32()),
        ("num_tokens", pa.int32()),
        ("boundaries", pa.list_(pa.list_(pa.int32(), 3))),  # per sample [start, target_start, end)
        ("loss_mask", pa.list_(pa.int8())),  # 0 on prefix tokens, 1 on target tokens
        ("input_ids", pa.list_(pa.int32())),  # null when packed without a tokenizer
    ]
)


def _ordered(row: Mapping[str, Any], schema: pa.Schema) -> dict[str, Any]:
    extra = set(row) - set(schema.names)
    if extra:  # a programming error, not bad data: rows are built by the formatters
        raise ValueError(f"row has keys outside the schema: {sorted(extra)}")
    return {name: row.get(name) for name in schema.names}


class JsonlWriter:
    """One compact JSON object per line, UTF-8, keys in schema order."""

    def __init__(self, fileobj: BinaryIO, schema: pa.Schema = SAMPLE_SCHEMA) -> None:
        self._file, self._schema = fileobj, schema
        self.rows = 0

    def write(self, row: Mapping[str, Any]) -> None:
        line = json.dumps(_ordered(row, self._schema), ensure_ascii=False, separators=(",", ":"))
        self._file.write(line.encode("utf-8") + b"\n")
        self.rows += 1

    def close(self) -> None:
        """Nothing buffered; present so both writers are used the same way."""


class ParquetWriter:
    """Rows buffered into row groups of `row_group_size`, zstd-compressed."""

    def __init__(
        self,
        fileobj: BinaryIO,
        schema: pa.Schema = SAMPLE_SCHEMA,
        row_group_size: int = 10_000,
        compression: str = "zstd",
    ) -> None:
        self._schema, self._row_group_size = schema, row_group_size
        self._writer = pq.ParquetWriter(fileobj, schema, compression=compression)
        self._buffer: list[dict[str, Any]] = []
        self.rows = 0

    def write(self, row: Mapping[str, Any]) -> None:
        self._buffer.append(_ordered(row, self._schema))
        self.rows += 1
        if len(self._buffer) >= self._row_group_size:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self._schema))
            self._buffer = []

    def close(self) -> None:
        """Writes the last row group and the footer."""
        self._flush()
        self._writer.close()


def write_jsonl(
    rows: Iterable[Mapping[str, Any]], fileobj: BinaryIO, schema: pa.Schema = SAMPLE_SCHEMA
) -> int:
    """Writes `rows` as JSONL; returns the number of rows."""
    return _write_all(JsonlWriter(fileobj, schema), rows)


def write_parquet(
    rows: Iterable[Mapping[str, Any]], fileobj: BinaryIO, schema: pa.Schema = SAMPLE_SCHEMA
) -> int:
    """Writes `rows` as one Parquet file; returns the number of rows."""
    return _write_all(ParquetWriter(fileobj, schema), rows)


def _write_all(writer: JsonlWriter | ParquetWriter, rows: Iterable[Mapping[str, Any]]) -> int:
    for row in rows:
        writer.write(row)
    writer.close()
    return writer.rows
