"""CLIP scoring behind Beam's RunInference: one model per worker process, batched, GPU when present.

Examples are groups (lists) of `ClipInput`s, one group per batch of pairs, so that Beam's per-element
costs are paid per group. A ClipInput is the pair plus its prepared image, either uint8 pixels decoded
on the CPU or raw JPEG bytes left for nvjpeg on the GPU. The prediction for a group is the sequence of its
cosine similarities of the normalized image and caption embeddings; with `embeddings` (semantic dedup, the
embedding store) also each image's normalized embedding in float16, copied to the host with the cosines.

Every model call sees exactly `batch_size` rows: a batch with fewer pairs is padded (zero images, empty
captions) and the padding's scores are dropped. With the same shapes, the kernels compute each row the
same way whatever rows share its batch, so a pair's score does not depend on which pairs Beam batched it
with, nor on timing (BatchElements sized batches by timing, from 1 pair up, and scores moved by ~1e-7).
pipelines/clip.py regroups the pairs into groups of exactly `batch_size`, so only a bundle's last batch is
padded.

run_inference only queues the work on a GPU: its scores are `ScoreSlice`s of a `PendingScores`, copied to
the host as the GPU gets to them, and reading one waits for its own batch only. So the CPU can go on
(read, probe, write) while the GPU computes; pipelines/clip.py's AttachScores holds a batch back until the
next is queued. (Beam's inference-latency metric therefore times the queueing on a GPU.)

With `share` (clip_score.share_model) a machine has one model for all its worker processes instead of one
per process: Beam's MultiProcessShared keeps a `SharedClipScorer` in one process, and the others call it
through a proxy that sends each batch's images and captions and returns the scores. Several processes on
one GPU otherwise each hold a copy, and their CUDA contexts take turns on the device.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from vlcurate.model.clip_fast import padded_size
from vlcurate.model.clip_models import LoadedClip, load_clip
from vlcurate.model.clip_preprocess import gpu_decode_resize, normalize, pil_pixels, to_device
from vlcurate.model.clip_text import encode_captions
from vlcurate.schemas.record import Pair


@dataclasses.dataclass
class ClipInput:
    pair: Pair
    pixels: np.ndarray | None = None  # size x size x 3 uint8, decoded on the CPU
    jpeg: bytes | None = None  # left for GPU decoding


class ClipGroup(list):
    """The ClipInputs of one batch of pairs for one model: RunInference's example (a list, typed so that
    the pipeline can give it a coder)."""


class ClipPrediction(PredictionResult):
    """A group and its ScoreSlice, as run_inference returns them."""

    __slots__ = ()


def pick_device(requested: str = "auto") -> str:
    """`auto`: a CUDA device when present, spread over GPUs by process id (one model copy per GPU)."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return f"cuda:{os.getpid() % torch.cuda.device_count()}"
    return "cpu"


class ClipModelHandler(ModelHandler[list[ClipInput], ClipPrediction, LoadedClip]):
    def __init__(
        self,
        spec: str,
        batch_size: int = 256,
        device: str = "auto",
        compile: bool = False,
        precision: str = "bf16",
        share: bool = False,
        embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.spec, self.batch_size, self.device = spec, batch_size, device
        self.compile, self.precision, self.share = compile, precision, share
        self.embeddings = embeddings

    def load_model(self) -> LoadedClip | SharedClipScorer:
        device = pick_device(self.device)
        if device.startswith("cuda"):
            import torch

            # The GPU does the math; CPU threads only preprocess. Several local workers each spawning a
            # thread per core would fight over the cores.
            torch.set_num_threads(2)
            if self.share and torch.cuda.device_count() > 1:
                logging.warning(
                    "clip_score.share_model: one model on %s serves every worker; the other %d GPUs stay "
                    "idle. Set share_model: false to have each worker process use a GPU.",
                    device,
                    torch.cuda.device_count() - 1,
                )
        model = load_clip(self.spec, device, compile=self.compile, fp8=self.precision == "fp8")
        return SharedClipScorer(model) if self.share else model

    def share_model_across_processes(self) -> bool:
        return self.share

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # Sizes count pairs, not groups: small groups (a file's tail, a rare language) are pooled. A fixed
        # size (min = max): Beam's default grows and shrinks batches with their timing.
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size, "element_size_fn": len}

    def get_metrics_namespace(self) -> str:
        return "vlcurate.clip_score"

    def get_num_bytes(self, batch: Sequence[list[ClipInput]]) -> int:
        return sum(
            (e.pixels.nbytes if e.pixels is not None else len(e.jpeg or b""))
            for group in batch
            for e in group
        )

    def run_inference(
        self,
        batch: Sequence[list[ClipInput]],
        model: LoadedClip,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[ClipPrediction]:
        inputs = [e for group in batch for e in group]
        # Chunks of batch_size, each padded to batch_size (the module docstring says why).
        size = max(1, self.batch_size)
        pending = PendingScores(self.embeddings)
        for start in range(0, len(inputs), size):
            part = inputs[start : start + size]
            if self.share:  # `model` is a proxy of the machine's SharedClipScorer: only methods cross
                images = [e.pixels if e.pixels is not None else e.jpeg for e in part]
                captions = [e.pair.caption for e in part]
                if self.embeddings:
                    pending.add(*model.score(images, captions, size, embeddings=True))
                else:
                    pending.add(model.score(images, captions, size))
            else:
                pending.queue(model, part, pad_to=size)
        results, start = [], 0
        for group in batch:
            results.append(ClipPrediction(group, ScoreSlice(pending, start, start + len(group))))
            start += len(group)
        return results


class SharedClipScorer:
    """The model of `share` mode, kept in one process of a machine; its methods are what other processes
    can call (Beam's proxies forward method calls, not attributes). The proxy's server answers each
    process from a thread of its own; batches are scored one at a time. Concurrent calls gave scores up
    to 1e-3 away from a serial run's (ViT-B-32, 4 workers, H200; one worker: identical), and on one
    stream the GPU runs one batch at a time anyway."""

    def __init__(self, model: LoadedClip) -> None:
        self.model = model
        self._one_at_a_time = threading.Lock()

    def score(
        self,
        images: Sequence[np.ndarray | bytes | None],
        captions: Sequence[str],
        pad_to: int = 0,
        embeddings: bool = False,
    ) -> list[float] | tuple[list[float], list[np.ndarray | None]]:
        """Cosines of one batch, in order, computed padded to `pad_to` rows. An image is decoded pixels, or
        JPEG bytes for GPU decoding; NaN for an image that failed GPU decoding. With `embeddings`, the
        cosines and the images' float16 embeddings (None for an image that failed)."""
        batch = [
            ClipInput(
                Pair(uid="", source="", caption=caption),
                pixels=image if isinstance(image, np.ndarray) else None,
                jpeg=image if isinstance(image, bytes) else None,
            )
            for image, caption in zip(images, captions, strict=True)
        ]
        with self._one_at_a_time:
            if embeddings:
                return score_and_embed_batch(self.model, batch, pad_to)
            return score_batch(self.model, batch, pad_to)


class _QueuedBatch(NamedTuple):
    """One batch's part of a PendingScores."""

    scores: Any  # the scored images' cosines, on the host when read: a tensor or array; None if none scored
    event: Any  # a CUDA event recorded after the copy to the host, or None (CPU, or scores known)
    scored: list[int]  # batch indices of the scored images, in the order of `scores`
    size: int  # the batch's size (images not scored get NaN)
    # The scored images' normalized float16 embeddings, rows in the order of `scores` (a tensor on the
    # host when read, or a list); None when not asked for
    vectors: Any = None


class PendingScores:
    """The scores of one or more queued batches, in order; `result()` waits for the GPU to finish them.
    With `embeddings`, `vectors()` gives each image's normalized embedding too (float16)."""

    def __init__(self, embeddings: bool = False) -> None:
        self.embeddings = embeddings
        self._parts: list[_QueuedBatch] = []
        self._scores: list[float] | None = None
        self._vectors: list[np.ndarray | None] | None = None

    def queue(self, model: LoadedClip, batch: Sequence[ClipInput], pad_to: int = 0) -> None:
        """Queues a batch's scoring; on a GPU this returns before the scores exist. With `pad_to`, the
        model sees `pad_to` rows (zero images, empty captions after the batch's own), whatever the
        batch's size and whatever of its images failed to decode."""
        import torch

        with torch.inference_mode():
            pixels, ok = _pixels_on_device(model, batch)
            if not ok:
                self._parts.append(_QueuedBatch(None, None, [], len(batch)))
                return
            captions = [batch[i].pair.caption for i in ok]
            if pad_to > len(ok):
                pixels = torch.cat([pixels, pixels.new_zeros((pad_to - len(ok), *pixels.shape[1:]))])
                captions += [""] * (pad_to - len(ok))
            images = _encode_images(model, normalize(pixels, model.mean, model.std, model.dtype))
            texts = encode_captions(model, captions)
            images = torch.nn.functional.normalize(images.float(), dim=-1)
            cosine = (images * texts).sum(dim=-1)[: len(ok)]
            vectors = images[: len(ok)].to(torch.float16) if self.embeddings else None
            event = None
            if cosine.is_cuda:  # copied into pinned memory as soon as the GPU gets there
                cosine = _to_pinned(cosine)
                vectors = _to_pinned(vectors) if vectors is not None else None
                event = torch.cuda.Event()
                event.record()
        self._parts.append(_QueuedBatch(cosine, event, ok, len(batch), vectors))

    def add(self, scores: Sequence[float], vectors: Sequence[np.ndarray | None] | None = None) -> None:
        """Appends scores that are already known (a shared model returns them), and with `embeddings`
        their images' embeddings."""
        self._parts.append(
            _QueuedBatch(
                np.asarray(scores, dtype=np.float64), None, list(range(len(scores))), len(scores), vectors
            )
        )

    def result(self) -> list[float]:
        """The scores; NaN for an image that failed GPU decoding."""
        if self._scores is None:
            scores: list[float] = []
            vectors: list[np.ndarray | None] = []
            for queued in self._parts:
                if queued.event is not None:
                    queued.event.synchronize()
                part = [math.nan] * queued.size
                values = queued.scores.tolist() if queued.scores is not None else []
                for i, value in zip(queued.scored, values):
                    part[i] = value
                scores.extend(part)
                if self.embeddings:
                    vectors.extend(_rows_of(queued))
            self._scores, self._parts = scores, []
            self._vectors = vectors if self.embeddings else None
        return self._scores

    def vectors(self) -> list[np.ndarray | None] | None:
        """The images' normalized float16 embeddings, in order (None for an image that failed GPU
        decoding); None when not asked for."""
        self.result()
        return self._vectors

    def __getstate__(self) -> dict:  # a runner that does not fuse the next step pickles plain numbers
        self.result()
        return {
            "embeddings": self.embeddings,
            "_parts": [],
            "_scores": self._scores,
            "_vectors": self._vectors,
        }


def _to_pinned(tensor):
    """A copy in pinned host memory, made when the GPU gets there (non-blocking)."""
    import torch

    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


def _rows_of(queued: _QueuedBatch) -> list[np.ndarray | None]:
    """A queued batch's embeddings by batch index (None where an image was not scored)."""
    rows: list[np.ndarray | None] = [None] * queued.size
    if queued.vectors is not None:
        found = queued.vectors.numpy() if hasattr(queued.vectors, "numpy") else queued.vectors
        for i, row in zip(queued.scored, found):
            rows[i] = row
    return rows


class ScoreSlice(Sequence[float]):
    """The scores of one group: a slice of its model batch's PendingScores, read when first used."""

    def __init__(self, pending: PendingScores, start: int, stop: int) -> None:
        self.pending, self.start, self.stop = pending, start, stop

    def vectors(self) -> list[np.ndarray | None] | None:
        """The group's image embeddings (PendingScores.vectors), or None when not asked for."""
        vectors = self.pending.vectors()
        return None if vectors is None else vectors[self.start : self.stop]

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index):
        return self.pending.result()[self.start : self.stop][index]

    def __iter__(self) -> Iterator[float]:
        return iter(self.pending.result()[self.start : self.stop])


def score_batch(model: LoadedClip, batch: Sequence[ClipInput], pad_to: int = 0) -> list[float]:
    """Cosine similarities for a batch (computed padded to `pad_to` rows), waiting for them; NaN for an
    image that failed GPU decoding."""
    pending = PendingScores()
    pending.queue(model, batch, pad_to)
    return pending.result()


def score_and_embed_batch(
    model: LoadedClip, batch: Sequence[ClipInput], pad_to: int = 0
) -> tuple[list[float], list[np.ndarray | None]]:
    """score_batch's cosines (the same numbers) and each image's normalized float16 embedding (None for an
    image that failed GPU decoding)."""
    pending = PendingScores(embeddings=True)
    pending.queue(model, batch, pad_to)
    return pending.result(), pending.vectors()


def embed_images(model: LoadedClip, images: Sequence[bytes], batch_size: int = 64) -> np.ndarray:
    """[n, d] float16 normalized image embeddings of encoded images, as a pair's are computed (a full PIL
    decode, the model's resize and centre crop); raises on an image that does not decode."""
    rows = []
    for start in range(0, len(images), batch_size):
        batch = [
            ClipInput(
                Pair(uid="", source="", caption=""), pixels=pil_pixels(data, model.image_size, draft=False)
            )
            for data in images[start : start + batch_size]
        ]
        _, vectors = score_and_embed_batch(model, batch)
        rows.extend(vectors)
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float16)


def _encode_images(model: LoadedClip, pixels):
    """Runs the (possibly compiled) image encoder; compiled ones see batches padded to few sizes."""
    import torch

    n = pixels.shape[0]
    if model.pad_to:
        size = padded_size(n, model.pad_to)
        if size != n:
            pixels = torch.cat([pixels, pixels.new_zeros((size - n, *pixels.shape[1:]))])
    return model.encode_image(pixels)[:n]


def _pixels_on_device(model: LoadedClip, batch: Sequence[ClipInput]):
    import torch

    cpu = [i for i, e in enumerate(batch) if e.pixels is not None]
    gpu = [i for i, e in enumerate(batch) if e.pixels is None and e.jpeg is not None]
    parts, order = [], []
    if cpu:
        stacked = to_device(torch.from_numpy(np.stack([batch[i].pixels for i in cpu])), model.device)
        parts.append(stacked.permute(0, 3, 1, 2))
        order.extend(cpu)
    if gpu:
        decoded, failed = gpu_decode_resize([batch[i].jpeg for i in gpu], model.image_size, model.device)
        parts.append(decoded)
        order.extend(i for j, i in enumerate(gpu) if j not in set(failed))
    if not order:
        return None, []
    return torch.cat(parts), order
