"""Exact deduplication: pairs with identical image bytes and identical cleaned caption.

Web crawls repeat the same pair under many URLs; keeping one copy keeps the mixture honest. The survivor
of a group is the pair with the smallest uid, so the choice does not depend on arrival order or workers.
Near-duplicates (re-encoded or resized images) are not caught here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from vlcurate.filters.base import Step, reject
from vlcurate.schemas.record import Pair, image_digest

REASON = "duplicate"


class Dedup(Step):
    """Drops exact duplicates (same image bytes and cleaned caption); the smallest uid stays.

    Reason `duplicate`, with the survivor's uid in meta["duplicate_of"]. It compares pairs with each other,
    so the pipeline runs it over content-hash buckets after every per-pair step (pipelines/dedup.py, with
    the functions below), not through apply()."""

    name = "dedup"
    reasons = (REASON,)
    groups_records = True

    def __init__(self) -> None:
        pass  # no parameters; the explicit signature makes the registry refuse any config key

    def apply(self, pair: Pair) -> None:
        raise RuntimeError("dedup compares pairs with each other: the pipeline runs it, not per record")


def content_key(pair: Pair) -> str:
    """Digest of the image (its bytes' digest, or the reference when bytes are absent) and the cleaned
    caption. The image digest is the one kept in the pair's ImageSpan when its bytes were detached."""
    digest = hashlib.blake2b(digest_size=16)
    if pair.image is not None:
        digest.update(b"image:" + image_digest(pair.image).encode())
    elif pair.image_span is not None and pair.image_span.digest:
        digest.update(b"image:" + pair.image_span.digest.encode())
    else:
        digest.update(b"ref:" + (pair.image_ref or "").encode("utf-8"))
    digest.update(b"\x00")
    digest.update(pair.caption.encode("utf-8"))
    return digest.hexdigest()


def survivors(keyed_uids: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{content key: the smallest uid with that key} from (content key, uid) pairs."""
    best: dict[str, str] = {}
    for key, uid in keyed_uids:
        current = best.get(key)
        if current is None or uid < current:
            best[key] = uid
    return best


def mark_if_duplicate(pair: Pair, survivor: str) -> bool:
    """Makes `pair` a `duplicate` reject naming the survivor in meta["duplicate_of"], unless it is the
    survivor; returns whether it was marked."""
    if pair.uid == survivor:
        return False
    reject(pair, REASON)
    pair.meta["duplicate_of"] = survivor
    return True
