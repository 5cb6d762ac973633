"""Readers: one PTransform per source that yields batches of Pair records (parsing lives in schemas.rows).

Files are matched when the pipeline is built, so a glob that matches nothing fails before any work.
A broken file never fails the job: what could be read is kept and the break becomes a reject.
"""

from __future__ import annotations

import csv
import io
import itertools
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
from vlcurate.schemas.record import ImageSpan, Pair, make_uid
from vlcurate.schemas.rows import pair_from_row, pair_from_sample, parse_json

_BATCH_ROWS = 1024
# The longest CSV field read (csv's own limit, 131,072 characters, is below real passthrough columns); a
# longer one costs its row (`row_unparseable`), so no row read is larger than a few times this.
CSV_FIELD_LIMIT = 16 * 2**20
# The start-up column check of a JSONL file looks at its first few lines that parse (a damaged first line
# must not refuse the job), reading no more than this.
_SNIFF_LINES, _SNIFF_CHARS = 8, 4 * 2**20
# Lines that parse but lack a configured column before a JSONL source is refused: more than a few damaged
# lines (each costs its record when read) could make.
JSONL_LINES_TO_REFUSE = 4


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
    """Fails fast when the configured caption/image columns are absent: from the schema or header of the
    first file that shows one, or, for JSONL, from every one of the first lines that parse, once at least
    JSONL_LINES_TO_REFUSE such lines were seen (a line damaged in its keys must not refuse a job; a few
    lines cannot tell damage from a wrong column name, and the run's end warns when every caption is
    empty). A file that cannot be read is skipped here (reading it makes a `file_unreadable` reject, like
    any break met while reading); a source none of whose files can be read is refused."""
    if source.format == "webdataset":
        return
    broken: list[tuple[str, Exception]] = []
    lacking: list[tuple[str, list[str]]] = []  # (file, columns) of schemas or lines without a wanted column
    wanted = [
        (role, column)
        for role, column in (("caption_column", source.caption_column), ("image_column", source.image_column))
        if column is not None
    ]
    for path in sizes:
        try:
            found = _column_names(source, path)
        except (OSError, pa.ArrowException, ValueError) as exc:
            broken.append((path, exc))
            continue
        if any(all(column in names for _, column in wanted) for names in found):
            return
        lacking += [(path, names) for names in found]
        if lacking and (source.format != "jsonl" or len(lacking) >= JSONL_LINES_TO_REFUSE):
            path, names = lacking[0]
            role, column = next((role, column) for role, column in wanted if column not in names)
            raise ConfigError(
                f"source {source.name!r}: {role} {column!r} is not in {path} "
                f"(columns: {', '.join(names)}). Set `{role}` in the source's config."
            )
    if len(broken) == len(sizes):
        path, exc = broken[0]
        what = "is not a Parquet file" if source.format == "parquet" else "cannot be read"
        others = f"; none of its {len(sizes)} files can be read" if len(sizes) > 1 else ""
        detail = " ".join(str(exc).split())
        raise ConfigError(
            f"source {source.name!r}: {path} {what} ({sizes[path]:,} bytes): {detail}{others}. "
            f"Replace {'them' if others else 'it'}, or check the source's `paths` and `format`."
        )


def _column_names(source: SourceConfig, path: str) -> list[list[str]]:
    """The column names one input file shows: its schema or header, or those of each of the first few JSONL
    lines that parse (a line may lack a column, and a damaged one names wrong ones); empty when it shows
    none (an empty file, no line that parses)."""
    if source.format == "parquet":
        with FileSystems.open(path) as fh:
            return [pq.ParquetFile(fh).schema_arrow.names]
    with FileSystems.open(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace")
        if source.format == "csv":
            csv.field_size_limit(CSV_FIELD_LIMIT)
            first = text.readline(CSV_FIELD_LIMIT)
            return [next(csv.reader([first]))] if first.strip() else []
        found: list[list[str]] = []
        left = _SNIFF_CHARS
        while len(found) < _SNIFF_LINES and left > 0:
            line = text.readline(left)
            if not line:
                break
            left -= len(line)
            row, error = parse_json(line) if line.strip() else (None, "blank")
            if error is None and isinstance(row, dict):
                found.append(list(row))
    return found


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
    """The file name up to its first '.', the start of its records' fallback keys. Bytes of a name that are
    not UTF-8 (carried as surrogates) are written as `\\xNN`, so the keys of two such files stay apart."""
    stem = posixpath.basename(path).split(".", 1)[0]
    try:
        stem.encode("utf-8")
    except UnicodeEncodeError:
        return stem.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return stem


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
    """Rows by row group, so that image bytes held in the image column get an ImageSpan (row group, row)
    to be read back by (pipelines/image_spans.py) instead of travelling with the record."""
    folder = posixpath.dirname(path) if "://" in path else os.path.dirname(path)
    row_number, stem = 0, _stem(path)
    parquet = pq.ParquetFile(fh)
    at = rereadable_path(path) if source.image_column in parquet.schema_arrow.names else None
    for group in range(parquet.num_row_groups):
        row_in_group = 0
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, row_groups=[group]):
            for row, error in _batch_rows(batch):
                fallback = f"{stem}-{row_number:09d}"
                if error is not None:
                    yield _unparseable(source, fallback, path, error)
                else:
                    pair = pair_from_row(source, row, fallback, folder, f"{path}#row={row_number}")
                    if at is not None and pair.image is not None and pair.reject is None:
                        pair.image_span = ImageSpan(
                            at, row_in_group, len(pair.image), row_group=group, column=source.image_column
                        )
                    yield pair
                row_number += 1
                row_in_group += 1


def _batch_rows(batch: pa.RecordBatch) -> Iterator[tuple[dict | None, str | None]]:
    """(row, None) for each row of a batch, or (None, why) for a row whose values Python cannot hold (a
    string column with bytes that are not UTF-8): one such value costs its row, not the batch."""
    try:
        rows = batch.to_pylist()
    except (ValueError, pa.ArrowException):
        for i in range(batch.num_rows):
            try:
                yield batch.slice(i, 1).to_pylist()[0], None
            except (ValueError, pa.ArrowException) as exc:
                yield None, f"{type(exc).__name__}: {exc}"[:200]
        return
    for row in rows:
        yield row, None


def _unparseable(source: SourceConfig, key: str, path: str, error: str) -> Pair:
    return Pair(
        uid=make_uid(source.name, key),
        source=source.name,
        reject="row_unparseable",
        meta={"file": path, "error": error},
    )


def _read_text_rows(source: SourceConfig, path: str, fh) -> Iterator[Pair]:
    folder = posixpath.dirname(path) if "://" in path else os.path.dirname(path)
    # Invalid UTF-8 must cost one row, not the rest of the file: bytes that do not decode are carried as
    # surrogates (surrogateescape) and the row becomes a `caption_bad_utf8` reject in pair_from_row.
    text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
    rows = _csv_rows(text) if source.format == "csv" else _jsonl_rows(text, source.caption_column)
    stem = _stem(path)
    for number, row, error in rows:
        fallback = f"{stem}-{number:09d}"
        if error is not None:
            yield _unparseable(source, fallback, path, error)
        else:
            yield pair_from_row(source, row, fallback, folder)


def _jsonl_rows(lines: Iterator[str], caption_column: str) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, row, None) per JSONL line, or (line number, None, why) for one that is no usable JSON
    object (schemas/rows.py parse_json). Blank lines are not records."""
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        row, error = parse_json(line, caption_column)
        if error is None and not isinstance(row, dict):
            row, error = None, "a JSONL line must be an object"
        yield number, row, error


def _csv_rows(text: Iterator[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    """(record number, row, None) per CSV record after the header, as csv.DictReader numbers and fills
    them (blank records skipped, missing fields None), or (record number, None, why) for a record that
    cannot be one row: a field over CSV_FIELD_LIMIT characters, or more fields than the header names
    (DictReader would file the extras under a None key; they are usually a caption's unquoted comma,
    which shifts every column after it). A bad header makes the file unreadable."""
    csv.field_size_limit(CSV_FIELD_LIMIT)  # process-wide; every reader here sets the same
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ValueError(f"CSV header: {exc}") from None
    if header is None:
        return
    number = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, None, f"CSV record ending on line {reader.line_num}: {exc}"[:200]
            number += 1
            continue
        if not values:
            continue
        if len(values) > len(header):
            error = f"{len(values)} fields where the header names {len(header)} (an unquoted comma?)"
            yield number, None, error
        else:
            yield number, dict(itertools.zip_longest(header, values)), None
        number += 1


class ReadSource(beam.PTransform):
    """All records of one configured source, as PairBatch elements (a batch never spans two files)."""

    def __init__(self, source: SourceConfig, sizes: dict[str, int] | None = None) -> None:
        """`sizes`: {path: bytes} of the files to read (a part of the source's, already matched and
        checked: `clean --resume`'s chunks); by default every file its patterns match."""
        super().__init__(label=f"Read[{source.name}]")
        self.source = source
        if sizes is None:
            sizes = match_files(source)
            check_columns(source, sizes)
        self.sizes = sizes
        self.files = list(sizes)
        self.input_bytes = sum(sizes.values())

    def expand(self, pbegin):
        source, files = self.source, self.files
        pairs = (
            pbegin
            # Indices, not paths: a file name that is not UTF-8 (carried as surrogates) fails Beam's str
            # coder; the paths travel inside the pickled function instead.
            | "Files" >> beam.Create(range(len(files)))
            | "SpreadFiles" >> beam.Reshuffle()
            | "Parse"
            >> beam.FlatMap(lambda i: batched(read_file(source, files[i]))).with_output_types(PairBatch)
        )
        if source.image_column is None:  # caption-only: no images to cap or fetch
            return pairs
        load = beam.Map(load_images, source.max_image_bytes)  # also caps tar members and Parquet bytes
        return pairs | "LoadImages" >> load.with_output_types(PairBatch)
