"""The text of progress lines, Beam-free: a pipeline's live line (ProgressPrinter, pipelines/progress.py)
and a plain loop's (CountReporter, used by `vlcurate synth`). Every line starts with `[command or stage]`
and the seconds since the start."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # only a type here: `vlcurate synth` must not import Beam, which input_size does
    from vlcurate.pipelines.input_size import Total


def progress_line(
    label: str,
    elapsed: float,
    counts: Mapping[str, int],
    outcomes: Sequence[str] = ("kept", "rejected"),
    unit: str = "pairs",
    total: Total | None = None,
    shares: bool = True,
) -> str:
    """`[clean]    40s  read 12,345 of ~50,000 pairs (25%)  kept 9,000 (72.9%)  rejected 3,345 (27.1%)
    309 pairs/s`. Shares are of the records read, shown only where each record read ends up in exactly
    one outcome; no total is shown when it is unknown (a guess would mislead)."""
    read = counts.get("read", 0)
    of = f" {unit}"
    if total is not None:
        of = f" of {total} {unit}" + (f" ({read / total.count:.0%})" if total.count else "")
    parts = [f"[{label}] {elapsed:6.0f}s", f"read {read:,}{of}"]
    for name in outcomes:
        n = counts.get(name, 0)
        parts.append(f"{name} {n:,} ({n / read:.1%})" if shares and read else f"{name} {n:,}")
    parts.append(f"{read / elapsed if elapsed > 0 else 0.0:,.0f} {unit}/s")
    return "  ".join(parts)


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
