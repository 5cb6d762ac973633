"""Readers: one PTransform per source that yields batches of Pair records (parsing lives in schemas.rows).

Files are matched when the pipeline is built, so a glob that matches nothing fails before any work.
A broken file never fails the job: what could be read is kept and the break becomes a reject.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import tarfile
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from vlcurate.formatters.webdataset import iter_samples
from vlcurate.pipelines import batch_coder  # noqa: F401  (registers PairBatch's coder)
from vlcurate.pipelines.image_spans import rereadable_path
from vlcurate.pipelines.load_images import load_images
from vlcurate.schemas.batch import PairBatch, batched
from vlcurate.schemas.config import SourceConfig
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair, make_uid
from vlcurate.schemas.rows import pair_from_row, pair_from_sample

_BATCH_ROWS = 1024


def match_files(source: SourceConfig) -> dict[str, int]:
    """{path: size in bytes} of every file the source's patterns match, sorted by path."""
    sizes: dict[str, int] = {}
    for pattern in source.paths:
        found = [m for r in FileSystems.match([pattern]) for m in r.metadata_list]
        if not found:
            raise ConfigError(f"source {source.name!r}: no file matches {pattern!r}; check `paths`.")
        sizes.update((m.path, m.size_in_bytes) for m in found)
    return dict(sorted(sizes.items()))


def check_columns(source: SourceConfig, sizes: dict[str, int]) -> None:
    """Fails fast when the configured caption/image columns are absent from the first file that shows its
    columns. A file that cannot be read is skipped here (reading it makes a `file_unreadable` reject, like
    any break met while reading); a source none of whose files can be read is refused."""
    if source.format == "webdataset":
        return
    broken: list[tuple[str, Exception]] = []
    for path in sizes:
        try:
            names = _column_names(source, path)
        except (OSError, pa.ArrowException, ValueError) as exc:
            broken.append((path, exc))
            continue
        if names is None:
            continue  # an empty file, or a first line that is bad data (a reject when read): no columns
        for role, column in (
            ("caption_column", source.caption_column),
            ("image_column", source.image_column),
        ):
            if column is not None and column not in names:
                raise ConfigError(
                    f"source {source.name!r}: {role} {column!r} is not in {path} "
                    f"(columns: {', '.join(names)}). Set `{role}` in the source's config."
                )
        return
    if len(broken) == len(sizes):
        path, exc = broken[0]
        what = "is not a Parquet file" if source.format == "parquet" else "cannot be read"
        others = f"; none of its {len(sizes)} files can be read" if len(sizes) > 1 else ""
        detail = " ".join(str(exc).split())
        raise ConfigError(
            f"source {source.name!r}: {path} {what} ({sizes[path]:,} bytes): {detail}{others}. "
            f"Replace {'them' if others else 'it'}, or check the source's `paths` and `format`."
        )


def _column_names(source: SourceConfig, path: str) -> list[str] | None:
    """The column names of one input file; None when the file shows none (empty, or a bad first line)."""
    if source.format == "parquet":
        with FileSystems.open(path) as fh:
            return pq.ParquetFile(fh).schema_arrow.names
    with FileSystems.open(path) as fh:
        first = io.TextIOWrapper(fh, encoding="utf-8", errors="replace").readline()
    if not first.strip():
        return None
    if source.format == "csv":
        return next(csv.reader([first]), [])
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return None
    return list(row) if isinstance(row, dict) else None


def carried_scores(source: SourceConfig) -> set[str]:
    """The score names the first record of a source carries. vlcurate's own WebDataset shards keep every
    score, so a run on them may re-tune a threshold without the step that wrote it (filters/chain.py,
    check_needs); the other formats carry none."""
    if source.format != "webdataset":
        return set()
    for path in match_files(source):
        for pair in read_file(source, path):
            return set(pair.scores)
    return set()


def _stem(path: str) -> str:
    return posixpath.basename(path).split(".", 1)[0]


def _file_error(source: SourceConfig, path: str, exc: Exception) -> Pair:
    return Pair(
        uid=make_uid(source.name, f"{_stem(path)}#file_error"),
        source=source.name,
        reject="file_unreadable",
        meta={"file": path, "error": f"{type(exc).__name__}: {exc}"[:500]},
    )


def read_file(source: SourceConfig, path: str) -> Iterator[Pair]:
    """Every record of one input file, in file order."""
    try:
        with FileSystems.open(path) as fh:
            if source.format == "webdataset":
                at = rereadable_path(path)
                for key, files, offsets in iter_samples(fh):
                    yield pair_from_sample(source, key, files, at, offsets, tar=path)
            elif source.format == "parquet":
                yield from _read_parquet(source, path, fh)
            else:
                yield from _read_text_rows(source, path, fh)
    except (OSError, tarfile.TarError, pa.ArrowException, ValueError) as exc:
        yield _file_error(source, path, exc)


def _read_parquet(source: SourceConfig, path: str, fh) -> Iterator[Pair]:
    folder = posixpath.dirname(path) if "://" in path else os.path.dirname(path)
    row_number, stem = 0, _stem(path)
    for batch in pq.ParquetFile(fh).iter_batches(batch_size=_BATCH_ROWS):
        for row in batch.to_pylist():
            at = f"{path}#row={row_number}"
            yield pair_from_row(source, row, f"{stem}-{row_number:09d}", folder, at)
            row_number += 1


def _read_text_rows(source: SourceConfig, path: str, fh) -> Iterator[Pair]:
    folder = posixpath.dirname(path) if "://" in path else os.path.dirname(path)
    # Invalid UTF-8 must cost one row, not the rest of the file: bytes that do not decode are carried as
    # surrogates (surrogateescape) and the row becomes a `caption_bad_utf8` reject in pair_from_row.
    text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
    rows = enumerate(csv.DictReader(text)) if source.format == "csv" else enumerate(text)
    stem = _stem(path)
    for number, row in rows:
        fallback = f"{stem}-{number:09d}"
        if source.format == "jsonl":
            if not row.strip():
                continue  # blank lines are not records
            try:
                row = json.loads(row)
                error = None if isinstance(row, dict) else "a JSONL line must be an object"
            except json.JSONDecodeError as exc:
                error = str(exc)[:200]
            if error is not None:
                yield Pair(
                    uid=make_uid(source.name, fallback),
                    source=source.name,
                    reject="row_unparseable",
                    meta={"file": path, "error": error},
                )
                continue
        yield pair_from_row(source, row, fallback, folder)


class ReadSource(beam.PTransform):
    """All records of one configured source, as PairBatch elements (a batch never spans two files)."""

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(label=f"Read[{source.name}]")
        self.source = source
        sizes = match_files(source)
        self.files = list(sizes)
        self.input_bytes = sum(sizes.values())
        check_columns(source, sizes)

    def expand(self, pbegin):
        source = self.source
        pairs = (
            pbegin
            | "Files" >> beam.Create(self.files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Parse"
            >> beam.FlatMap(lambda path: batched(read_file(source, path))).with_output_types(PairBatch)
        )
        if source.image_column is None:  # caption-only: no images to cap or fetch
            return pairs
        load = beam.Map(load_images, source.max_image_bytes)  # also caps tar members and Parquet bytes
        return pairs | "LoadImages" >> load.with_output_types(PairBatch)
