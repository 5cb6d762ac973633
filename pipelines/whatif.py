"""What-if curves: for each threshold of a scored step (Step.what_if: min_side, aspect_ratio, clip_filter,
the six of length, language's min_prob), how many pairs would pass every per-pair step were that threshold
elsewhere, everything else as run (stats.json `whatif`, report.html).

Counted in the same pass from each pair's final state, by one combiner over fixed-size arrays, so memory
does not grow with the input. A pair contributes to a step's curve by its score for that step when:
- it passed every per-pair step: it passes at any threshold its score meets (Step.what_if_value: for a
  step with several thresholds, a threshold that does not apply to the pair, such as min_words to a
  Chinese caption, is met everywhere; one of the step's other thresholds failing it counts it nowhere);
- that step rejected it and no other step did (in --audit runs every step of its segment ran, so the
  other reasons are known): it passes at any threshold its score meets, provided every per-pair step
  after this one saw it. That holds when this step is the last per-pair step of the last segment of the
  chain (clip_filter when CLIP runs: nothing after it but dedup), or in --audit runs when no model step
  comes after it. Otherwise its fate beyond this step is unknown and it counts as `undetermined`: the true
  count lies between `kept` and `kept + undetermined`.
A pair another step rejected counts nowhere: no threshold of this step keeps it.

The counts are of pairs before the group steps (keep_longest, dedup): at the applied threshold `kept`
equals the pairs written plus those the group steps and the shard writer set aside (duplicates are
content-identical, so they share every score and go through every threshold together). Curves are per source and caption language (`und` where
the language step did not run); the grid refines the step's histogram range GRID_REFINE times, and a
threshold on the grid is compared exactly as the step compares it.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from vlcurate.schemas.stats import UNDETERMINED

GRID_REFINE = 4


@dataclasses.dataclass(frozen=True)
class Curve:
    """One threshold of one step, for one source."""

    step: Any  # the source's step instance (Step.what_if_value)
    param: str
    score: str
    direction: str  # "min": a pair passes at score >= threshold; "max": at score <= threshold
    grid: tuple[float, ...]
    settled: bool  # a pair this step rejects has met every later per-pair step: its fate is known

    @property
    def name(self) -> str:
        return f"{self.step.name}.{self.param}"

    def index(self, value: float) -> int:
        """The slot of a score: for "min", how many grid points it meets (value >= point); for "max",
        the first grid point it meets (value <= point)."""
        if self.direction == "min":
            return bisect.bisect_right(self.grid, value)
        return bisect.bisect_left(self.grid, value)

    def cumulative(self, slots: list[int]) -> list[int]:
        """Per grid point, the pairs whose score meets it (slots as `index` fills them)."""
        out, running = [], 0
        if self.direction == "min":  # point k is met by slots k + 1 and above
            for k in range(len(self.grid) - 1, -1, -1):
                running += slots[k + 1]
                out.append(running)
            return out[::-1]
        for k in range(len(self.grid)):  # point k is met by slots 0..k
            running += slots[k]
            out.append(running)
        return out


def grid_for(histogram: tuple[float, float, int], integer: bool = False) -> tuple[float, ...]:
    """GRID_REFINE points per histogram bin; for an integer threshold, whole numbers (every one where the
    refined step would be finer)."""
    low, high, bins = histogram
    if integer:
        step = max(1, int((high - low) // (bins * GRID_REFINE)))
        return tuple(float(v) for v in range(int(low), int(high) + 1, step))
    points = bins * GRID_REFINE
    return tuple(round(low + i * (high - low) / points, 10) for i in range(points + 1))


def curves_for(segments: dict[str, list[list[Any]]], audit: bool) -> dict[str, list[Curve]]:
    """{source: curves} for the chain's steps with a `what_if`; `segments`: per source, the per-pair steps
    of each segment in order (the steps before the model step, then those after it)."""
    out: dict[str, list[Curve]] = {}
    for source, parts in segments.items():
        parts = [part for part in parts if part]
        curves = []
        for number, part in enumerate(parts):
            for position, step in enumerate(part):
                last_segment = number == len(parts) - 1
                settled = last_segment and (audit or position == len(part) - 1)
                for param, (score, direction) in step.what_if.items():
                    current = getattr(step, param)
                    integer = isinstance(current, int) and not isinstance(current, bool)
                    grid = grid_for(step.histograms[score], integer)
                    curves.append(Curve(step, param, score, direction, grid, settled))
        out[source] = curves
    return out


def contributions(pairs: Iterable[Any], curves: dict[str, list[Curve]]) -> Iterable[tuple]:
    """(curve number, source, language, slot, settled) for each way a pair counts (module docstring)."""
    for pair in pairs:
        for number, curve in enumerate(curves.get(pair.source, ())):
            reasons = curve.step.reasons
            if pair.reject is None:
                known = True
            elif pair.reject in reasons and not any(
                r not in reasons for r in pair.meta.get("audit_reasons", ())
            ):
                known = curve.settled
            else:
                continue
            # The step's own answer: the number this threshold meets, or None when another threshold of
            # the step rejects the pair whatever this one is.
            value = curve.step.what_if_value(curve.param, pair)
            if value is None or math.isnan(value):
                continue
            yield number, pair.source, pair.lang or UNDETERMINED, curve.index(value), known


class CountWhatIf(beam.CombineFn):
    """Batches of final pairs -> {(curve number, source, language): [slots known, slots undetermined]}."""

    def __init__(self, curves: dict[str, list[Curve]]) -> None:
        self.curves = curves

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, acc: dict, batch: Iterable[Any]) -> dict:
        for number, source, lang, slot, known in contributions(batch, self.curves):
            key = (number, source, lang)
            if key not in acc:
                size = len(self.curves[source][number].grid) + 1
                acc[key] = ([0] * size, [0] * size)
            acc[key][0 if known else 1][slot] += 1
        return acc

    def merge_accumulators(self, accumulators: Iterable[dict]) -> dict:
        merged: dict = {}
        for acc in accumulators:
            for key, (known, unknown) in acc.items():
                if key not in merged:
                    merged[key] = ([0] * len(known), [0] * len(known))
                for target, part in zip(merged[key], (known, unknown)):
                    for i, n in enumerate(part):
                        target[i] += n
        return merged

    def extract_output(self, acc: dict) -> dict[str, Any]:
        return whatif_json(acc, self.curves)


def whatif_json(acc: dict, curves: dict[str, list[Curve]]) -> dict[str, Any]:
    """stats.json's `whatif`: {"step.param": {"score", "direction", "grid", "by_source": {source:
    {"settled", "languages": {lang: {"kept", "undetermined"}}}}}}, kept[k] and undetermined[k] at grid[k]."""
    out: dict[str, Any] = {}
    for source, source_curves in sorted(curves.items()):
        for number, curve in enumerate(source_curves):
            entry = out.setdefault(
                curve.name,
                {
                    "score": curve.score,
                    "direction": curve.direction,
                    "grid": list(curve.grid),
                    "by_source": {},
                },
            )
            languages = {}
            for (n, src, lang), (known, unknown) in sorted(acc.items()):
                if (n, src) == (number, source):
                    languages[lang] = {
                        "kept": curve.cumulative(known),
                        "undetermined": curve.cumulative(unknown),
                    }
            entry["by_source"][source] = {"settled": curve.settled, "languages": languages}
    return out


def count_whatif(streams: list, curves: dict[str, list[Curve]]):
    """A singleton PCollection: the what-if curves of the final pairs in `streams` (PCollections of
    PairBatch: the pairs that passed every per-pair step, before dedup, and every per-pair reject)."""
    return (
        tuple(streams)
        | "WhatIfStreams" >> beam.Flatten()
        | "WhatIf" >> beam.CombineGlobally(CountWhatIf(curves))
    )
