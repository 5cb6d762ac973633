"""Thresholds computed from the data: a step's `keep_fraction` turned into a score per source and language
group (filters/clip_filter.py), in the pass that applies them.

The pairs that reach the step are ranked per (source, language group); the threshold is the score at
quantile 1 - fraction of that group, by nearest rank ((1 - fraction) x (n - 1), rounded), and every pair
at or above it is kept: the top `fraction`, give or take a rank for small groups, and ties at the
threshold all kept. Beam's ApproximateQuantiles with N_QUANTILES points ranks exactly up to N_QUANTILES
pairs and with a rank error of about n / N_QUANTILES beyond. Each entry records where it came from, for
info.json, stats.json and the report: {"value", "from": "keep_fraction", "keep_fraction", "quantile",
"scored"}.
"""

from __future__ import annotations

import math
from typing import Any

import apache_beam as beam

N_QUANTILES = 10_001
SCORE = "clip"


def keep_fraction_thresholds(pairs, filters: dict[str, Any]):
    """A singleton PCollection {source: {group: entry}} for the sources whose filter in `filters` ({source:
    ClipFilter}) keeps a fraction; `pairs`: PCollection of PairBatch, the pairs that reach the filter."""
    fractional = {s: f for s, f in filters.items() if f.keep_fraction is not None}

    def keyed(batch):
        for p in batch:
            score = p.scores.get(SCORE)
            if p.source in fractional and score is not None and math.isfinite(score):
                yield (p.source, fractional[p.source].fraction_group(p.lang)), score

    def entry(kv) -> tuple[tuple[str, str], dict[str, Any]]:
        (source, group), joined = kv
        (quantiles,), (scored,) = joined["quantiles"], joined["scored"]
        share = fractional[source].keep_fraction[group]
        position = (1.0 - share) * (len(quantiles) - 1)
        value = quantiles[min(len(quantiles) - 1, round(position))]
        return (source, group), {
            "value": value,
            "from": "keep_fraction",
            "keep_fraction": share,
            "quantile": round(1.0 - share, 12),
            "scored": scored,
        }

    def nested(entries: dict) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (source, group), value in sorted(entries.items()):
            out.setdefault(source, {})[group] = value
        return out

    scores = pairs | "ScoresByGroup" >> beam.FlatMap(keyed)
    return (
        {
            "quantiles": scores | "Quantiles" >> beam.ApproximateQuantiles.PerKey(N_QUANTILES),
            "scored": scores | "Scored" >> beam.combiners.Count.PerKey(),
        }
        | "Join" >> beam.CoGroupByKey()
        | "Entry" >> beam.Map(entry)
        | "AsDict" >> beam.combiners.ToDict()
        | "Nested" >> beam.Map(nested)
    )


def applied_thresholds(filters: dict[str, Any], computed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{source: {group: entry}}: every threshold a run's clip_filter applied, absolute or computed."""
    return {source: f.applied_thresholds(computed.get(source)) for source, f in sorted(filters.items())}
