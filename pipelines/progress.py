"""Live progress for local runs: pairs read / kept / rejected and the rate, every few seconds.

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
from collections.abc import Iterator
from typing import TypeVar

import apache_beam as beam

STAGES = ("read", "kept", "rejected")

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
    """Counts the pairs of the batches passing through (ProgressCounter)."""

    def __init__(self, folder: str, stage: str) -> None:
        self.folder, self.stage = folder, stage

    def setup(self) -> None:
        self._counter = ProgressCounter(self.folder, self.stage)

    def process(self, batch: BatchT) -> Iterator[BatchT]:
        self._counter.add(len(batch))
        yield batch

    def finish_bundle(self) -> None:
        self._counter.flush()


class ProgressPrinter:
    """Context manager: prints totals every `interval` seconds while the pipeline runs."""

    def __init__(self, interval: float = 10.0, stream=None) -> None:
        self.interval = interval
        self.stream = stream or sys.stderr
        self.folder = tempfile.mkdtemp(prefix="vlcurate-progress-")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def totals(self) -> dict[str, int]:
        sums = dict.fromkeys(STAGES, 0)
        for name in os.listdir(self.folder):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(self.folder, name)) as fh:
                        sums[name.split("-", 1)[0]] += int(json.load(fh))
                except (OSError, ValueError, KeyError):
                    continue
        return sums

    def line(self, elapsed: float) -> str:
        t = self.totals()
        rate = t["read"] / elapsed if elapsed > 0 else 0.0
        return (
            f"[vlcurate] {elapsed:6.0f}s  read {t['read']:,}  kept {t['kept']:,}  "
            f"rejected {t['rejected']:,}  ({rate:,.0f} pairs/s read)"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            print(self.line(time.monotonic() - self._start), file=self.stream, flush=True)

    def __enter__(self) -> ProgressPrinter:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        print(self.line(time.monotonic() - self._start), file=self.stream, flush=True)
        shutil.rmtree(self.folder, ignore_errors=True)


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
