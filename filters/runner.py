"""The step engine: runs a segment of the step chain over batches of records and counts what each step did.

Plain Python on plain records, no Beam: the pipeline's DoFns (pipelines/steps.py RunSteps, pipelines/group_steps.py)
wrap it, and tests and benchmarks call it directly. Each step runs over the batch's live records before the
next step starts, so the per-step bookkeeping is paid per batch, not per record. What it counts goes into a
RunStats (schemas/stats.py): per step and source `seen`, `dropped` by reason and `changed` (a caption a
step rewrote), and the steps' score histograms; `kept` is seen minus dropped.

A step that raises on a record is a bug, but it still must not fail the job or lose the record: the record
becomes a reject `step_error_<step>` with the message in meta.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vlcurate.filters.base import Step, reject
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import Pair
from vlcurate.schemas.stats import RunStats

STEP_ERROR = "step_error_"  # the reason prefix of a pair a step raised on (pipelines/outcome.py warns)


class StepRunner:
    """Runs one segment of steps, per source, over batches of pairs (in place), counting into `stats`.

    `steps_by_source`: each source's steps in order (Chain.by_source, or a part of it: Chain.split).
    `audit`: every step sees every pair, rejected or not (a rejected pair collects the extra reasons);
    otherwise a pair stops at its first reject. `count_read`: the first segment counts every pair read.
    """

    def __init__(
        self, steps_by_source: dict[str, list[Step]], audit: bool = False, count_read: bool = False
    ) -> None:
        self.steps_by_source = steps_by_source
        self.audit = audit
        self.count_read = count_read
        self.stats = RunStats()
        self._bound: dict[str, list[Step]] = {}
        self._pools: dict[int, ThreadPoolExecutor] = {}

    def take_stats(self) -> RunStats:
        """The counts so far; counting goes on into a fresh RunStats (the pipeline: one per bundle)."""
        stats, self.stats = self.stats, RunStats()
        return stats

    def run(self, batch: Sequence[Pair], computed_thresholds: dict[str, Any] | None = None) -> PairBatch:
        """Runs the segment over `batch` and returns its pairs still kept, in batch order; the rejected ones
        carry their reason. `computed_thresholds`: {source: thresholds} for steps that keep a fraction."""
        by_source: dict[str, list[Pair]] = {}
        for pair in batch:
            by_source.setdefault(pair.source, []).append(pair)
        for source, pairs in by_source.items():
            if self.count_read:
                self.stats.observe_read(source, pairs)
            for step in self._steps(source, computed_thresholds):
                if not self.audit:
                    pairs = [p for p in pairs if p.reject is None]
                if not pairs:
                    break
                self._run_step(step, source, pairs)
        return PairBatch(p for p in batch if p.reject is None)

    def _steps(self, source: str, computed: dict[str, Any] | None) -> list[Step]:
        """The source's steps; a step with a computed threshold gets the one computed for its source."""
        if not computed or source not in computed:
            return self.steps_by_source[source]
        cached = self._bound.get(source)
        if cached is None:
            cached = self._bound[source] = [
                s.with_computed_threshold(computed[source]) for s in self.steps_by_source[source]
            ]
        return cached

    def _run_step(self, step: Step, source: str, pairs: list[Pair]) -> None:
        stats = self.stats
        changed = 0
        dropped: list[str] = []
        before = [(pair.caption, _reason_count(pair)) for pair in pairs]
        threads = step.apply_threads()
        if threads > 1 and len(pairs) > 1:  # each pair on its own; the order of `errors` is `pairs`'
            errors = list(self._pool(threads).map(_apply, [step] * len(pairs), pairs))
        else:
            errors = [_apply(step, pair) for pair in pairs]
        for pair, (caption, reasons_before), error in zip(pairs, before, errors):
            if error is not None:  # see module docstring
                reject(pair, f"{STEP_ERROR}{step.name}")
                pair.meta["step_error"] = f"{type(error).__name__}: {error}"[:300]
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

    def close(self) -> None:
        """Lets the threads of threaded steps go (a worker's teardown); the runner makes new ones if used
        again."""
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()

    def _pool(self, threads: int) -> ThreadPoolExecutor:
        """One pool per thread count, made on first use and kept for the runner's life (a worker's)."""
        pool = self._pools.get(threads)
        if pool is None:
            pool = self._pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="vlcurate-step")
        return pool


def _apply(step: Step, pair: Pair) -> Exception | None:
    """Applies `step` to `pair`; what it raised, or None."""
    try:
        step.apply(pair)
    except Exception as exc:
        return exc
    return None


def _reason_count(pair: Pair) -> int:
    if pair.reject is None:
        return 0
    return 1 + len(pair.meta.get("audit_reasons", ()))


def mark_losers(
    keyed_pairs: Iterable[tuple[str, Pair]], winners: dict[str, str], steps: dict[str, Step], stats: RunStats
) -> tuple[list[Pair], list[Pair]]:
    """A group step over (group key, pair) of one bucket: every pair that is not its key's winner becomes a
    reject (its source's step's `mark_loser`), counted in `stats` as the step's seen and dropped per
    source. `steps`: {source: the step}. Returns (kept, losers), each in the order given."""
    kept: list[Pair] = []
    losers: list[Pair] = []
    for key, pair in keyed_pairs:
        step = steps[pair.source]
        stats.step_seen[(step.name, pair.source)] += 1
        if pair.uid == winners[key]:
            kept.append(pair)
            continue
        step.mark_loser(pair, winners[key])
        stats.step_dropped[(step.name, pair.source, pair.reject)] += 1
        losers.append(pair)
    return kept, losers
