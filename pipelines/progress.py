"""Live progress for local runs: which command runs, records read (of how many, where known), their
outcomes and the rate, every few seconds.

Workers (threads or processes of the local runner) each write their running counts to a small file in a
shared temporary folder; a thread in the launching process sums the files and prints. Remote runners
(Dataflow) show Beam metrics in their own UI instead, so taps are only added for local runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import apache_beam as beam

from vlcurate.pipelines.input_size import Total
from vlcurate.pipelines.progress_lines import progress_line

# Taps sit on PCollections of any batch type (PairBatch in clean, lists of packs in format) and pass each
# element on unchanged; a type variable tells Beam's type check exactly that.
BatchT = TypeVar("BatchT")


class ProgressCounter:
    """A running count of one stage, written to a file of its own in `folder` at most once a second."""

    def __init__(self, folder: str, stage: str) -> None:
        self._count = 0
        self._path = os.path.join(folder, f"{stage}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        self._flushed = 0.0

    def add(self, n: int) -> None:
        self._count += n
        now = time.monotonic()
        if now - self._flushed > 1.0:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        self._flushed = time.monotonic() if now is None else now
        try:
            tmp = self._path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(self._count, fh)
            os.replace(tmp, self._path)
        except OSError:
            pass  # progress is best effort; the folder may be gone after the run


class ProgressTap(beam.DoFn):
    """Counts the records passing through (ProgressCounter): the length of each batch, or each element
    as one with `batches=False`."""

    def __init__(self, folder: str, stage: str, batches: bool = True) -> None:
        self.folder, self.stage, self.batches = folder, stage, batches

    def setup(self) -> None:
        self._counter = ProgressCounter(self.folder, self.stage)

    def process(self, batch: BatchT) -> Iterator[BatchT]:
        self._counter.add(len(batch) if self.batches else 1)
        yield batch

    def finish_bundle(self) -> None:
        self._counter.flush()


def tap(pcoll, folder: str | None, stage: str, label: str = "", batches: bool = True):
    """`pcoll` with a ProgressTap counting `stage` when progress is on (`folder` set), else unchanged."""
    if folder is None:
        return pcoll
    return pcoll | f"Progress[{stage}{label}]" >> beam.ParDo(ProgressTap(folder, stage, batches))


class ProgressPrinter:
    """Context manager: prints a progress_line every `interval` seconds while a pipeline runs, and once at
    the end. `total`, when given, is called once in a background thread (it may read file headers); the
    lines show a total from the moment it returns one."""

    def __init__(
        self,
        label: str,
        outcomes: Sequence[str] = ("kept", "rejected"),
        unit: str = "pairs",
        total: Callable[[], Total | None] | None = None,
        shares: bool = True,
        interval: float = 10.0,
        stream=None,
    ) -> None:
        self.label, self.outcomes, self.unit, self.shares = label, tuple(outcomes), unit, shares
        self.interval = interval
        self.stream = stream or sys.stderr
        self.folder = tempfile.mkdtemp(prefix="vlcurate-progress-")
        self.total: Total | None = None
        self._count_total = total
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def counts(self) -> dict[str, int]:
        sums: dict[str, int] = {}
        for name in os.listdir(self.folder):
            if name.endswith(".json"):
                stage = name.split("-", 1)[0]
                try:
                    with open(os.path.join(self.folder, name)) as fh:
                        sums[stage] = sums.get(stage, 0) + int(json.load(fh))
                except (OSError, ValueError):
                    continue
        return sums

    def line(self, elapsed: float) -> str:
        return progress_line(
            self.label, elapsed, self.counts(), self.outcomes, self.unit, self.total, self.shares
        )

    def _find_total(self) -> None:
        try:
            self.total = self._count_total() if self._count_total else None
        except Exception:  # progress is best effort: no total rather than a failed run
            self.total = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            print(self.line(time.monotonic() - self._start), file=self.stream, flush=True)

    def __enter__(self) -> ProgressPrinter:
        self._start = time.monotonic()
        if self._count_total is not None:
            threading.Thread(target=self._find_total, daemon=True).start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        print(self.line(time.monotonic() - self._start), file=self.stream, flush=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def progress_folder(enabled: bool, label: str, **printer_args: Any) -> Iterator[str | None]:
    """While the block runs, a ProgressPrinter prints and this is the folder taps count into; None (add no
    taps) when progress is off or the runner is remote."""
    if not enabled:
        yield None
        return
    with ProgressPrinter(label, **printer_args) as printer:
        yield printer.folder


@contextlib.contextmanager
def worker_logs_to_file(path: str) -> Iterator[io.TextIOBase]:
    """Local worker processes inherit stderr and log at INFO; send file descriptor 2 to `path` while the
    pipeline runs and hand back a stream on the real stderr for progress lines. On failure the log's tail
    is shown, so nothing useful is hidden."""
    saved = os.dup(2)
    real_stderr = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb"), write_through=True)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield real_stderr
        except BaseException:
            os.dup2(saved, 2)
            with open(path, errors="replace") as fh:
                tail = fh.read()[-4000:]
            print(f"--- last lines of the worker log {path} ---\n{tail}", file=sys.stderr)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            real_stderr.close()
