"""Beam wrapper of the step engine (filters/runner.py): runs a segment of the step chain on batches of
records, with Beam metrics and mergeable stats.

Elements are PairBatch lists (schemas/batch.py). Kept pairs leave on the main output, rejects on
`REJECTED` (both as batches), and per-bundle RunStats partials on `STATS`. The partials also hold the
report's near-threshold galleries (NearThresholds): the steps and their thresholds are known here, those
computed from a keep_fraction included, and the pairs still carry their images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from vlcurate.filters.base import Step
from vlcurate.filters.runner import STEP_ERROR, StepRunner
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
        self._near = NearThresholds(self.steps_by_source, self.audit)

    def start_bundle(self) -> None:
        self._runner.take_stats()  # a fresh partial per bundle

    def teardown(self) -> None:
        if hasattr(self, "_runner"):  # Beam may tear down an instance whose setup failed
            self._runner.close()

    def process(self, batch: PairBatch, computed_thresholds: dict[str, Any] | None = None) -> Iterator:
        kept = self._runner.run(batch, computed_thresholds)
        self._near.offer(batch, self._runner.stats, computed_thresholds)  # before as_rejects drops images
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


class NearThresholds:
    """Offers the pairs of a segment that met a threshold with a what-if curve (Step.what_if: min_side,
    aspect_ratio, clip_filter, length, ...) to RunStats.offer_near, with their own threshold (per caption
    language where the step has one per language; computed ones once known) and what makes their
    thumbnail.

    A pair met a step when it reached it: in --audit runs every pair did, otherwise the pairs still kept
    and those rejected by this step or a later one of the segment (a score the input carried, on a pair an
    earlier step rejected, was never compared with this threshold). Only pairs with an image are offered:
    a gallery shows pictures, and a caption-only run (where a few microseconds per caption would show)
    pays nothing but one check per pair."""

    def __init__(self, steps_by_source: dict[str, list[Step]], audit: bool = False) -> None:
        self.audit = audit
        # source -> [(position of the step, its parameter, the rule offer_near takes)]
        self.rules: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
        self.positions: dict[str, dict[str, int]] = {}  # source -> reject reason -> the step giving it
        for source, steps in steps_by_source.items():
            reasons: dict[str, int] = {}
            for position, step in enumerate(steps):
                for reason in (*step.reasons, f"{STEP_ERROR}{step.name}"):
                    reasons.setdefault(reason, position)
            self.positions[source] = reasons
            self.rules[source] = [
                (position, param, _rule(step.name, param, score, direction))
                for position, step in enumerate(steps)
                for param, (score, direction) in step.what_if.items()
            ]
        self._steps = steps_by_source
        self._resolved: dict[tuple[str, bool], list[tuple]] = {}

    def offer(self, pairs: Iterable[Pair], stats: RunStats, computed: dict[str, Any] | None = None) -> None:
        """Offers each pair that met a threshold; a pair farther from it than a full gallery's farthest
        is passed over here, without a call (the common case: this runs for every pair and threshold)."""
        by_source: dict[str, list[Pair]] = {}
        for pair in pairs:
            if (pair.image or pair.image_span is not None) and self.rules.get(pair.source):
                by_source.setdefault(pair.source, []).append(pair)
        for source, group in by_source.items():
            reached = [self._reached(pair) for pair in group]
            for position, rule, thresholds, value_of in self._rules_of(source, computed):
                name, score, default = rule["name"], rule["score"], thresholds.get("default")
                below, above = stats.near_bar(name, source, "below"), stats.near_bar(name, source, "above")
                for pair, last in zip(group, reached):
                    value = pair.scores.get(score)
                    if value is None or position > last:
                        continue
                    threshold = thresholds.get(pair.lang, default)
                    if threshold is None:
                        continue
                    gap = value - threshold
                    if gap > above or -gap > below:  # NaN compares false: offer_near passes it over
                        continue
                    stats.offer_near(rule, pair, threshold, thumbnail_maker, value_of)
                    below, above = (
                        stats.near_bar(name, source, "below"),
                        stats.near_bar(name, source, "above"),
                    )

    def _reached(self, pair: Pair) -> float:
        """The position of the last step of the segment that saw the pair."""
        if self.audit or pair.reject is None:
            return math.inf
        return self.positions[pair.source].get(pair.reject, -1)

    def _rules_of(self, source: str, computed: dict[str, Any] | None) -> list[tuple]:
        """The source's (position, rule, {language or "default": threshold}, the step's what_if_value for
        the parameter), with the thresholds computed for it where a step keeps a fraction (the same for
        every batch of a run)."""
        bound = computed is not None and source in computed
        resolved = self._resolved.get((source, bound))
        if resolved is None:
            steps = self._steps.get(source, [])
            if bound:
                steps = [s.with_computed_threshold(computed[source]) for s in steps]
            resolved = self._resolved[(source, bound)] = [
                (
                    position,
                    rule,
                    _thresholds(getattr(steps[position], param)),
                    partial(steps[position].what_if_value, param),
                )
                for position, param, rule in self.rules.get(source, [])
            ]
        return resolved


def _rule(step: str, param: str, score: str, direction: str) -> dict[str, str]:
    return {"name": f"{step}.{param}", "step": step, "param": param, "score": score, "direction": direction}


def _thresholds(value: Any) -> dict[str | None, float | None]:
    """A threshold parameter as {language: threshold, "default": threshold}: it is a number, or such a
    table already (clip_filter); "default" None where there is none yet (a keep_fraction not computed)."""
    table = value if isinstance(value, dict) else {"default": value}
    return {
        lang: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
        for lang, v in table.items()
    }


def thumbnail_maker(pair: Pair) -> Callable[[], bytes | None] | None:
    """What makes the pair's thumbnail when called, from the bytes or image span it has now (later steps
    drop the bytes); None without an image."""
    if pair.image or pair.image_span is not None:
        return partial(_thumbnail, pair.image, pair.image_span)
    return None


def as_rejects(pairs: Iterable[Pair], stats: RunStats | None = None) -> PairBatch:
    """A batch of rejected pairs without their image bytes or embeddings: reject files hold neither, so
    they are dropped before they would travel through the rejects' shuffle. With `stats`, rejects that
    could be report samples leave a thumbnail there first."""
    batch = PairBatch(pairs)
    for pair in batch:
        picture = thumbnail_maker(pair) if stats is not None else None
        if picture is not None:
            stats.offer_thumbnail(pair.reject, pair.uid, picture)
        pair.image = None
        pair.embedding = None
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
