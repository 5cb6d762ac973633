"""How many records the input holds, for progress lines' totals: counted where that is cheap, else
extrapolated by bytes from the files counted, else unknown.

Counting reads only what the readers' record boundaries need: Parquet footers, tar headers (their data is
skipped), the lines of JSONL/CSV files. It runs in a background thread of the launching process with a
time budget; files left uncounted when the budget runs out are estimated from the bytes per record of the
counted ones, and the total is marked as an estimate.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import tarfile
import time
from collections.abc import Mapping, Sequence

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from vlcurate.formatters.webdataset import split_member_name

BUDGET_S = 2.0


@dataclasses.dataclass(frozen=True)
class Total:
    count: int
    exact: bool  # False: extrapolated from the bytes per record of the files counted

    def __str__(self) -> str:
        return f"{'' if self.exact else '~'}{self.count:,}"

    def __add__(self, other: Total) -> Total:
        return Total(self.count + other.count, self.exact and other.exact)


def count_records(fmt: str, path: str) -> int:
    """Records in one input file, as the reader of `fmt` (pipelines/read.py) will yield them."""
    with FileSystems.open(path) as fh:
        if fmt == "parquet":
            return pq.ParquetFile(fh).metadata.num_rows
        if fmt == "webdataset":  # one sample per run of members sharing a key, as iter_samples groups them
            keys, last = 0, None
            with tarfile.open(fileobj=fh, mode="r|*") as tar:
                for member in tar:
                    key = split_member_name(member.name)[0] if member.isfile() else last
                    keys += key != last
                    last = key
            return keys
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
        if fmt == "csv":
            return max(0, sum(1 for row in csv.reader(text) if row) - 1)  # DictReader: header, no blank rows
        return sum(1 for line in text if line.strip())  # JSONL: blank lines are not records


def estimate_records(fmt: str, sizes: Mapping[str, int], budget_s: float = BUDGET_S) -> Total | None:
    """Records in files {path: bytes}: exact when every file was counted within the budget, else an
    estimate; None when no file with bytes could be counted."""
    deadline = time.monotonic() + budget_s
    counted, counted_bytes, left = 0, 0, 0
    for path, size in sizes.items():
        if counted_bytes and time.monotonic() > deadline:  # at least one file is counted
            left += size
            continue
        try:
            counted += count_records(fmt, path)
            counted_bytes += size
        except Exception:  # a file the reader will turn into a reject; its records are unknown
            left += size
    if not left:
        return Total(counted, True)
    if not counted_bytes:
        return None
    return Total(counted + round(counted / counted_bytes * left), False)


def sum_totals(totals: Sequence[Total | None]) -> Total | None:
    """The sum, or None when any part is unknown (a partial total would read as the whole)."""
    if not totals or any(t is None for t in totals):
        return None
    result = totals[0]
    for t in totals[1:]:
        result = result + t
    return result
