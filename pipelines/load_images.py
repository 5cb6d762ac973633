"""LoadImages: fetches the image files that rows name by path (JSONL, CSV, Parquet `image_column`).

A missing or unreadable file is a per-pair reject, never a failed job.
"""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from vlcurate.pipelines.image_spans import rereadable_path
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import ImageSpan, Pair


def load_image_bytes(pair: Pair) -> None:
    """Fetches the pair's `image_ref` file through Beam's filesystems; a missing file is a reject."""
    if pair.image is None and pair.image_ref is not None and pair.reject is None:
        if pair.image_ref.startswith(("http://", "https://")):
            pair.reject = "image_missing"
            pair.meta["error"] = "remote URLs are not downloaded; fetch images first (img2dataset)"
        else:
            try:
                with FileSystems.open(pair.image_ref) as fh:
                    pair.image = fh.read()
                at = rereadable_path(pair.image_ref)
                if at is not None:
                    pair.image_span = ImageSpan(at, 0, len(pair.image))
            except (OSError, ValueError) as exc:
                pair.reject = "image_missing"
                pair.meta["error"] = f"{type(exc).__name__}: {exc}"[:300]


def load_images(batch: PairBatch) -> PairBatch:
    for pair in batch:
        load_image_bytes(pair)
    return batch
