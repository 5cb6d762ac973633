"""Run statistics: mergeable partial counts that become stats.json.

Every piece is an integer count or a hash-chosen sample, so merging partials from any number of workers in
any order gives the same stats.json, byte for byte.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from vlcurate.schemas.record import Pair, stable_hash

SAMPLES_PER_REASON = 8


class Histogram:
    """Fixed-bin histogram; values outside [low, high) land in the first or last bin."""

    def __init__(self, low: float, high: float, bins: int) -> None:
        self.low, self.high, self.bins = float(low), float(high), int(bins)
        self.counts = [0] * self.bins

    def add(self, value: float) -> None:
        if value != value:  # NaN: a score that could not be computed is counted in no bin
            return
        position = int((value - self.low) / (self.high - self.low) * self.bins)
        self.counts[min(self.bins - 1, max(0, position))] += 1

    def add_many(self, values: list[float]) -> None:
        """`add` for a batch: the same bins, computed with numpy."""
        x = np.asarray(values, dtype=np.float64)
        x = x[~np.isnan(x)]
        positions = ((x - self.low) / (self.high - self.low) * self.bins).astype(np.int64)
        counts = np.bincount(np.clip(positions, 0, self.bins - 1), minlength=self.bins)
        self.counts = [a + int(b) for a, b in zip(self.counts, counts)]

    def merge(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "bins": self.bins, "counts": self.counts}


class RunStats:
    """Counts per source and per step, score histograms, and a few sample rejects per reason."""

    def __init__(self) -> None:
        self.read: Counter[str] = Counter()  # source -> pairs read
        self.kept: Counter[str] = Counter()  # source -> pairs kept
        self.rejected: Counter[tuple[str, str]] = Counter()  # (source, reason) -> pairs
        self.step_seen: Counter[tuple[str, str]] = Counter()  # (step, source)
        self.step_dropped: Counter[tuple[str, str, str]] = Counter()  # (step, source, reason)
        self.step_changed: Counter[tuple[str, str]] = Counter()  # (step, source): captions rewritten
        self.overlaps: Counter[str] = Counter()  # audit mode: "reason+reason" -> pairs
        self.histograms: dict[tuple[str, str], Histogram] = {}  # (score, source)
        # Scores waiting to be binned, in batches (binning one value at a time is a hot path).
        self._pending: dict[tuple[str, str], tuple[tuple[float, float, int], list[float]]] = {}
        self.samples: dict[str, list[tuple[int, str, str]]] = {}  # reason -> [(hash, uid, caption)]

    # --- recording -------------------------------------------------------------------------------
    def observe_scores(
        self, name: str, source: str, values: list[float], bins: tuple[float, float, int]
    ) -> None:
        pending = self._pending.get((name, source))
        if pending is None:
            pending = self._pending[(name, source)] = (bins, [])
        pending[1].extend(values)

    def _bin_pending(self) -> None:
        for key, (bins, values) in self._pending.items():
            hist = self.histograms.get(key)
            if hist is None:
                hist = self.histograms[key] = Histogram(*bins)
            hist.add_many(values)
        self._pending = {}

    def observe_final(self, pair: Pair) -> None:
        """Counts a pair at the end of the pipeline, kept or rejected."""
        if pair.reject is None:
            self.kept[pair.source] += 1
            return
        self.rejected[(pair.source, pair.reject)] += 1
        extra = pair.meta.get("audit_reasons")
        if extra:
            self.overlaps["+".join(sorted({pair.reject, *extra}))] += 1
        self._sample(pair.reject, pair)

    def _sample(self, reason: str, pair: Pair) -> None:
        chosen = self.samples.setdefault(reason, [])
        digest = stable_hash(pair.uid)
        if len(chosen) >= SAMPLES_PER_REASON and (digest, pair.uid) >= chosen[-1][:2]:
            return  # would be cut below anyway
        chosen.append((digest, pair.uid, pair.caption_raw[:300]))
        chosen.sort()
        del chosen[SAMPLES_PER_REASON:]

    # --- merging ---------------------------------------------------------------------------------
    def merge(self, other: RunStats) -> RunStats:
        self._bin_pending()
        other._bin_pending()
        for name in ("read", "kept", "rejected", "step_seen", "step_dropped", "step_changed", "overlaps"):
            getattr(self, name).update(getattr(other, name))
        for key, hist in other.histograms.items():
            if key in self.histograms:
                self.histograms[key].merge(hist)
            else:
                self.histograms[key] = Histogram(hist.low, hist.high, hist.bins)
                self.histograms[key].merge(hist)
        for reason, chosen in other.samples.items():
            mine = self.samples.setdefault(reason, [])
            mine.extend(chosen)
            mine.sort()
            del mine[SAMPLES_PER_REASON:]
        return self

    # --- output ----------------------------------------------------------------------------------
    def sources(self) -> list[str]:
        return sorted(set(self.read) | set(self.kept) | {s for s, _ in self.rejected})

    def to_json(self) -> dict[str, Any]:
        self._bin_pending()
        by_source = {}
        for source in self.sources():
            rejects = {r: n for (s, r), n in sorted(self.rejected.items()) if s == source}
            by_source[source] = {
                "read": self.read[source],
                "kept": self.kept[source],
                "rejected": sum(rejects.values()),
                "rejected_by_reason": rejects,
            }
        steps: dict[str, Any] = {}
        for (step, source), seen in sorted(self.step_seen.items()):
            entry = steps.setdefault(step, {"seen": 0, "dropped": {}, "changed": 0, "by_source": {}})
            dropped = {
                r: n for (st, so, r), n in sorted(self.step_dropped.items()) if (st, so) == (step, source)
            }
            changed = self.step_changed[(step, source)]
            entry["seen"] += seen
            entry["changed"] += changed
            for reason, n in dropped.items():
                entry["dropped"][reason] = entry["dropped"].get(reason, 0) + n
            entry["by_source"][source] = {"seen": seen, "dropped": dropped, "changed": changed}
        histograms: dict[str, Any] = {}
        for (name, source), hist in sorted(self.histograms.items()):
            histograms.setdefault(name, {})[source] = hist.to_json()
        return {
            "totals": {
                "read": sum(self.read.values()),
                "kept": sum(self.kept.values()),
                "rejected": sum(self.rejected.values()),
            },
            "sources": by_source,
            "steps": steps,
            "overlaps": dict(sorted(self.overlaps.items())),
            "histograms": histograms,
            "samples": {
                reason: [{"uid": uid, "caption_raw": caption} for _, uid, caption in chosen]
                for reason, chosen in sorted(self.samples.items())
            },
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
