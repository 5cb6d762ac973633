"""Progress lines of `vlcurate synth`, a plain loop without Beam: `[synth]  3s  made 1,200 of 2,000 pairs
(60%)`. A pipeline's live line is pipelines/progress.py's; both start with `[command or stage]` and the
seconds since the start."""

from __future__ import annotations

import time
from typing import TextIO


class CountReporter:
    """`[synth]      3s  made 1,200 of 2,000 pairs (60%)`, printed at most every `interval` seconds while
    a loop counts, and once more for the last count (`done`). Prints nothing without a stream. `start`
    (time.monotonic()) is when the command began, so that the phases of one command share a clock."""

    def __init__(
        self,
        label: str,
        what: str,
        total: int,
        unit: str = "pairs",
        stream: TextIO | None = None,
        interval: float = 2.0,
        start: float | None = None,
    ) -> None:
        self.label, self.what, self.total, self.unit = label, what, total, unit
        self.stream, self.interval = stream, interval
        self.count = 0
        self._printed = time.monotonic()
        self._start = self._printed if start is None else start
        self._shown = -1

    def line(self) -> str:
        share = f" ({self.count / self.total:.0%})" if self.total else ""
        return (
            f"[{self.label}] {time.monotonic() - self._start:6.0f}s  {self.what} {self.count:,} of "
            f"{self.total:,} {self.unit}{share}"
        )

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._printed, self._shown = time.monotonic(), self.count

    def add(self, n: int = 1) -> None:
        self.count += n
        if self.stream is not None and time.monotonic() - self._printed >= self.interval:
            self._print()

    def done(self) -> None:
        if self.stream is not None and self._shown != self.count:
            self._print()
