"""Benchmark decontamination: drops training pairs whose image matches an evaluation image.

An image is a match when its perceptual hash (the one decode_check takes, filters/image_hash.py) lies within
`radius` bits of an evaluation image's hash: the same near-duplicate test as near_dedup, so a re-encoded,
resized or slightly cropped copy of a test image is caught too. The evaluation images' hashes enter
near_dedup's bands as entries that rank before every pair and never lose (filters/near_dedup.py), so the
search never compares all pairs with all evaluation images.

With `cosine`, a pair whose CLIP image embedding (the one clip_score computes) lies at that cosine or above
of an evaluation image's embedding is a match too: the same picture re-framed, recoloured or cropped past
the hash's reach. Each batch of pairs is compared with every evaluation embedding (a matrix product: an
evaluation set is small next to a crawl); decisions within float32 error of `cosine` are recomputed in
float64, so none depends on how BLAS blocks the product.

`sets`: paths of evaluation sets, each a folder of images (hashed, and with `cosine` embedded with the
run's CLIP model, when the job starts, as the pipeline treats a pair's image), a text file of
`id<TAB>hash` lines, or an .npz of embeddings (`vlcurate hashes DIR` writes both). Reason `eval_overlap`,
with the matched evaluation image's id (`<set name>/<file>`) in meta["eval_match"] and, for an embedding
match, the cosine in meta["eval_cosine"]. With no sets the step is off and costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlcurate.filters.base import GroupStep, reject, string_list
from vlcurate.filters.image_hash import NEAR_DUP_RADIUS
from vlcurate.filters.near_dedup import EVAL_REASON, HASH_KEY, Entry, as_key, band_keys, check_radius
from vlcurate.filters.semantic_dedup import (
    FLOAT32_MARGIN,
    PRODUCT_CELLS,
    exact_cosines,
    unit_rows,
)
from vlcurate.schemas.record import Pair

_PAIR = 1


class Decontaminate(GroupStep):
    """Drops pairs matching an evaluation image: hash within `radius` bits, or CLIP cosine >= `cosine`."""

    name = "decontaminate"
    reasons = (EVAL_REASON,)
    needs_image = True
    needs = {"decode_check": "the perceptual hash it takes of every image"}
    reject_file_prefix = "eval-overlap"
    compares_hashes = True
    same_params_everywhere = True
    default_sources = {
        "sets": "none: name the evaluation sets your model is tested on",
        "radius": "near_dedup's default radius: a near duplicate of a test image is as contaminating as a copy",
        "cosine": "off: hashes only; a good cosine depends on the CLIP model (docs/dedup.md)",
    }

    def __init__(
        self, sets: list[str] | None = None, radius: int = NEAR_DUP_RADIUS, cosine: float | None = None
    ) -> None:
        check_radius(radius, "decontaminate.radius")
        if cosine is not None and (
            isinstance(cosine, bool) or not isinstance(cosine, (int, float)) or not 0 < cosine <= 1
        ):
            raise ValueError(f"decontaminate.cosine must be a cosine in (0, 1] or null, not {cosine!r}.")
        self.sets = string_list(sets or [], "decontaminate.sets")
        embeddings_only = [path for path in self.sets if path.rstrip("/").endswith(".npz")]
        if embeddings_only and cosine is None:
            raise ValueError(
                f"decontaminate.sets names {embeddings_only[0]}, embeddings that only decontaminate.cosine "
                "compares: set decontaminate.cosine (e.g. 0.95), or name the set's folder or hash file instead"
            )
        self.radius = radius
        self.cosine = None if cosine is None else float(cosine)
        # Set at start-up when `cosine` is: the file of evaluation embeddings the workers read
        # (pipelines/eval_sets.py, write_eval_embeddings).
        self.embeddings_file: str | None = None

    def active(self) -> bool:
        return bool(self.sets)

    def reads_embeddings(self) -> bool:
        return self.active() and self.cosine is not None

    def params(self) -> dict:
        return {k: v for k, v in super().params().items() if k != "embeddings_file"}

    def entry(self, pair: Pair) -> Entry | None:
        hash_hex = pair.meta.get(HASH_KEY) if self.sets else None
        return None if not hash_hex else ((_PAIR, as_key(pair.uid)), hash_hex)

    def bucket_keys(self, pair: Pair) -> list[str]:
        return band_keys(pair.meta[HASH_KEY], self.radius)

    def eval_entry(self, eval_id: str, hash_hex: str) -> tuple[list[str], Entry]:
        """An evaluation image's bucket keys and entry: it ranks before every pair."""
        return band_keys(hash_hex, self.radius), ((0, as_key(eval_id)), hash_hex)

    def loses_to(self, winner: tuple) -> bool:
        """Only an evaluation image takes a pair out; pairs near each other are near_dedup's business."""
        return winner[0] == 0

    def mark_loser(self, pair: Pair, winner: str, cosine: float | None = None) -> None:
        reject(pair, EVAL_REASON)
        pair.meta["eval_match"] = winner
        if cosine is not None:
            pair.meta["eval_cosine"] = round(cosine, 4)


class EmbeddingMatcher:
    """Evaluation embeddings (`vectors`: [m, d] float16, named by `ids`), ready to be compared with batch
    after batch of pairs' embeddings."""

    def __init__(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        self.ids, self.vectors = list(ids), vectors
        self._units = np.ascontiguousarray(unit_rows(vectors).T)  # [d, m] float32, normalized once

    def matches(self, vectors: np.ndarray, cosine: float) -> list[tuple[int, str, float]]:
        """(row, evaluation id, cosine) for each row of `vectors` ([n, d] float16) whose cosine with some
        evaluation embedding is `cosine` or above: the closest one (float64 cosines, ties to the smallest
        id)."""
        if not len(vectors) or not len(self.ids) or vectors.shape[1] != self.vectors.shape[1]:
            return []
        step = max(1, PRODUCT_CELLS // len(self.ids))  # rows at a time: ~16 MB of products
        out = []
        for start in range(0, len(vectors), step):
            products = unit_rows(vectors[start : start + step]) @ self._units
            for row in np.nonzero(products.max(axis=1) >= cosine - FLOAT32_MARGIN)[0].tolist():
                out.extend(self._closest(vectors[start + row], products[row], start + row, cosine))
        return out

    def _closest(self, vector: np.ndarray, products: np.ndarray, row: int, cosine: float) -> list:
        candidates = np.nonzero(products >= cosine - FLOAT32_MARGIN)[0]
        exact = exact_cosines(np.repeat(vector[None], len(candidates), axis=0), self.vectors[candidates])
        best = min(range(len(candidates)), key=lambda i: (-exact[i], self.ids[candidates[i]]))
        return [(row, self.ids[candidates[best]], float(exact[best]))] if exact[best] >= cosine else []
