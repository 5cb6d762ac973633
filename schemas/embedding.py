"""How an image embedding travels in a Pair (`Pair.embedding`) and lies in the embedding store: float16,
little-endian, one vector per image. Half the bytes of float32 (a ViT-L-14 embedding is 768 values: 1.5
KB a pair through every shuffle); cosines need no more than float16's three decimal digits."""

from __future__ import annotations

import numpy as np

EMBEDDING_DTYPE = np.dtype("<f2")


def vector_bytes(vector: np.ndarray) -> bytes:
    """An embedding (any float dtype, one dimension) as the bytes Pair.embedding holds."""
    return np.ascontiguousarray(vector, dtype=EMBEDDING_DTYPE).reshape(-1).tobytes()


def vector_of(data: bytes) -> np.ndarray:
    """Pair.embedding's bytes as a float16 vector (read-only: a view of the bytes)."""
    return np.frombuffer(data, dtype=EMBEDDING_DTYPE)
