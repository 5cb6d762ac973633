"""The text of a pipeline's live progress line (ProgressPrinter, pipelines/progress.py), Beam-free so that
it is tested without a pipeline. Like `vlcurate synth`'s (synth/progress.py), it starts with `[command or
stage]` and the seconds since the start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type here: input_size imports Beam
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
