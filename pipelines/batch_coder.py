"""The Beam coder of PairBatch, and a helper that declares PCollections of batches.

Beam samples elements of every PCollection to estimate byte sizes for its metrics, and with the default
coder an estimate is a full pickle. A batch of image pairs is tens of MB, and a job has few batches per
PCollection, so nearly every batch was pickled once more per step just to be measured. This coder
encodes like the default (pickle) but estimates sizes from the records' field lengths.
"""

from __future__ import annotations

import pickle

import apache_beam as beam

from vlcurate.schemas.batch import PairBatch

_PER_RECORD = 200  # fixed fields, dicts and pickle framing: an estimate, used only for metrics
_SAMPLE = 8


class PairBatchCoder(beam.coders.Coder):
    def encode(self, batch: PairBatch) -> bytes:
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> PairBatch:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, batch: PairBatch) -> int:
        # From a few records: Beam calls this often, and only needs an order of magnitude.
        sample = batch[:_SAMPLE]
        if not sample:
            return 0
        size = sum(_PER_RECORD + len(p.image or b"") + len(p.caption) + len(p.caption_raw) for p in sample)
        return size * len(batch) // len(sample)

    def to_type_hint(self):
        return PairBatch


beam.coders.registry.register_coder(PairBatch, PairBatchCoder)


def of_batches(*pcolls):
    """Declares PCollections as holding PairBatch elements (so Beam uses PairBatchCoder), for outputs
    whose type Beam cannot infer (tagged outputs of multi-output ParDos). Returns the first."""
    for pcoll in pcolls:
        pcoll.element_type = PairBatch
    return pcolls[0]
