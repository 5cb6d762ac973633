"""Run statistics: mergeable partial counts that become stats.json.

Every piece is an integer count or a sample chosen by a fixed rank (a uid hash, a distance to a threshold),
so merging partials from any number of workers in any order gives the same stats.json, byte for byte. Each
sample table keeps a fixed number per key, so a partial's size does not grow with the input.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from vlcurate.schemas.record import Pair, stable_hash

SAMPLES_PER_REASON = 8
NEAR_PER_SIDE = 6  # pairs per (threshold, source, side of it) in the near-threshold galleries
KEPT_PER_SOURCE = 8  # kept pairs per source in the kept gallery
CAPTION_CHARS = 300  # of a caption shown in stats.json and the report
# The pseudo step that stands for the readers: it sees every pair read and "drops" those a reader already
# rejected (unreadable file, unparseable row, bad UTF-8, an image file that is not there), so that every
# reject is attributed to some step in stats.json, and per-step shares (--max-reject-share) cover reading.
READ_STEP = "read"
# pair -> what makes its thumbnail JPEG (None when it has no image), for the galleries (pipelines/steps.py).
ThumbnailMaker = Callable[[Pair], Callable[[], "bytes | None"] | None]


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


def _keep_lowest(
    chosen: list[tuple], entries: list[tuple], limit: int = SAMPLES_PER_REASON, rank: Callable = _rank
) -> None:
    """Adds entries to a list and keeps the `limit` of lowest `rank` (for samples: (hash, uid, ...)): the
    same choice in any order of adding and merging."""
    chosen.extend(entries)
    chosen.sort(key=rank)
    del chosen[limit:]


def _first(entry: tuple) -> tuple:
    """The rank of a gallery entry (rank, data, picture): data and picture follow from it."""
    return entry[0]


def rounded(value: float) -> float | None:
    """A score for stats.json: 4 significant digits (the same text on every platform), None if not finite."""
    return float(f"{value:.4g}") if math.isfinite(value) else None


def _sample_extra(pair: Pair) -> str:
    """What a sample reject shows beside its caption, as sorted JSON: the pair's scores and, for a
    duplicate, the uid it duplicates. A string, so that it also ranks two rejects that share a uid."""
    extra: dict[str, Any] = {"scores": {k: rounded(v) for k, v in pair.scores.items()}}
    if "duplicate_of" in pair.meta:
        extra["duplicate_of"] = str(pair.meta["duplicate_of"])
    return json.dumps(extra, sort_keys=True, ensure_ascii=False)


def _identity(pair: Pair) -> tuple:
    """Ranks pairs that share a uid (a tar that reuses a key): where each was read, then its caption."""
    return pair.uid, pair.image_ref or "", pair.caption


def _gallery_data(pair: Pair, **fields: Any) -> dict[str, Any]:
    return {
        "uid": pair.uid,
        "caption": pair.caption[:CAPTION_CHARS],
        "width": pair.width,
        "height": pair.height,
        **fields,
    }


def _make_pictures(table: dict[Any, list[tuple]]) -> None:
    """Makes the thumbnails still waiting in a gallery table's entries (rank, data, picture)."""
    for chosen in table.values():
        for i, (rank, data, picture) in enumerate(chosen):
            if callable(picture):
                chosen[i] = (rank, data, picture())


def gallery_key(*parts: str | int) -> str:
    """The key of a near-threshold or kept pair's thumbnail in RunStats.sample_thumbnails (the galleries
    show pairs by position: two pairs in one gallery may share a uid)."""
    return json.dumps(parts, ensure_ascii=False)


UNDETERMINED = "und"  # the language of a pair the language step never saw


class RunStats:
    """Counts per source and per step, score histograms, a few sample rejects per reason, and the pairs of
    the report's galleries: those nearest each threshold on either side, and a few kept pairs per source."""

    def __init__(self) -> None:
        self.read: Counter[str] = Counter()  # source -> pairs read
        self.kept: Counter[str] = Counter()  # source -> pairs kept
        self.rejected: Counter[tuple[str, str]] = Counter()  # (source, reason) -> pairs
        # (source, caption language or "und", "kept" | "rejected") -> pairs
        self.languages: Counter[tuple[str, str, str]] = Counter()
        self.step_seen: Counter[tuple[str, str]] = Counter()  # (step, source)
        self.step_dropped: Counter[tuple[str, str, str]] = Counter()  # (step, source, reason)
        self.step_changed: Counter[tuple[str, str]] = Counter()  # (step, source): captions rewritten
        self.overlaps: Counter[str] = Counter()  # audit mode: "reason+reason" -> pairs
        self.histograms: dict[tuple[str, str], Histogram] = {}  # (score, source)
        # Scores waiting to be binned, in batches (binning one value at a time is a hot path).
        self._pending: dict[tuple[str, str], tuple[tuple[float, float, int], list[float]]] = {}
        # reason -> [(hash, uid, caption, extra: _sample_extra)]
        self.samples: dict[str, list[tuple[int, str, str, str]]] = {}
        # Thumbnails chosen by the same rule among the rejects that had an image where they were rejected
        # (images are dropped before the final count), so every sample with an image finds its own here.
        # Until made (merge, pickling, output), an entry holds the function that makes its JPEG.
        self.thumbnails: dict[str, list[tuple[int, str, Any]]] = {}  # reason -> [(hash, uid, jpeg)]
        # Galleries, entries (rank, data, picture), the picture a thumbnail's JPEG (or what makes it: made
        # like the thumbnails above), None without one. `near`: the NEAR_PER_SIDE pairs closest to the
        # threshold on each side, among the pairs that met the step (offer_near); `kept_samples`: the
        # KEPT_PER_SOURCE kept pairs of lowest uid hash.
        self.near: dict[tuple[str, str, str], list[tuple]] = {}  # ("step.param", source, "below"/"above")
        # "step.param" -> {"step", "param", "score", "direction"}
        self.near_rules: dict[str, dict[str, str]] = {}
        self.kept_samples: dict[str, list[tuple]] = {}  # source -> entries

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

    def observe_final(self, pair: Pair, thumbnail: ThumbnailMaker | None = None) -> None:
        """Counts a pair at the end of the pipeline, kept or rejected. `thumbnail(pair)`: what makes a kept
        pair's thumbnail, called if the pair is among the kept gallery's candidates."""
        self.languages[
            (pair.source, pair.lang or UNDETERMINED, "kept" if pair.reject is None else "rejected")
        ] += 1
        if pair.reject is None:
            self.kept[pair.source] += 1
            chosen = self.kept_samples.setdefault(pair.source, [])
            digest = stable_hash(pair.uid)
            if len(chosen) >= KEPT_PER_SOURCE and digest > chosen[-1][0][0]:
                return
            rank = (digest, *_identity(pair))
            if len(chosen) < KEPT_PER_SOURCE or rank < chosen[-1][0]:
                data = _gallery_data(pair, scores={k: rounded(v) for k, v in sorted(pair.scores.items())})
                picture = thumbnail(pair) if thumbnail is not None else None
                _keep_lowest(chosen, [(rank, data, picture)], KEPT_PER_SOURCE, _first)
            return
        self.rejected[(pair.source, pair.reject)] += 1
        extra = pair.meta.get("audit_reasons")
        if extra:
            self.overlaps["+".join(sorted({pair.reject, *extra}))] += 1
        chosen = self.samples.setdefault(pair.reject, [])
        entry = (stable_hash(pair.uid), pair.uid, pair.caption_raw[:CAPTION_CHARS])
        if len(chosen) < SAMPLES_PER_REASON or entry <= chosen[-1][:3]:  # ties: extra decides
            _keep_lowest(chosen, [(*entry, _sample_extra(pair))])

    def offer_near(
        self,
        rule: dict[str, str],
        pair: Pair,
        threshold: float,
        thumbnail: ThumbnailMaker | None = None,
        value_of: Callable[[Pair], float | None] | None = None,
    ) -> None:
        """Offers a pair that met a threshold to the gallery of its side, kept if it is among the
        NEAR_PER_SIDE closest to the threshold (ties: lowest uid hash, then uid). `rule`: {"name" (what-if
        name, "step.param"), "step", "param", "score", "direction"}, "min" when a pair passes at score >=
        threshold, "max" at score <= it; a pair exactly at the threshold counts on the side that passes.
        `value_of(pair)` (Step.what_if_value), called only for a pair that could be chosen: the number the
        threshold is compared with where that is not simply the score; None or infinite where this
        threshold does not decide the pair (another threshold of its step rejects it, or it applies to
        other pairs), which is then not offered. `thumbnail` as in observe_final; what it returns is
        called, like offer_thumbnail's `make`, only for the pairs still standing when the partial is merged
        or pickled."""
        value = pair.scores.get(rule["score"], math.nan)
        if not (math.isfinite(value) and math.isfinite(threshold)):
            return
        distance = abs(value - threshold)
        if value == threshold:
            side = "above" if rule["direction"] == "min" else "below"
        else:
            side = "above" if value > threshold else "below"
        key = (rule["name"], pair.source, side)
        chosen = self.near.get(key, ())
        rank = None
        if len(chosen) >= NEAR_PER_SIDE:  # the cheap checks first: most pairs stop at one of them
            if distance > chosen[-1][0][0]:
                return
            rank = (distance, stable_hash(pair.uid), *_identity(pair))
            if rank > chosen[-1][0]:
                return
        if value_of is not None and value_of(pair) != value:
            return
        rank = rank or (distance, stable_hash(pair.uid), *_identity(pair))
        if not chosen:
            chosen = self.near[key] = []
            self.near_rules[rule["name"]] = {k: rule[k] for k in ("step", "param", "score", "direction")}
        data = _gallery_data(
            pair, value=rounded(value), threshold=rounded(threshold), lang=pair.lang, reject=pair.reject
        )
        picture = thumbnail(pair) if thumbnail is not None else None
        _keep_lowest(chosen, [(rank, data, picture)], NEAR_PER_SIDE, _first)

    def near_bar(self, name: str, source: str, side: str) -> float:
        """How far from the threshold a pair may be and still enter that side's gallery: its farthest
        pair's distance once full (a tie may still enter), infinity until then. For callers that offer
        many pairs (pipelines/steps.py, NearThresholds) to pass most over without a call."""
        chosen = self.near.get((name, source, side), ())
        return chosen[-1][0][0] if len(chosen) >= NEAR_PER_SIDE else math.inf

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
        _make_pictures(self.near)
        _make_pictures(self.kept_samples)

    def sample_thumbnails(self) -> dict[str, bytes]:
        """Thumbnail JPEGs for report.html: by uid for the sample rejects that have one, and by gallery_key
        for the pairs of the galleries that have one (as placed in to_json)."""
        self._make_thumbnails()
        sampled = {entry[1] for chosen in self.samples.values() for entry in chosen}
        out = {uid: jpeg for chosen in self.thumbnails.values() for _, uid, jpeg in chosen if uid in sampled}
        for (name, source, side), chosen in self.near.items():
            for i, (_, _, jpeg) in enumerate(sorted(chosen, key=_by_value)):
                if jpeg is not None:
                    out[gallery_key("near", name, source, side, i)] = jpeg
        for source, chosen in self.kept_samples.items():
            for i, (_, _, jpeg) in enumerate(chosen):
                if jpeg is not None:
                    out[gallery_key("kept", source, i)] = jpeg
        return out

    def __getstate__(self) -> dict[str, Any]:
        self._make_thumbnails()  # partials travel with JPEGs, never with the images themselves
        return self.__dict__

    # --- merging ---------------------------------------------------------------------------------
    def merge(self, other: RunStats) -> RunStats:
        self._bin_pending()
        other._bin_pending()
        self._make_thumbnails()
        other._make_thumbnails()
        for name in (
            "read",
            "kept",
            "rejected",
            "languages",
            "step_seen",
            "step_dropped",
            "step_changed",
            "overlaps",
        ):
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
        for key, chosen in other.near.items():
            _keep_lowest(self.near.setdefault(key, []), chosen, NEAR_PER_SIDE, _first)
        self.near_rules.update(other.near_rules)
        for source, chosen in other.kept_samples.items():
            _keep_lowest(self.kept_samples.setdefault(source, []), chosen, KEPT_PER_SOURCE, _first)
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
            "languages": self._languages_json(),
            "steps": steps,
            "overlaps": dict(sorted(self.overlaps.items())),
            "histograms": histograms,
            "samples": {
                reason: [
                    {"uid": uid, "caption_raw": caption, **json.loads(extra)}
                    for _, uid, caption, extra in chosen
                ]
                for reason, chosen in sorted(self.samples.items())
            },
            **self._galleries_json(),
        }

    def _languages_json(self) -> dict[str, dict[str, dict[str, int]]]:
        """{source: {caption language: {"kept", "rejected"}}}; `und` for pairs the language step never saw
        (rejected before it, or a run without it)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (source, lang, fate), n in sorted(self.languages.items()):
            out.setdefault(source, {}).setdefault(lang, {"kept": 0, "rejected": 0})[fate] = n
        return out

    def _galleries_json(self) -> dict[str, Any]:
        """`near_threshold`: {"step.param": {source: {"step", "param", "score", "direction", "below": [...],
        "above": [...]}}}, each side in value order; `kept_samples`: {source: [...]}, in uid hash order."""
        out: dict[str, Any] = {}
        for (name, source, side), chosen in sorted(self.near.items()):
            by_source = out.setdefault("near_threshold", {}).setdefault(name, {})
            entry = by_source.setdefault(source, {**self.near_rules[name], "below": [], "above": []})
            entry[side] = [data for _, data, _ in sorted(chosen, key=_by_value)]
        if self.kept_samples:
            out["kept_samples"] = {
                source: [data for _, data, _ in chosen]
                for source, chosen in sorted(self.kept_samples.items())
            }
        return out

    def dumps(self) -> str:
        return dumps_stats(self.to_json())


def _by_value(entry: tuple) -> tuple:
    """A near-threshold gallery in value order (then rank): a row that reads along the score axis."""
    return entry[1]["value"], entry[0]


def dumps_stats(summary: dict[str, Any]) -> str:
    """stats.json's text for `summary` (RunStats.to_json, plus what the run adds: applied thresholds)."""
    return json.dumps(summary, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
