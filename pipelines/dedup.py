"""Beam wrapper of filters.dedup: one shuffle keyed by content digest."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from vlcurate.filters.dedup import REASON, content_key, mark_duplicates
from vlcurate.pipelines.steps import REJECTED, STATS, in_global_window, publish_counters
from vlcurate.schemas.record import Pair
from vlcurate.schemas.stats import RunStats

STEP = "dedup"


class _MarkGroup(beam.DoFn):
    def start_bundle(self) -> None:
        self._stats = RunStats()

    def process(self, keyed: tuple[str, list[Pair]]) -> Iterator:
        for pair in mark_duplicates(keyed[1]):
            self._stats.step_seen[(STEP, pair.source)] += 1
            if pair.reject == REASON:
                self._stats.step_dropped[(STEP, pair.source, REASON)] += 1
                yield beam.pvalue.TaggedOutput(REJECTED, pair)
            else:
                yield pair

    def finish_bundle(self) -> Iterator:
        publish_counters(self._stats)
        yield beam.pvalue.TaggedOutput(STATS, in_global_window(self._stats))


class Deduplicate(beam.PTransform):
    """Kept pairs in; outputs main (unique), REJECTED (duplicates) and STATS partials."""

    def expand(self, pairs):
        return (
            pairs
            | "ByContent" >> beam.Map(lambda p: (content_key(p), p))
            | "Group" >> beam.GroupByKey()
            | "Mark" >> beam.ParDo(_MarkGroup()).with_outputs(REJECTED, STATS, main="kept")
        )
