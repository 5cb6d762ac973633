"""check.json's numbers: mergeable per-task counts of a `vlcurate check` run (plain Python).

Structural side (every record): samples, a token-length histogram, supervised tokens, findings by reason.
Model side (the samples the model scored): losses with the own images and the image-swap gain, as
p50/p99, and model findings by reason. Merging partials from any number of workers in any order gives
the same JSON, byte for byte (counts only; the loss quantiles are computed once per task from all of its
losses, in pipelines/check.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from vlcurate.schemas.stats import Histogram

TOKEN_BINS = 32


class TaskCounts:
    def __init__(self, max_tokens: int) -> None:
        self.samples = 0
        self.tokens = 0
        self.supervised = 0
        self.findings: Counter[str] = Counter()
        self.samples_with_findings = 0
        self.lengths = Histogram(0, max_tokens, TOKEN_BINS)

    def merge(self, other: TaskCounts) -> None:
        self.samples += other.samples
        self.tokens += other.tokens
        self.supervised += other.supervised
        self.findings.update(other.findings)
        self.samples_with_findings += other.samples_with_findings
        self.lengths.merge(other.lengths)


class CheckCounts:
    """Structural counts per task; `add` one record at a time, `merge` partials."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.tasks: dict[str, TaskCounts] = {}

    def _task(self, task: str) -> TaskCounts:
        if task not in self.tasks:
            self.tasks[task] = TaskCounts(self.max_tokens)
        return self.tasks[task]

    def add(self, task: str, tokens: int, supervised: int, reasons: Iterable[str]) -> None:
        entry = self._task(task)
        entry.samples += 1
        entry.tokens += tokens
        entry.supervised += supervised
        if tokens:
            entry.lengths.add(tokens)
        reasons = sorted(set(reasons))
        entry.findings.update(reasons)
        entry.samples_with_findings += bool(reasons)

    def merge(self, other: CheckCounts) -> CheckCounts:
        for task, entry in other.tasks.items():
            self._task(task).merge(entry)
        return self


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile of the finite values (nearest rank on the sorted list), None when there are none."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return None
    return finite[min(len(finite) - 1, max(0, math.ceil(q * len(finite)) - 1))]


def loss_summary(losses: list[float], gains: list[float], flagged: Mapping[str, int]) -> dict[str, Any]:
    """The model side of one task: how many were scored, loss and image-gain quantiles, findings."""
    return {
        "scored": len(losses),
        "loss_p50": _round(quantile(losses, 0.5)),
        "loss_p99": _round(quantile(losses, 0.99)),
        "image_gain_p50": _round(quantile(gains, 0.5)),
        "image_gain_p01": _round(quantile(gains, 0.01)),
        "findings_by_reason": dict(sorted(flagged.items())),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summary_json(counts: CheckCounts, model: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Totals and per-task entries of check.json; `model` is loss_summary per task."""
    tasks: dict[str, Any] = {}
    structural: Counter[str] = Counter()
    model_findings: Counter[str] = Counter()
    for task in sorted(set(counts.tasks) | set(model)):
        entry = counts.tasks.get(task) or TaskCounts(counts.max_tokens)
        structural.update(entry.findings)
        side = model.get(task)
        if side:
            model_findings.update(side["findings_by_reason"])
        tasks[task] = {
            "samples": entry.samples,
            "tokens": entry.tokens,
            "supervised_share": round(entry.supervised / entry.tokens, 4) if entry.tokens else None,
            "samples_with_findings": entry.samples_with_findings,
            "findings_by_reason": dict(sorted(entry.findings.items())),
            "token_lengths": entry.lengths.to_json(),
            "model": side,
        }
    return {
        "samples": sum(t["samples"] for t in tasks.values()),
        "structural_findings": sum(structural.values()),
        "structural_findings_by_reason": dict(sorted(structural.items())),
        "model_findings": sum(model_findings.values()),
        "model_findings_by_reason": dict(sorted(model_findings.items())),
        "tasks": tasks,
    }
