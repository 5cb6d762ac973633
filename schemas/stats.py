"""Run statistics: mergeable partial counts that become stats.json.

Every piece is an integer count or a hash-chosen sample, so merging partials from any number of workers in
any order gives the same stats.json, byte for byte.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from vlcurate.schemas.record import Pair, stable_hash

SAMPLES_PER_REASON = 8
# The pseudo step that stands for the readers: it sees every pair read and "drops" those a reader already
# rejected (unreadable file, unparseable row, bad UTF-8, an image file that is not there), so that every
# reject is attributed to some step in stats.json, and per-step shares (--max-reject-share) cover reading.
READ_STEP = "read"


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


def _offer(table: dict[str, list[tuple]], reason: str, uid: str, value: Any) -> None:
    """Adds (hash, uid, value) to the reason's list if it would be among the SAMPLES_PER_REASON lowest."""
    chosen = table.setdefault(reason, [])
    entry = (stable_hash(uid), uid, value)
    if len(chosen) < SAMPLES_PER_REASON or _rank(entry) < _rank(chosen[-1]):
        _keep_lowest(chosen, [entry])


def _rank(entry: tuple) -> tuple:
    """(hash, uid), then the value where it compares (a caption): two rejects may share a uid."""
    return entry if isinstance(entry[2], (str, bytes)) else entry[:2]


def _keep_lowest(chosen: list[tuple], entries: list[tuple]) -> None:
    """Adds entries to a (hash, uid, ...) list and keeps the SAMPLES_PER_REASON lowest: the same choice in
    any order of adding and merging."""
    chosen.extend(entries)
    chosen.sort(key=_rank)
    del chosen[SAMPLES_PER_REASON:]


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
        # Thumbnails chosen by the same rule among the rejects that had an image where they were rejected
        # (images are dropped before the final count), so every sample with an image finds its own here.
        # Until made (merge, pickling, output), an entry holds the function that makes its JPEG.
        self.thumbnails: dict[str, list[tuple[int, str, Any]]] = {}  # reason -> [(hash, uid, jpeg)]

    # --- recording -------------------------------------------------------------------------------
    def observe_read(self, source: str, pairs: list[Pair]) -> None:
        """Counts pairs as read, and the readers' rejects among them as READ_STEP's drops."""
        self.read[source] += len(pairs)
        self.step_seen[(READ_STEP, source)] += len(pairs)
        for pair in pairs:
            if pair.reject is not None:
                self.step_dropped[(READ_STEP, source, pair.reject)] += 1

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
        _offer(self.samples, pair.reject, pair.uid, pair.caption_raw[:300])

    def offer_thumbnail(self, reason: str, uid: str, make: Callable[[], bytes | None]) -> None:
        """Keeps `make` (which returns a reject's thumbnail, or None) if the uid could be one of the
        reason's samples. Only the candidates still standing are made, when this partial is merged or
        pickled: decoding every rejected image would cost more than the run. A candidate pushed out by
        lower hashes cannot be a sample (those are all rejects of the same reason), so making late, and
        dropping entries whose image does not decode, loses no sample's thumbnail."""
        _offer(self.thumbnails, reason, uid, make)

    def _make_thumbnails(self) -> None:
        for reason, chosen in self.thumbnails.items():
            made = [(d, uid, t if isinstance(t, bytes) else t()) for d, uid, t in chosen]
            self.thumbnails[reason] = [entry for entry in made if entry[2] is not None]

    def sample_thumbnails(self) -> dict[str, bytes]:
        """uid -> thumbnail JPEG for the samples that have one."""
        self._make_thumbnails()
        sampled = {uid for chosen in self.samples.values() for _, uid, _ in chosen}
        return {uid: jpeg for chosen in self.thumbnails.values() for _, uid, jpeg in chosen if uid in sampled}

    def __getstate__(self) -> dict[str, Any]:
        self._make_thumbnails()  # partials travel with JPEGs, never with the images themselves
        return self.__dict__

    # --- merging ---------------------------------------------------------------------------------
    def merge(self, other: RunStats) -> RunStats:
        self._bin_pending()
        other._bin_pending()
        self._make_thumbnails()
        other._make_thumbnails()
        for name in ("read", "kept", "rejected", "step_seen", "step_dropped", "step_changed", "overlaps"):
            getattr(self, name).update(getattr(other, name))
        for key, hist in other.histograms.items():
            if key in self.histograms:
                self.histograms[key].merge(hist)
            else:
                self.histograms[key] = Histogram(hist.low, hist.high, hist.bins)
                self.histograms[key].merge(hist)
        for mine, theirs in ((self.samples, other.samples), (self.thumbnails, other.thumbnails)):
            for reason, chosen in theirs.items():
                _keep_lowest(mine.setdefault(reason, []), chosen)
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
        return dumps_stats(self.to_json())


def dumps_stats(summary: dict[str, Any]) -> str:
    """stats.json's text for `summary` (RunStats.to_json, plus what the run adds: applied thresholds)."""
    return json.dumps(summary, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
