"""Exact deduplication: pairs with identical image bytes and identical cleaned caption.

Web crawls repeat the same pair under many URLs; keeping one copy keeps the mixture honest. The survivor
of a group is the pair with the smallest uid, so the choice does not depend on arrival order or workers.
Near-duplicates (re-encoded or resized images) are not caught here.
"""

from __future__ import annotations

import hashlib

from vlcurate.filters.base import GroupStep, reject
from vlcurate.schemas.record import Pair, image_digest

REASON = "duplicate"


class Dedup(GroupStep):
    """Drops exact duplicates (same image bytes and cleaned caption); the smallest uid stays.

    Reason `duplicate`, with the survivor's uid in meta["duplicate_of"]. It compares pairs with each other,
    so the pipeline runs it over content-hash buckets after every per-pair step (pipelines/group_steps.py), not
    through apply()."""

    name = "dedup"
    reasons = (REASON,)
    needs_image_digest = True
    reject_file_prefix = "duplicates"

    def __init__(self) -> None:
        pass  # no parameters; the explicit signature makes the registry refuse any config key

    def group_key(self, pair: Pair) -> str:
        return content_key(pair)

    def rank(self, pair: Pair) -> tuple:
        return (pair.uid,)

    def mark_loser(self, pair: Pair, winner: str) -> None:
        reject(pair, REASON)
        pair.meta["duplicate_of"] = winner


def image_identity(pair: Pair) -> bytes:
    """What names a pair's image for grouping: its bytes' digest (or the one kept in its ImageSpan when
    the bytes were detached), else its reference."""
    if pair.image is not None:
        return b"image:" + image_digest(pair.image).encode()
    if pair.image_span is not None and pair.image_span.digest:
        return b"image:" + pair.image_span.digest.encode()
    return b"ref:" + (pair.image_ref or "").encode("utf-8")


def content_key(pair: Pair) -> str:
    """Digest of the image (image_identity) and the cleaned caption."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(image_identity(pair))
    digest.update(b"\x00")
    digest.update(pair.caption.encode("utf-8"))
    return digest.hexdigest()
