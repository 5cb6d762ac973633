"""CLIP scoring behind Beam's RunInference: one model per worker process, batched, GPU when present.

Examples are groups (lists) of `ClipInput`s, one group per batch of pairs, so that Beam's per-element
costs are paid per group. A ClipInput is the pair plus its prepared image, either uint8 pixels decoded
on the CPU or raw JPEG bytes left for nvjpeg on the GPU. The prediction for a group is the sequence of its
cosine similarities of the normalized image and caption embeddings.

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
from vlcurate.model.clip_preprocess import gpu_decode_resize, normalize, to_device
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
    ) -> None:
        super().__init__()
        self.spec, self.batch_size, self.device = spec, batch_size, device
        self.compile, self.precision, self.share = compile, precision, share

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
        pending = PendingScores()
        for start in range(0, len(inputs), size):
            part = inputs[start : start + size]
            if self.share:  # `model` is a proxy of the machine's SharedClipScorer: only methods cross
                images = [e.pixels if e.pixels is not None else e.jpeg for e in part]
                pending.add(model.score(images, [e.pair.caption for e in part], size))
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
        self, images: Sequence[np.ndarray | bytes | None], captions: Sequence[str], pad_to: int = 0
    ) -> list[float]:
        """Cosines of one batch, in order, computed padded to `pad_to` rows. An image is decoded pixels, or
        JPEG bytes for GPU decoding; NaN for an image that failed GPU decoding."""
        batch = [
            ClipInput(
                Pair(uid="", source="", caption=caption),
                pixels=image if isinstance(image, np.ndarray) else None,
                jpeg=image if isinstance(image, bytes) else None,
            )
            for image, caption in zip(images, captions, strict=True)
        ]
        with self._one_at_a_time:
            return score_batch(self.model, batch, pad_to)


class _QueuedBatch(NamedTuple):
    """One batch's part of a PendingScores."""

    scores: Any  # the scored images' cosines, on the host when read: a tensor or array; None if none scored
    event: Any  # a CUDA event recorded after the copy to the host, or None (CPU, or scores known)
    scored: list[int]  # batch indices of the scored images, in the order of `scores`
    size: int  # the batch's size (images not scored get NaN)


class PendingScores:
    """The scores of one or more queued batches, in order; `result()` waits for the GPU to finish them."""

    def __init__(self) -> None:
        self._parts: list[_QueuedBatch] = []
        self._scores: list[float] | None = None

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
            event = None
            if cosine.is_cuda:  # copied into pinned memory as soon as the GPU gets there
                host = torch.empty(cosine.shape, dtype=cosine.dtype, pin_memory=True)
                host.copy_(cosine, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
                cosine = host
        self._parts.append(_QueuedBatch(cosine, event, ok, len(batch)))

    def add(self, scores: Sequence[float]) -> None:
        """Appends scores that are already known (a shared model returns them)."""
        self._parts.append(
            _QueuedBatch(np.asarray(scores, dtype=np.float64), None, list(range(len(scores))), len(scores))
        )

    def result(self) -> list[float]:
        """The scores; NaN for an image that failed GPU decoding."""
        if self._scores is None:
            scores: list[float] = []
            for queued in self._parts:
                if queued.event is not None:
                    queued.event.synchronize()
                part = [math.nan] * queued.size
                values = queued.scores.tolist() if queued.scores is not None else []
                for i, value in zip(queued.scored, values):
                    part[i] = value
                scores.extend(part)
            self._scores, self._parts = scores, []
        return self._scores

    def __getstate__(self) -> dict:  # a runner that does not fuse the next step pickles plain floats
        return {"_parts": [], "_scores": self.result()}


class ScoreSlice(Sequence[float]):
    """The scores of one group: a slice of its model batch's PendingScores, read when first used."""

    def __init__(self, pending: PendingScores, start: int, stop: int) -> None:
        self.pending, self.start, self.stop = pending, start, stop

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


def _encode_images(model: LoadedClip, pixels):
    """Runs the (possibly compiled) image encoder; compiled ones see batches padded to few sizes."""
    import torch

    n = pixels.shape[0]
    if model.pad_to:
        size = padded_size(n, model.pad_to)
        if size != n:
            pixels = torch.cat([pixels, pixels.new_zeros((size - n, *pixels.shape[1:]))])
    return model.encode_image(pixels)[:n]


# Caption lengths the text tower runs at: captions of up to SHORT_TOKENS tokens (start and end included;
# 95% of the 10k real web captions in tests/data that the text steps keep) at that length, all rows of the
# batch; the others at the full context, LONG_ROWS rows per call (padded with empty captions).
SHORT_TOKENS = 32
LONG_ROWS = 32


def encode_captions(model: LoadedClip, captions: Sequence[str]):
    """Normalized float32 text embeddings, computed at lengths that depend on each caption alone.

    For open_clip's CLIP class with end-token pooling, padding after the end token cannot change its
    features (causal mask), so tokens are cut: every row at SHORT_TOKENS, and captions longer than that
    again at the full context length in chunks of LONG_ROWS rows. The text tower's shapes are then the
    same whatever captions share the batch (with a batch padded to a fixed size, as run_inference does),
    and so is a caption's embedding. Cutting after the batch's longest caption, as before, made every
    caption's last bits depend on that one (CPU, tiny CLIP: 61 of 160 scores moved, by up to 1.8e-7), cost
    ~65 of 77 tokens per row with 256 web captions (~32 here), and counted a caption's length by its nonzero
    ids, while "!" before other punctuation ("wow!)))") is id 0: such a caption, alone or beside shorter
    ones, lost its end token (0.138 off on real captions). The end token is the largest id, where the
    pooling looks too. Other models run unchanged.
    """
    import open_clip
    import torch

    tokens = model.tokenizer(list(captions))  # on the CPU
    m = model.model
    context = tokens.shape[1]
    if not (isinstance(m, open_clip.CLIP) and getattr(m, "text_pool_type", "") == "argmax"):
        return torch.nn.functional.normalize(m.encode_text(to_device(tokens, model.device)).float(), dim=-1)
    if context <= SHORT_TOKENS:
        return _text_tower(m, to_device(tokens, model.device))
    long = (tokens.argmax(dim=1) >= SHORT_TOKENS).nonzero().flatten().tolist()  # read on the CPU
    texts = _text_tower(m, to_device(tokens[:, :SHORT_TOKENS].contiguous(), model.device))
    if long:
        empty = model.tokenizer([""])
        for start in range(0, len(long), LONG_ROWS):
            rows = long[start : start + LONG_ROWS]
            chunk = torch.cat([tokens[rows], empty.expand(LONG_ROWS - len(rows), -1)])
            index = to_device(torch.tensor(rows), model.device)
            texts.index_copy_(0, index, _text_tower(m, to_device(chunk, model.device))[: len(rows)])
    return texts


def _text_tower(m, tokens):
    """open_clip's CLIP.encode_text on tokens cut to any length, normalized float32."""
    import torch
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    cast = m.transformer.get_cast_dtype()
    x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:length].to(cast)
    x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
    x = text_global_pool(m.ln_final(x), tokens, m.text_pool_type)
    x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
    return torch.nn.functional.normalize(x.float(), dim=-1)


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
