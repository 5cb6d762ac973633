"""LoadImages: caps the size of images a row or tar member holds, and fetches the image files that rows name
by path (JSONL, CSV, Parquet `image_column`).

Every trouble is a per-pair reject, never a failed or hung job: a missing file, a remote URL or a gs://,
s3://, azfs:// path whose Beam extra is not installed (`image_missing`, the detail names the install), a
device, FIFO, socket or directory (`image_not_a_file`, never opened), more than the source's
`max_image_bytes` (`image_too_large`, also for bytes held inline). Local files are read by
schemas/image_paths.py (stat first, non-blocking open, capped read); whether a path may be read at all
(`image_outside_root`) was decided when the row was parsed (schemas/rows.py), where its root is known.
"""

from __future__ import annotations

import functools

from apache_beam.io.filesystems import FileSystems

from vlcurate.pipelines.image_spans import rereadable_path
from vlcurate.pipelines.options import SCHEME_EXTRAS, check_extras
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.image_paths import (
    DEFAULT_MAX_IMAGE_BYTES,
    ImageRejected,
    read_at_most,
    read_image_file,
    too_large,
)
from vlcurate.schemas.record import ImageSpan, Pair


def load_image_bytes(pair: Pair, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
    """Rejects inline image bytes over `max_image_bytes`, or fills `pair.image` from its `image_ref` file."""
    if pair.reject is not None:
        return
    if pair.image is not None:
        if len(pair.image) > max_image_bytes:
            where = pair.image_ref or "inline image"
            _reject(pair, "image_too_large", too_large(where, f"{len(pair.image):,}", max_image_bytes))
        return
    ref = pair.image_ref
    if ref is None:
        return
    try:
        pair.image = read_image(ref, max_image_bytes)
    except ImageRejected as exc:
        _reject(pair, exc.reason, str(exc))
        return
    at = rereadable_path(ref)
    if at is not None:
        pair.image_span = ImageSpan(at, 0, len(pair.image))


def read_image(ref: str, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
    """The bytes of the image file `ref` names (a local path or a URL Beam reads), at most
    `max_image_bytes`; raises ImageRejected with the reject reason. Whether `ref` may be read at all
    (schemas/image_paths.py, outside_root) is the caller's to decide first."""
    if ref.startswith(("http://", "https://")):
        raise ImageRejected(
            "image_missing", "remote URLs are not downloaded; fetch images first (img2dataset)"
        )
    if "://" in ref:
        return _read_remote(ref, max_image_bytes)
    return read_image_file(ref, max_image_bytes)


def _read_remote(url: str, max_image_bytes: int) -> bytes:
    missing = _missing_extra(url.split("://", 1)[0] + "://")
    if missing is not None:
        raise ImageRejected("image_missing", f"{url}: {missing}")
    try:
        with FileSystems.open(url) as fh:
            data = read_at_most(fh, max_image_bytes)
    except Exception as exc:  # a remote filesystem's errors (auth, client setup) vary by extra
        raise ImageRejected("image_missing", f"{type(exc).__name__}: {exc}"[:300]) from None
    if data is None:
        raise ImageRejected(
            "image_too_large", too_large(url, f"more than {max_image_bytes:,}", max_image_bytes)
        )
    return data


@functools.cache
def _missing_extra(scheme: str) -> str | None:
    """What to install for URLs of `scheme` (check_extras' message), or None when nothing is missing; asked
    once per scheme and process (a failed import is not cached by Python and costs a path search)."""
    if scheme not in SCHEME_EXTRAS:
        return None
    try:
        check_extras([scheme], [])
    except ConfigError as exc:
        return str(exc)
    return None


def _reject(pair: Pair, reason: str, detail: str) -> None:
    pair.reject = reason
    pair.meta["error"] = detail
    pair.image, pair.image_span = None, None  # never carried on: rejects hold no image bytes


def load_images(batch: PairBatch, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> PairBatch:
    for pair in batch:
        load_image_bytes(pair, max_image_bytes)
    return batch
