"""PairBatch: the element the clean pipeline moves between steps, a list of Pair records.

Beam pays a fixed cost per element (windowing, coders, counters) and, at every shuffle or side-input
boundary, a pickle per element. On caption-only data that overhead was several times the cost of the
cleaning itself, so records travel in batches of about BATCH_SIZE; a batch pickles its records as plain
tuples (about twice as fast as pickling the dataclasses).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Iterator

from vlcurate.schemas.record import Pair

# Records per batch: large enough that per-element costs vanish, small enough that a batch of image
# pairs (~50 KB each) stays tens of MB.
BATCH_SIZE = 512

_FIELDS = tuple(f.name for f in dataclasses.fields(Pair))
_as_row = operator.attrgetter(*_FIELDS)


class PairBatch(list):
    """A list of Pair records that pickles compactly."""

    def __reduce__(self):
        return _from_rows, ([_as_row(p) for p in self],)


def _from_rows(rows: list[tuple]) -> PairBatch:
    return PairBatch(Pair(*row) for row in rows)


def batched(pairs: Iterable[Pair], size: int = BATCH_SIZE) -> Iterator[PairBatch]:
    """Consecutive batches of at most `size` records; no empty batch."""
    batch = PairBatch()
    for pair in pairs:
        batch.append(pair)
        if len(batch) >= size:
            yield batch
            batch = PairBatch()
    if batch:
        yield batch
