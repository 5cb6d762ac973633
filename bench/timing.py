"""Shared by the benchmarks: median wall time of a repeated call, and a Qwen tokenizer warm-up that pool
workers run before anything is timed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from vlcurate.model.qwen_tokenizer import get_tokenizer


def warm_tokenizer(_: object = None) -> None:
    get_tokenizer()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """The median seconds of `repeat` calls, and the last call's result."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out
