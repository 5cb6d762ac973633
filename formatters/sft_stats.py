"""The counts of a `vlcurate sft` run (its stats.json): records read and rejected per input, dialogues and
samples per kind, splits, tokens, and a few example ids per reject reason. Plain counts, so partials made
by any number of workers merge, in any order, into the same stats.json (pipelines/sft.py merges them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from vlcurate.formatters.sft import SftReject, SftSample
from vlcurate.schemas.stats import Histogram

EXAMPLES_PER_REASON = 5


class SftStats:
    """Mergeable counts of one run; merging partials in any order gives the same stats.json."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.records: Counter[tuple[str, str]] = Counter()  # (input, kind) -> records read
        self.record_rejects: Counter[tuple[str, str]] = Counter()  # (input, reason)
        self.dialogues: Counter[str] = Counter()  # kind -> dialogues built
        self.dialogue_records: Counter[str] = Counter()  # kind -> input records those dialogues hold
        self.sample_rejects: Counter[tuple[str, str]] = Counter()  # (kind, reason): dialogues or pieces
        self.unused: Counter[str] = Counter()  # reason -> records left out on purpose
        self.samples: Counter[str] = Counter()  # kind -> samples written
        self.split: Counter[str] = Counter()  # "dialogues" split, "pieces" they gave
        self.tokens: Counter[str] = Counter()  # "total", "supervised"
        self.images: Counter[int] = Counter()  # images per sample -> samples
        self.turns: Counter[int] = Counter()  # exchanges per sample -> samples
        self.length = Histogram(0, max_len, max(1, max_len // 64))
        self.supervised_share = Histogram(0.0, 1.0, 20)
        self.examples: dict[str, list[str]] = {}  # reason -> a few ids

    def add_dialogue(self, kind: str, records: int) -> None:
        self.dialogues[kind] += 1
        self.dialogue_records[kind] += records

    def reject_record(self, row: Mapping[str, Any]) -> None:
        self.record_rejects[(row["input"], row["reason"])] += 1
        self._example(row["reason"], row["id"])

    def reject_sample(self, reject: SftReject) -> None:
        self.sample_rejects[(reject.kind, reject.reason)] += 1
        self._example(reject.reason, reject.id)

    def add_sample(self, sample: SftSample) -> None:
        self.samples[sample.kind] += 1
        self.tokens["total"] += sample.length
        self.tokens["supervised"] += sample.supervised
        self.images[len(sample.images)] += 1
        self.turns[sample.turns] += 1
        self.length.add(sample.length)
        self.supervised_share.add(sample.supervised / sample.length)
        if sample.parts > 1:
            self.split["pieces"] += 1
            self.split["dialogues"] += sample.part == 1

    def _example(self, reason: str, item_id: str) -> None:
        chosen = self.examples.setdefault(reason, [])
        chosen.append(item_id)
        chosen.sort()
        del chosen[EXAMPLES_PER_REASON:]

    def merge(self, other: SftStats) -> SftStats:
        for name in (
            "records",
            "record_rejects",
            "dialogues",
            "dialogue_records",
            "sample_rejects",
            "unused",
            "samples",
            "split",
            "tokens",
            "images",
            "turns",
        ):
            getattr(self, name).update(getattr(other, name))
        self.length.merge(other.length)
        self.supervised_share.merge(other.supervised_share)
        for reason, ids in other.examples.items():
            for item_id in ids:
                self._example(reason, item_id)
        return self

    def to_json(self) -> dict[str, Any]:
        def by(counter: Counter, key: int) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for k, n in sorted(counter.items()):
                out.setdefault(k[key], {})[k[1 - key]] = n
            return out

        total = self.tokens["total"]
        return {
            "totals": {
                "records_read": sum(self.records.values()),
                "records_rejected": sum(self.record_rejects.values()),
                "records_unused": sum(self.unused.values()),
                "records_in_dialogues": sum(self.dialogue_records.values()),
                "dialogues_built": sum(self.dialogues.values()),
                "samples_written": sum(self.samples.values()),
                "samples_rejected": sum(self.sample_rejects.values()),
            },
            "records_by_input": by(self.records, 0),
            "record_rejects_by_input": by(self.record_rejects, 0),
            "unused": dict(sorted(self.unused.items())),
            "dialogues_by_kind": dict(sorted(self.dialogues.items())),
            "samples_by_kind": dict(sorted(self.samples.items())),
            "sample_rejects_by_kind": by(self.sample_rejects, 0),
            "rejects_by_reason": dict(
                sorted((_by_reason(self.record_rejects) + _by_reason(self.sample_rejects)).items())
            ),
            "split": {"dialogues": self.split["dialogues"], "pieces": self.split["pieces"]},
            "tokens": {
                "total": total,
                "supervised": self.tokens["supervised"],
                "supervised_share": round(self.tokens["supervised"] / total, 6) if total else 0.0,
            },
            "images_per_sample": {str(k): n for k, n in sorted(self.images.items())},
            "turns_per_sample": {str(k): n for k, n in sorted(self.turns.items())},
            "histograms": {
                "token_length": self.length.to_json(),
                "supervised_share": self.supervised_share.to_json(),
            },
            "reject_examples": dict(sorted(self.examples.items())),
        }


def _by_reason(counter: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (_, reason), n in counter.items():
        out[reason] += n
    return out
