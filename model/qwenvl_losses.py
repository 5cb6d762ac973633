"""Per-sample losses of a Qwen-VL model for the model checks of `vlcurate check` (no Beam here: the
RunInference wrapper is model/qwenvl_handler.py, and benchmarks call this directly).

A `LossBatch` holds samples of one task that pipelines/check.py already grouped (by length, in an order
fixed by the data), so a sample's loss does not depend on the number of workers or on timing. For each
sample the mean loss over its supervised tokens is computed twice: with its own images and with its
partner's (another sample of the same task), the image-swap delta that tells whether the text belongs to
its image. A sample whose supervised text (the answer) holds boxes that a left-right mirror moves is also
scored with its own images mirrored, which keeps everything but the positions: the mean loss over the
boxes' coordinate tokens alone, own images against mirrored ones, tells boxes that fit the mirrored image
better (wrong ones). Boxes near the vertical midline are left out (their mirror overlaps them, so both
images fit), and so are boxes only in the prompt (grounded captioning: the answer is a few words about a
region, which the mirror changed little in the bundled model's eval).

Images are read by path (as Qwen-VL's own model does) with the reader the caller passes in (it knows
roots, size limits and remote filesystems). Each distinct image of a batch is decoded once (in a thread
pool: PIL releases the GIL) and encoded once by the ViT and adapter; its 256 adapter outputs are cached
per process (the own and the swapped pass show the same images, and stage-2 tasks reuse one image many
times), so neither the decoding nor the vision tower runs twice for an image a worker has seen lately.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from vlcurate.model.int_math import ceil_div
from vlcurate.model.qwen_tokenizer import (
    BOX_END,
    BOX_PATTERN,
    BOX_START,
    ENDOFTEXT_ID,
    IGNORE_INDEX,
    IMG_END_ID,
    IMG_START_ID,
    SPECIAL_IDS,
    get_tokenizer,
)
from vlcurate.schemas.record import stable_hash

# Padded lengths and image counts are rounded up to these steps: on a GPU every new tensor shape costs
# kernel selection (10-30 ms on an H100), and without rounding nearly every batch of a job has a new one.
SHAPE_STEP, IMAGE_STEP = 64, 8
FEATURE_CACHE_BYTES = 256 << 20  # adapter outputs kept per process (the bundled model: 32 KB an image)
DECODE_THREADS = min(16, os.cpu_count() or 1)  # PIL releases the GIL while it decodes and resizes


@dataclasses.dataclass(frozen=True)
class LossItem:
    id: str
    task: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    images: tuple[str, ...]  # where to read each image (resolved paths or URLs), in <img> order
    partner_images: tuple[str, ...]  # the partner's, cycled to len(images); empty when no image
    mirror: bool = False  # also scored with its own images mirrored (mirror_moves_boxes of its answer)


@dataclasses.dataclass(frozen=True)
class LossBatch:
    items: tuple[LossItem, ...]


@dataclasses.dataclass(frozen=True)
class LossResult:
    id: str
    task: str
    loss: float  # NaN when not computable (no supervised token, an image that failed to load)
    swap_loss: float | None  # None without images (or without a partner)
    detail: str = ""
    # Where `mirror` was set: the mean loss over the answer's box-coordinate tokens with the own images,
    # and with them mirrored left to right; None elsewhere.
    box_loss: float | None = None
    flip_loss: float | None = None


def sample_losses(
    model: Any,
    batch: LossBatch,
    read_image: Callable[[str], bytes],
    decoding: Mapping[str, concurrent.futures.Future] | None = None,
) -> list[LossResult]:
    """The own-image, swapped-image and mirrored-image losses of every sample in `batch`, in one forward:
    rows 0..B-1 with their own images, rows B..2B-1 with their partners', then one row per sample with
    `mirror` set, with its own images mirrored. `decoding`: images already being decoded
    (`start_decoding`), by path."""
    import torch

    from vlcurate.model.qwenvl import row_means

    items = batch.items
    device = next(model.parameters()).device
    length = ceil_div(max(len(item.input_ids) for item in items), SHAPE_STEP) * SHAPE_STEP
    ids = torch.full((len(items), length), ENDOFTEXT_ID, dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(items):
        ids[row, : len(item.input_ids)] = torch.tensor(item.input_ids)
        labels[row, : len(item.labels)] = torch.tensor(item.labels)
    rows, images, mirrored, swap = _forward_rows(items)
    ids, labels = ids[rows], labels[rows]
    try:
        features = image_features(model, images, read_image, decoding) if images else None
    except ImageLoadError as exc:  # the structural check decoded it: it changed while the job ran
        return [LossResult(i.id, i.task, math.nan, None, str(exc)) for i in items]
    first_flip = len(rows) - len(mirrored)
    with torch.inference_mode():
        at, col, nll = model.token_losses(ids.to(device), labels.to(device), features=features)
        losses = row_means(at, nll, len(rows)).float().cpu().tolist()
        boxes: list[float] = []
        if mirrored:  # the box-coordinate tokens of the mirrored samples' own rows and mirrored rows
            focus = torch.zeros(labels.shape, dtype=torch.bool)
            for k, i in enumerate(mirrored):  # row i scores item i with its own images
                positions = list(box_coordinate_positions(items[i].labels))
                focus[i, positions] = focus[first_flip + k, positions] = True
            keep = focus[:, 1:].to(device)[at, col]  # token_losses' col c predicts labels[:, c + 1]
            boxes = row_means(at[keep], nll[keep], len(rows)).float().cpu().tolist()
    flip = {i: (boxes[i], boxes[first_flip + k]) for k, i in enumerate(mirrored)}
    n = len(items)
    return [
        LossResult(
            item.id,
            item.task,
            losses[i],
            losses[n + i] if swap and item.partner_images else None,
            box_loss=flip[i][0] if i in flip else None,
            flip_loss=flip[i][1] if i in flip else None,
        )
        for i, item in enumerate(items)
    ]


def _forward_rows(items: Sequence[LossItem]) -> tuple[list[int], list[tuple[str, bool]], list[int], bool]:
    """What sample_losses' forward holds: the item each row scores, the (path, mirrored) images of the
    rows in order, the items that get a mirrored row, and whether there are swapped rows."""
    swap = any(item.partner_images for item in items)
    rows = list(range(len(items)))
    images = [(p, False) for item in items for p in item.images]
    if swap:  # a row without a partner repeats its own images; its swapped loss is dropped
        rows += range(len(items))
        images += [(p, False) for item in items for p in (item.partner_images or item.images)]
    mirrored = [i for i, item in enumerate(items) if item.mirror and item.images]
    rows += mirrored
    images += [(p, True) for i in mirrored for p in items[i].images]
    return rows, images, mirrored, swap


def losses_in_order(
    model: Any, batches: Iterable[LossBatch], read_image: Callable[[str], bytes]
) -> Iterator[list[LossResult]]:
    """sample_losses of each batch in turn, the next batch's images decoding in the threads while this
    one's forward runs (it keeps one core busy launching kernels; decoding keeps the others busy)."""
    batches = iter(batches)
    current = next(batches, None)
    decoding = start_decoding(model, current, read_image) if current is not None else {}
    while current is not None:
        following = next(batches, None)
        ahead = start_decoding(model, following, read_image, decoding) if following is not None else {}
        yield sample_losses(model, current, read_image, decoding)
        current, decoding = following, ahead


def start_decoding(
    model: Any,
    batch: LossBatch,
    read_image: Callable[[str], bytes],
    shared: Mapping[str, concurrent.futures.Future] | None = None,
) -> dict[str, concurrent.futures.Future]:
    """Hands the images of `batch` that are not encoded yet to the decode threads; by path. A path
    already in `shared` (the batch before, still running) keeps its future instead of a second decode."""
    size = model.config.vision.image_size
    token = _model_token(model)
    _, images, _, _ = _forward_rows(batch.items)
    paths = dict.fromkeys(p for p, mirror in images if _features.get((token, p, mirror)) is None)
    shared = shared or {}
    return {
        p: shared[p] if p in shared else _decode_pool().submit(decode_image, p, read_image, size)
        for p in paths
    }


_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _decode_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One pool per process, started on first use (DECODE_THREADS as it is then)."""
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="vlcurate-decode")
    return _pool


def box_coordinate_positions(labels: Sequence[int]) -> Iterator[int]:
    """Indices into `labels` of the supervised tokens strictly inside `<box>`...`</box>` (the digits,
    brackets and commas of the coordinates)."""
    inside = False
    for position, token in enumerate(labels):
        if token == BOX_END_ID:
            inside = False
        elif inside and token != IGNORE_INDEX:
            yield position
        elif token == BOX_START_ID:
            inside = True


class ImageLoadError(Exception):
    pass


class _FeatureCache:
    """Adapter outputs [IMAGE_SLOTS, hidden] by (model, path, mirrored), first in first out, bounded in
    bytes."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used, self.entries = budget, 0, {}

    def get(self, key: tuple) -> Any:
        return self.entries.get(key)

    def put(self, key: tuple, value: Any) -> None:
        size = self._size(value)
        while self.entries and self.used + size > self.budget:
            self.used -= self._size(self.entries.pop(next(iter(self.entries))))
        self.entries[key] = value
        self.used += size

    @staticmethod
    def _size(value: Any) -> int:
        return value.numel() * value.element_size()


_features = _FeatureCache(FEATURE_CACHE_BYTES)


def clear_feature_cache() -> None:
    """Forgets every cached image (tests; a worker never needs to)."""
    global _features
    _features = _FeatureCache(FEATURE_CACHE_BYTES)


def image_features(
    model: Any,
    images: list[tuple[str, bool]],
    read_image: Callable[[str], bytes],
    decoding: Mapping[str, concurrent.futures.Future] | None = None,
) -> Any:
    """[len(images), IMAGE_SLOTS, hidden]: the adapter outputs of each (path, mirrored) image (what fills
    its `<img>` span), each distinct one read, decoded and encoded once. `decoding`: decodes already
    under way (start_decoding), by path; the rest are handed to the decode threads here."""
    import numpy as np
    import torch

    from vlcurate.model.qwenvl_images import normalize_pixels

    size = model.config.vision.image_size
    token = _model_token(model)
    # This call's features are held here, not re-read from the cache: a batch may hold more distinct
    # images than the cache keeps (a real Qwen-VL's are 2 MB each), and they must not evict each other.
    found = {image: _features.get((token, *image)) for image in dict.fromkeys(images)}
    missing = [image for image, features in found.items() if features is None]
    if missing:
        decoding = decoding or {}
        futures = {
            path: decoding.get(path) or _decode_pool().submit(decode_image, path, read_image, size)
            for path, _ in missing
        }
        decoded = {path: future.result() for path, future in futures.items()}
        pixels = [decoded[path][:, ::-1] if mirror else decoded[path] for path, mirror in missing]
        device = next(model.parameters()).device
        pixels += [np.zeros_like(pixels[0])] * (ceil_div(len(pixels), IMAGE_STEP) * IMAGE_STEP - len(pixels))
        batch = normalize_pixels(torch.from_numpy(np.stack(pixels)).to(device))  # [n, 3, size, size]
        with torch.inference_mode():
            encoded = model.visual(batch)  # [n, slots, hidden], blank images at the end

        for image, one in zip(missing, encoded):
            found[image] = one
            _features.put((token, *image), one)
    return torch.stack([found[image] for image in images])


_tokens = iter(range(1 << 62))


def _model_token(model: Any) -> int:
    """A number that names `model` for the cache as long as it lives (id() can be reused after it dies)."""
    if getattr(model, "_feature_cache_token", None) is None:
        model._feature_cache_token = next(_tokens)
    return model._feature_cache_token


def decode_image(path: str, read_image: Callable[[str], bytes], size: int) -> Any:
    """[size, size, 3] uint8; ImageLoadError naming the path when it cannot be read or decoded."""
    from vlcurate.model.qwenvl_images import qwenvl_pixels

    try:
        return qwenvl_pixels(read_image(path), size)
    except Exception as exc:  # reported per sample, never fails the job
        raise ImageLoadError(f"{path}: {type(exc).__name__}: {exc}"[:300]) from None


def partner_images(own: Sequence[str], partner: Sequence[str]) -> tuple[str, ...]:
    """The partner's images cycled (or cut) to as many as `own` holds; () when either has none."""
    if not own or not partner:
        return ()
    return tuple(partner[i % len(partner)] for i in range(len(own)))


BOX_START_ID, BOX_END_ID = SPECIAL_IDS[BOX_START], SPECIAL_IDS[BOX_END]
MIRROR_IOU = 0.3  # a box moves in the mirror when box and mirror overlap less than this (IoU)
PARTNER_LOOKAHEAD = 32  # samples looked at after one's own for a partner


def partner_indices(
    targets: Sequence[Any], images: Sequence[Any], prompts: Sequence[Any] | None = None
) -> list[int | None]:
    """For each sample (in the caller's fixed order), the index of its partner: of the next
    PARTNER_LOOKAHEAD samples, going round, the first whose supervised text and images both differ from
    its own and whose prompt is the same (`prompts`: the same VQA question, the same phrase to find),
    else the first whose text and images differ, else simply the next. Swapping in the images of a
    sample with the very same answer ("Three.") tells nothing; the image of a sample asked the same
    question with another answer surely does not show this answer, where any other image may show
    three shapes by chance. None for a lone sample."""
    n = len(targets)
    out: list[int | None] = []
    for i in range(n):
        if n < 2:
            out.append(None)
            continue
        following = [(i + step) % n for step in range(1, min(n, PARTNER_LOOKAHEAD + 1))]
        differ = [j for j in following if targets[j] != targets[i] and images[j] != images[i]]
        asked_alike = [j for j in differ if prompts is not None and prompts[j] == prompts[i]]
        out.append((asked_alike or differ or following)[0])
    return out


def prompt_ids(input_ids: Sequence[int], labels: Sequence[int]) -> tuple[int, ...]:
    """What a sample is asked: its unsupervised ids without the image spans (`<img>path</img>` differs
    from sample to sample)."""
    out, inside = [], False
    for token, label in zip(input_ids, labels):
        if token == IMG_START_ID:
            inside = True
        elif token == IMG_END_ID:
            inside = False
        elif not inside and label == IGNORE_INDEX:
            out.append(token)
    return tuple(out)


def supervised_ids(labels: Sequence[int]) -> tuple[int, ...]:
    return tuple(t for t in labels if t != IGNORE_INDEX)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mirror_boxes(boxes: Sequence[Sequence[float]], width: float) -> list[list[float]] | None:
    """`boxes` mirrored left to right in an image `width` wide (x -> width - x), or None when a mirrored
    box still overlaps one of `boxes` by MIRROR_IOU or more: there both images fit the text."""
    out = [[width - b[2], b[1], width - b[0], b[3]] for b in boxes]
    return out if all(box_iou(m, b) < MIRROR_IOU for m in out for b in boxes) else None


def mirror_moves_boxes(supervised: Sequence[int]) -> bool:
    """Whether `supervised` (an answer's ids) holds boxes and a left-right mirror moves them all away
    from every one of them (`mirror_boxes`, on Qwen-VL's 0-1000 coordinates)."""
    if BOX_START_ID not in supervised:
        return False
    boxes = [tuple(map(int, m)) for m in BOX_PATTERN.findall(get_tokenizer().decode(list(supervised)))]
    return bool(boxes) and mirror_boxes(boxes, 1000) is not None


def loss_batches(records: Iterable[Any], root: str, batch_tokens: int) -> Iterator[LossBatch]:
    """One group of a task's records (each with `id`, `task`, `images` relative to `root`, and `view`, a
    TrainerView) -> model batches. Partners: `partner_indices` in id-hash order; batches: by length, then
    id hash, up to `batch_tokens` rows x padded length. Only the data decides either, never the
    workers."""
    records = sorted(records, key=lambda r: (stable_hash(r.id), r.id))
    located = [tuple(f"{root}/{p}" if "://" not in p else p for p in r.images) for r in records]
    partners = partner_indices(
        [supervised_ids(r.view.labels) for r in records],
        located,
        [prompt_ids(r.view.input_ids, r.view.labels) for r in records],
    )
    items = []
    for record, own, partner in zip(records, located, partners):
        view = record.view
        items.append(
            LossItem(
                record.id,
                record.task,
                tuple(view.input_ids),
                tuple(view.labels),
                own,
                partner_images(own, () if partner is None else located[partner]),
                mirror=mirror_moves_boxes(supervised_ids(view.labels)),
            )
        )
    items.sort(key=lambda item: (len(item.input_ids), stable_hash(item.id), item.id))
    batch: list[LossItem] = []
    for item in items:
        longest = max([len(item.input_ids), *(len(b.input_ids) for b in batch)])
        if batch and longest * (len(batch) + 1) > batch_tokens:
            yield LossBatch(tuple(batch))
            batch = []
        batch.append(item)
    if batch:
        yield LossBatch(tuple(batch))


__all__ = [
    "MIRROR_IOU",
    "LossBatch",
    "LossItem",
    "LossResult",
    "box_coordinate_positions",
    "box_iou",
    "decode_image",
    "image_features",
    "loss_batches",
    "losses_in_order",
    "mirror_boxes",
    "mirror_moves_boxes",
    "partner_images",
    "partner_indices",
    "prompt_ids",
    "sample_losses",
    "start_decoding",
    "supervised_ids",
]
