"""The Beam coder of PairBatch (and its base, which the CLIP coders share), and a helper that declares
PCollections of batches.

Beam samples elements of every PCollection to estimate byte sizes for its metrics, and with the default
coder an estimate is a full pickle. A batch of image pairs is tens of MB, and a job has few batches per
PCollection, so nearly every batch was pickled once more per step just to be measured. These coders
encode like the default (pickle) but estimate sizes from the records' field lengths.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import apache_beam as beam

from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import Pair

_PER_RECORD = 200  # fixed fields, dicts and pickle framing: an estimate, used only for metrics
_SAMPLE = 8


class SampledPickleCoder(beam.coders.Coder):
    """Encodes like Beam's default coder (pickle); estimates an element's size from the byte lengths of
    its first few items, scaled to all of them. Beam calls estimate_size often and needs an order of
    magnitude only. Subclasses say what an element's items are and what one item weighs."""

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def items(self, value: Any) -> Sequence:
        return value

    def item_size(self, item: Any) -> int:
        raise NotImplementedError

    def estimate_size(self, value: Any) -> int:
        items = self.items(value)
        sample = items[:_SAMPLE]
        if not sample:
            return 0
        return sum(self.item_size(item) for item in sample) * len(items) // len(sample)


class PairBatchCoder(SampledPickleCoder):
    def item_size(self, pair: Pair) -> int:
        return (
            _PER_RECORD
            + len(pair.image or b"")
            + len(pair.embedding or b"")
            + len(pair.caption)
            + len(pair.caption_raw)
        )

    def to_type_hint(self):
        return PairBatch


beam.coders.registry.register_coder(PairBatch, PairBatchCoder)


def of_batches(*pcolls):
    """Declares PCollections as holding PairBatch elements (so Beam uses PairBatchCoder), for outputs
    whose type Beam cannot infer (tagged outputs of multi-output ParDos). Returns the first."""
    for pcoll in pcolls:
        pcoll.element_type = PairBatch
    return pcolls[0]
