"""Runs a segment of the step chain on batches of records, with Beam metrics and mergeable stats.

Elements are PairBatch lists (schemas/batch.py). Each step runs over the batch's live records before the
next step starts, so the per-step bookkeeping is paid per batch, not per record. Kept pairs leave on the
main output, rejects on `REJECTED` (both as batches), and per-bundle RunStats partials on `STATS`.
A step that raises on a record is a bug, but it still must not fail the job or lose the record: the record
becomes a reject `step_error_<step>` with the message in meta.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from vlcurate.filters.base import Step, reject
from vlcurate.formatters.thumbnails import thumbnail_jpeg
from vlcurate.pipelines.image_spans import ImageChangedError, read_span
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import ImageSpan, Pair
from vlcurate.schemas.stats import RunStats

REJECTED = "rejected"
STATS = "stats"


class RunSteps(beam.DoFn):
    def __init__(self, steps_by_source: dict[str, list[Step]], audit: bool = False, count_read: bool = False):
        self.steps_by_source = steps_by_source
        self.audit = audit
        self.count_read = count_read  # the first segment counts every pair read

    def setup(self) -> None:
        self._bound: dict[str, list[Step]] = {}

    def _steps(self, source: str, computed: dict[str, float] | None) -> list[Step]:
        """The source's steps; a keep_fraction filter gets the threshold computed for its source."""
        if not computed or source not in computed:
            return self.steps_by_source[source]
        cached = self._bound.get(source)
        if cached is None:
            cached = self._bound[source] = [
                s.with_computed_threshold(computed[source]) if hasattr(s, "with_computed_threshold") else s
                for s in self.steps_by_source[source]
            ]
        return cached

    def start_bundle(self) -> None:
        self._stats = RunStats()

    def process(self, batch: PairBatch, computed_thresholds: dict[str, float] | None = None) -> Iterator:
        by_source: dict[str, list[Pair]] = {}
        for pair in batch:
            by_source.setdefault(pair.source, []).append(pair)
        for source, pairs in by_source.items():
            if self.count_read:
                self._stats.observe_read(source, pairs)
            for step in self._steps(source, computed_thresholds):
                if not self.audit:
                    pairs = [p for p in pairs if p.reject is None]
                if not pairs:
                    break
                self._run_step(step, source, pairs)
        kept = PairBatch(p for p in batch if p.reject is None)
        if kept:
            yield kept
        if len(kept) < len(batch):
            yield beam.pvalue.TaggedOutput(
                REJECTED, as_rejects((p for p in batch if p.reject is not None), self._stats)
            )

    def _run_step(self, step: Step, source: str, pairs: list[Pair]) -> None:
        stats = self._stats
        changed = 0
        dropped: list[str] = []
        for pair in pairs:
            caption, reasons_before = pair.caption, _reason_count(pair)
            try:
                step.apply(pair)
            except Exception as exc:  # see module docstring
                reject(pair, f"step_error_{step.name}")
                pair.meta["step_error"] = f"{type(exc).__name__}: {exc}"[:300]
            if pair.reject is not None and _reason_count(pair) > reasons_before:
                dropped.extend([pair.reject, *pair.meta.get("audit_reasons", ())][reasons_before:])
            if pair.caption != caption:
                changed += 1
        stats.step_seen[(step.name, source)] += len(pairs)
        for reason in dropped:
            stats.step_dropped[(step.name, source, reason)] += 1
        if changed:
            stats.step_changed[(step.name, source)] += changed
        for name, bins in step.histograms.items():
            values = [p.scores[name] for p in pairs if name in p.scores]
            if values:
                stats.observe_scores(name, source, values, bins)

    def finish_bundle(self) -> Iterator:
        publish_counters(self._stats)
        if self.count_read:
            Metrics.counter("vlcurate.read", "pairs").inc(sum(self._stats.read.values()))
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


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


def _reason_count(pair: Pair) -> int:
    if pair.reject is None:
        return 0
    return 1 + len(pair.meta.get("audit_reasons", ()))


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
