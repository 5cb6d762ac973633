"""The synthetic records: one image-text pair per index with its defect planted (defects.py draws
which, images.py and captions.py plant it), made in parallel and identical for any number of processes."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import multiprocessing
import os
import random
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from PIL import Image

from vlcurate.filters.image_probe import decode_draft
from vlcurate.filters.near_dedup import NearIndex
from vlcurate.model.scenes import Scene, caption_en, caption_zh, random_scene, render
from vlcurate.synth import captions
from vlcurate.synth.defects import DEFECT_BY_NAME, DEFECTS, assign_defects
from vlcurate.synth.images import (
    EXT,
    FORMAT_WEIGHTS,
    NEAR_COPY_KINDS,
    clean_size,
    encode,
    near_copy,
    small_size,
    truncated,
    undecodable,
    wide_size,
)
from vlcurate.synth.progress import CountReporter

SOURCE_NAME = "synth"
_ZH_PROBABILITY = 0.25


@dataclasses.dataclass
class SynthRecord:
    key: str
    defect: str
    lang: str | None
    caption: str
    url: str
    image: bytes | None
    ext: str  # file extension of the image (also for a missing image: the URL's)
    image_format: str | None  # what the bytes are, as PIL names it; None when undecodable or missing
    width: int | None  # as the size filters see it: after EXIF orientation
    height: int | None
    duplicate_of: str | None = None
    scene: Scene | None = dataclasses.field(default=None, repr=False)  # what the image shows (not written)

    def ground_truth(self) -> dict[str, Any]:
        defect = DEFECT_BY_NAME[self.defect]
        return {
            "key": self.key,
            "defect": self.defect,
            "expected_reason": defect.expected_reason,
            "expected_reason_with_clip": defect.expected_reason_with_clip,
            "lang": self.lang,
            "image_format": self.image_format,
            "width": self.width,
            "height": self.height,
            "duplicate_of": self.duplicate_of,
        }


def _url(rng: random.Random, scene: Scene | None, ext: str) -> str:
    slug = "-".join(f"{s.color}-{s.kind}" for s in scene.shapes) if scene else "image"
    return f"https://{rng.choice(captions.HOSTS)}/photos/{rng.randrange(10**6):06d}/{slug}.{ext}"


def make_record(index: int, defect: str, seed: int, originals: list[SynthRecord]) -> SynthRecord:
    """One pair with its defect planted. Draws from a generator seeded by (seed, index) alone, so a
    record does not depend on the others (except a duplicate, which copies one of `originals`; near
    duplicates come from near_duplicate_candidates)."""
    if defect == "near_duplicate":
        raise ValueError("a near_duplicate is checked against the images before it: see make_records")
    rng = random.Random(f"vlcurate-synth:{seed}:{index}")
    key = f"{index:09d}"
    if defect == "duplicate":
        original = rng.choice(originals)
        return dataclasses.replace(
            original,
            key=key,
            defect=defect,
            url=_url(rng, original.scene, original.ext),  # the same picture re-posted elsewhere
            duplicate_of=original.key,
        )
    lang = {"none": "en", "chinese": "zh"}.get(defect) or ("zh" if rng.random() < _ZH_PROBABILITY else "en")
    scene = random_scene(rng)
    caption = (caption_zh if lang == "zh" else caption_en)(scene, rng)

    size = {"too_small": small_size, "aspect_ratio": wide_size}.get(defect, clean_size)(rng)
    if defect in ("exif_rotated", "image_truncated", "image_undecodable"):
        fmt = "JPEG"
    else:
        fmt = rng.choices(list(FORMAT_WEIGHTS), weights=list(FORMAT_WEIGHTS.values()))[0]
    width, height = size
    if defect == "exif_rotated":
        while abs(width - height) < 48:  # a visibly non-square image, so a swap is detectable
            width, height = clean_size(rng)
        orientation = rng.choice((6, 8))
        # Stored pixels are the displayed image turned back; EXIF 6 means "rotate 90 clockwise to show".
        turn = Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270
        image = encode(render(scene, width, height).transpose(turn), fmt, rng, orientation)
    else:
        image = encode(render(scene, width, height), fmt, rng)
    image_format: str | None = fmt

    if defect == "image_undecodable":
        image, image_format, width, height = undecodable(image, rng), None, None, None
    elif defect == "image_truncated":
        image = truncated(image, rng)
    elif defect == "image_missing":
        image, image_format, width, height = None, None, None, None

    if defect == "html":
        caption = captions.html(caption, rng)
    elif defect == "irregular_pattern":
        caption = captions.irregular(caption, rng)
    elif defect == "emoji":
        caption = captions.emoji(caption, rng)
    elif defect == "disallowed_script":
        caption = captions.disallowed_script(caption, rng)
    elif defect == "too_short":
        caption = captions.too_short(scene, lang, rng)
    elif defect == "too_long":
        caption = captions.too_long(caption, lang, rng)
    elif defect == "clip_mismatch":
        caption = (caption_zh if lang == "zh" else caption_en)(captions.other_scene(scene, rng), rng)
    elif defect == "caption_empty":
        caption, lang = captions.empty(rng), None
    return SynthRecord(
        key=key,
        defect=defect,
        lang=lang,
        caption=caption,
        url=_url(rng, scene, EXT[fmt]),
        image=image,
        ext=EXT[fmt],
        image_format=image_format,
        width=width,
        height=height,
        scene=scene,
    )


def near_duplicate_candidates(
    index: int, seed: int, originals: list[SynthRecord], same_bytes: Mapping[str, Collection[str]]
) -> Iterator[tuple[str, SynthRecord]]:
    """The near_duplicate at `index` with its kind of copy: one of `originals` re-posted (images.near_copy)
    under a fresh caption of its scene in its language. First the kind drawn, then each other kind in
    NEAR_COPY_KINDS order, for make_records to keep the first that near_dedup takes for a copy of the
    original alone. `recaption` (the original's bytes, so its hash is the original's own) is left out when
    `same_bytes[original key]`, the captions those bytes already carry, holds the caption."""
    rng = random.Random(f"vlcurate-synth:{seed}:{index}")
    original = rng.choice(originals)
    drawn = rng.choice(NEAR_COPY_KINDS)
    caption_of = caption_zh if original.lang == "zh" else caption_en
    caption = caption_of(original.scene, rng)
    while caption == original.caption:  # a fresh caption
        caption = caption_of(original.scene, rng)
    for kind in (drawn, *(k for k in NEAR_COPY_KINDS if k != drawn)):
        if kind == "recaption" and caption in same_bytes[original.key]:
            continue  # the same bytes under the same caption: an exact duplicate (dedup's)
        image = near_copy(original.image, kind, rng)
        if image is None:
            continue
        fmt = original.image_format if kind == "recaption" else "JPEG"
        with Image.open(io.BytesIO(image)) as img:
            width, height = img.size
        yield (
            kind,
            dataclasses.replace(
                original,
                key=f"{index:09d}",
                defect="near_duplicate",
                caption=caption,
                url=_url(rng, original.scene, EXT[fmt]),
                image=image,
                ext=EXT[fmt],
                image_format=fmt,
                width=width,
                height=height,
                duplicate_of=original.key,
            ),
        )


def _near_duplicate(
    index: int,
    seed: int,
    originals: list[SynthRecord],
    distinct: NearIndex,
    families: dict[str, list[int]],
    same_bytes: dict[str, set[str]],
) -> tuple[SynthRecord, str]:
    """The first candidate whose hash (near_dedup's) lies within the radius of its original's and of no
    other image's but the original's other copies' (which rank after the original): near_dedup rejects it
    as a near duplicate of its original, as ground truth says. Returns it with its hash, and adds it to
    `families` (an original's hash first, then its copies') and `same_bytes`."""
    for kind, record in near_duplicate_candidates(index, seed, originals, same_bytes):
        image_hash = decode_draft(record.image)
        near = distinct.matches(image_hash)
        family = families[record.duplicate_of]
        if family[0] in near and near <= set(family):
            family.append(int(image_hash, 16))
            if kind == "recaption":
                same_bytes[record.duplicate_of].add(record.caption)
            return record, image_hash
    # Not seen in practice: recaption is left out only for a repeated caption, and a JPEG re-encoding
    # lies a few bits from its original.
    raise RuntimeError(f"no near duplicate for index {index} within the radius of its original alone")


def _make_independent(job: tuple[int, str, int]) -> SynthRecord:
    index, defect, seed = job
    return make_record(index, defect, seed, [])


def default_workers(n: int) -> int:
    """Processes for n records: rendering and PNG encoding dominate, and records are independent. Small
    runs stay in-process (a pool costs more than it saves); pools need fork (cheap, no re-import)."""
    if n < 500 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, 8))


# Defects whose pairs pass every per-pair step (clip_mismatch without a CLIP step) and so meet in near_dedup.
REACH_GROUP_STEPS = frozenset(d.name for d in DEFECTS if d.expected_reason is None)


def make_records(n: int, seed: int, workers: int = 1, made: CountReporter | None = None) -> list[SynthRecord]:
    """All n records in key order; the same for any number of worker processes. Image bytes are unique
    except for planted duplicates and near duplicates that copy the bytes under another caption, so an
    exact dedup step finds exactly the duplicates; near_dedup (default radius) finds exactly the near
    duplicates. `made` counts the records as they are made."""
    made = made or CountReporter(SOURCE_NAME, "made", n)
    labels = assign_defects(n, seed)
    copies = ("duplicate", "near_duplicate")  # made from earlier records, in the loop below
    jobs = [(i, d, seed) for i, d in enumerate(labels) if d not in copies]
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            chunk = max(1, min(64, len(jobs) // (workers * 8)))  # small enough for live progress
            each = pool.imap(_make_independent, jobs, chunksize=chunk)
        else:
            each = map(_make_independent, jobs)
        by_index = {}
        for job, record in zip(jobs, each):
            by_index[job[0]] = record
            made.add()

    records: list[SynthRecord] = []
    originals: list[SynthRecord] = []
    seen: set[bytes] = set()
    distinct = NearIndex()  # the hashes of every image that reaches near_dedup
    families: dict[str, list[int]] = {}  # an original's hash and its near duplicates', by its key
    same_bytes: dict[str, set[str]] = {}  # the captions an original's bytes carry, by its key
    for index, defect in enumerate(labels):
        if defect == "duplicate":
            records.append(make_record(index, defect, seed, originals))
            continue
        if defect == "near_duplicate":
            record, image_hash = _near_duplicate(index, seed, originals, distinct, families, same_bytes)
            seen.add(hashlib.blake2b(record.image, digest_size=16).digest())
            distinct.add(image_hash)  # later images are rerolled away from it too
            records.append(record)
            continue
        record = by_index[index]
        attempt = 0
        while record.image is not None:
            digest = hashlib.blake2b(record.image, digest_size=16).digest()
            image_hash = decode_draft(record.image) if defect in REACH_GROUP_STEPS else None
            if digest not in seen and (image_hash is None or not distinct.near(image_hash)):
                seen.add(digest)
                if image_hash is not None:
                    distinct.add(image_hash)
                break
            # The same scene drawn twice, or two scenes near_dedup would take for one: reroll, so that
            # ground truth holds under the default radius.
            attempt += 1
            record = make_record(index, defect, seed + 1_000_003 * attempt, [])
        records.append(record)
        if defect in ("none", "chinese"):
            originals.append(record)
            families[record.key] = [int(image_hash, 16)]
            same_bytes[record.key] = {record.caption}
    made.add(n - len(jobs))  # the duplicates and near duplicates, copied in the loop above
    made.done()
    return records
