"""What a finished `clean` run's counts say about it: warnings for outcomes that are surely not what the
user meant, and the --max-reject-share limit.

Everything here reads stats.json's content (schemas/stats.py), which every runner writes, never Beam
metrics: the same counts give the same verdict on a laptop and on Dataflow. Plain Python, no Beam.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from vlcurate.filters.runner import STEP_ERROR
from vlcurate.schemas.stats import READ_STEP

IMAGE_MISSING = "image_missing"
# Reasons that say the image a row names was not found where it may be read: all point at wrong paths.
NOT_FOUND = (IMAGE_MISSING, "image_outside_root", "image_not_a_file")
# Reasons a reader gives before it looks for the pair's image: such a pair says nothing about the paths.
_BEFORE_IMAGE = ("file_unreadable", "row_unparseable", "caption_bad_utf8")


@dataclasses.dataclass(frozen=True)
class StepCounts:
    """One step's pairs: how many reached it and how many it dropped, by reason."""

    step: str
    seen: int
    dropped: Mapping[str, int]

    @property
    def rejected(self) -> int:
        return sum(self.dropped.values())

    @property
    def share(self) -> float:
        return self.rejected / self.seen if self.seen else 0.0

    def reasons(self) -> str:
        """`too_small`, or `too_small 590, aspect_ratio 10` (most first) when there are several."""
        if len(self.dropped) == 1:
            return next(iter(self.dropped))
        ranked = sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
        return ", ".join(f"{reason} {n:,}" for reason, n in ranked)


@dataclasses.dataclass(frozen=True)
class Outcome:
    warnings: list[str]
    failure: str | None  # set when a step rejected more than --max-reject-share allows


def step_counts(summary: Mapping[str, Any], order: Sequence[str] = ()) -> list[StepCounts]:
    """Every step of stats.json in the order the steps ran (`order`: info.json's steps), readers first."""
    rank = {name: i for i, name in enumerate([READ_STEP, *order])}
    steps = sorted(summary.get("steps", {}).items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    return [StepCounts(name, s["seen"], s["dropped"]) for name, s in steps]


def _images_missing(summary: Mapping[str, Any], steps: Sequence[StepCounts]) -> list[str]:
    """Per source: the first step at which every pair whose image was looked for had none."""
    found = []
    for source in sorted(summary.get("sources", {})):
        for step in steps:
            counts = summary["steps"][step.step]["by_source"].get(source)
            if not counts:
                continue
            reasons = [r for r in NOT_FOUND if counts["dropped"].get(r)]
            missing = sum(counts["dropped"][r] for r in reasons)
            before = sum(counts["dropped"].get(r, 0) for r in _BEFORE_IMAGE)
            if missing and missing + before == counts["seen"]:
                found.append(
                    f"source {source!r}: every image is missing ({', '.join(reasons)} for all {missing:,} pairs "
                    f"whose image was looked for, at step {step.step}): the source's image_root or its "
                    "image paths are probably wrong"
                )
                break
    return found


def assess(
    summary: Mapping[str, Any], order: Sequence[str] = (), max_reject_share: float | None = None
) -> Outcome:
    """Warnings (zero pairs read; zero kept; no image found for a source; a step that rejected every pair
    that reached it; a step that raised) and, with `max_reject_share`, the failure of the first step, in run order, that rejected a larger
    share of the pairs that reached it."""
    warnings = []
    if summary["totals"]["read"] == 0:
        warnings.append(
            "0 pairs were read: the files that `paths` matched hold no records (empty files? the wrong "
            "format?)"
        )
    elif summary["totals"]["kept"] == 0:
        # Each step may have dropped only part; together they left nothing, which no step line says.
        warnings.append(f"0 of {summary['totals']['read']:,} pairs were kept: every pair read was rejected")
    steps = step_counts(summary, order)
    warnings += _images_missing(summary, steps)
    no_image = {*NOT_FOUND, *_BEFORE_IMAGE}
    for step in steps:
        # A step that found no image anywhere was told above, with the likely cause.
        told = any(r in step.dropped for r in NOT_FOUND) and set(step.dropped) <= no_image
        if step.seen and step.rejected == step.seen and not told:
            warnings.append(
                f"{step.step} rejected {step.rejected:,} of {step.seen:,} pairs that reached it ({step.reasons()})"
            )
    for step in steps:  # a step that raises is a bug: its pairs are rejects, but say so loudly
        errors = {r: n for r, n in step.dropped.items() if r.startswith(STEP_ERROR)}
        for reason, n in sorted(errors.items()):
            warnings.append(
                f"step {reason[len(STEP_ERROR) :]} raised on {n:,} pairs ({reason}; the error is in each "
                "reject's meta.step_error): please report it"
            )
    failure = None
    over = [s for s in steps if max_reject_share is not None and s.seen and s.share > max_reject_share]
    if over:
        first = over[0]
        more = f" (also over it: {', '.join(s.step for s in over[1:])})" if len(over) > 1 else ""
        failure = (
            f"step {first.step} rejected {first.share:.1%} of the pairs that reached it ({first.rejected:,} "
            f"of {first.seen:,}: {first.reasons()}), more than --max-reject-share {max_reject_share:g} "
            f"allows{more}"
        )
    return Outcome(warnings, failure)


def warning_block(warnings: Sequence[str], report: str) -> str:
    """The warnings as a block that stands out at the end of a run's output."""
    bar = "!" * 100
    lines = [bar, "!! WARNING: the run finished, but its output is probably not what you meant:"]
    lines += [f"!!   - {w}" for w in warnings]
    lines += [f"!! Counts per step and reason: {report}", bar]
    return "\n".join(lines)
