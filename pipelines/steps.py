"""Beam wrapper of the step engine (filters/runner.py): runs a segment of the step chain on batches of
records, with Beam metrics and mergeable stats.

Elements are PairBatch lists (schemas/batch.py). Kept pairs leave on the main output, rejects on
`REJECTED` (both as batches), and per-bundle RunStats partials on `STATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from vlcurate.filters.base import Step
from vlcurate.filters.runner import StepRunner
from vlcurate.formatters.thumbnails import thumbnail_jpeg
from vlcurate.pipelines.image_spans import ImageChangedError, read_span
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import ImageSpan, Pair
from vlcurate.schemas.stats import RunStats

REJECTED = "rejected"
STATS = "stats"


class RunSteps(beam.DoFn):
    """A StepRunner per worker; its counts leave as one RunStats partial per bundle."""

    def __init__(self, steps_by_source: dict[str, list[Step]], audit: bool = False, count_read: bool = False):
        self.steps_by_source = steps_by_source
        self.audit = audit
        self.count_read = count_read  # the first segment counts every pair read

    def setup(self) -> None:
        self._runner = StepRunner(self.steps_by_source, self.audit, self.count_read)

    def start_bundle(self) -> None:
        self._runner.take_stats()  # a fresh partial per bundle

    def process(self, batch: PairBatch, computed_thresholds: dict[str, Any] | None = None) -> Iterator:
        kept = self._runner.run(batch, computed_thresholds)
        if kept:
            yield kept
        if len(kept) < len(batch):
            yield beam.pvalue.TaggedOutput(
                REJECTED, as_rejects((p for p in batch if p.reject is not None), self._runner.stats)
            )

    def finish_bundle(self) -> Iterator:
        stats = self._runner.take_stats()
        publish_counters(stats)
        if self.count_read:
            Metrics.counter("vlcurate.read", "pairs").inc(sum(stats.read.values()))
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(stats))


def as_rejects(pairs: Iterable[Pair], stats: RunStats | None = None) -> PairBatch:
    """A batch of rejected pairs without their image bytes: reject files hold no images, so the bytes
    are dropped before they would travel through the rejects' shuffle. With `stats`, rejects that could
    be report samples leave a thumbnail there first."""
    batch = PairBatch(pairs)
    for pair in batch:
        if stats is not None and (pair.image or pair.image_span is not None):
            stats.offer_thumbnail(pair.reject, pair.uid, partial(_thumbnail, pair.image, pair.image_span))
        pair.image = None
    return batch


def _thumbnail(image: bytes | None, span: ImageSpan | None) -> bytes | None:
    """A sample reject's thumbnail, from its bytes or, once they were detached, from its input file."""
    if image is None:
        try:
            image = read_span(span)
        except ImageChangedError:
            return None  # the run's writer reports a changed input; a report picture is not worth more
    return thumbnail_jpeg(image)


def publish_counters(stats: RunStats) -> None:
    """Beam metrics (`vlcurate.<step>`: seen, kept, changed, dropped_<reason>) for live monitoring,
    from a bundle's counts: once per bundle, not per record, because they cost microseconds each."""
    dropped: dict[tuple[str, str], int] = {}
    for (step, _, reason), n in stats.step_dropped.items():
        dropped[(step, reason)] = dropped.get((step, reason), 0) + n
    seen: dict[str, int] = {}
    for (step, _), n in stats.step_seen.items():
        seen[step] = seen.get(step, 0) + n
    for step, n in seen.items():
        Metrics.counter(f"vlcurate.{step}", "seen").inc(n)
        kept = n - sum(c for (s, _), c in dropped.items() if s == step)
        Metrics.counter(f"vlcurate.{step}", "kept").inc(kept)
    for (step, reason), n in dropped.items():
        Metrics.counter(f"vlcurate.{step}", f"dropped_{reason}").inc(n)
    for (step, _), n in stats.step_changed.items():
        Metrics.counter(f"vlcurate.{step}", "changed").inc(n)


def in_global_window(value: object) -> WindowedValue:
    """finish_bundle outputs need an explicit window."""
    return WindowedValue(value, GlobalWindow().max_timestamp(), [GlobalWindow()])


class MergeStats(beam.CombineFn):
    """Merges per-bundle stats partials: any object whose `merge(other)` folds other in and returns it.
    `empty` makes the zero (RunStats for `clean`; the SFT job passes its own)."""

    def __init__(self, empty: Callable[[], Any] = RunStats) -> None:
        self.empty = empty

    def create_accumulator(self) -> Any:
        return self.empty()

    def add_input(self, acc: Any, partial: Any) -> Any:
        return acc.merge(partial)

    def merge_accumulators(self, accs) -> Any:
        it = iter(accs)
        first = next(it)
        for acc in it:
            first.merge(acc)
        return first

    def extract_output(self, acc: Any) -> Any:
        return acc


class CountFinal(beam.DoFn):
    """Final per-source tally of kept pairs and rejects by reason (batches in), as a stats partial per bundle."""

    def start_bundle(self) -> None:
        self._stats = RunStats()

    def process(self, batch: PairBatch) -> Iterator:
        for pair in batch:
            self._stats.observe_final(pair)
        return iter(())

    def finish_bundle(self) -> Iterator:
        yield in_global_window(self._stats)
