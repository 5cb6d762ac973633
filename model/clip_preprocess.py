"""Image preprocessing for CLIP, matching open_clip's eval transform.

open_clip (eval): resize the shorter side to `size` (bicubic), center crop `size` x `size`, RGB, scale to
[0, 1], normalize by mean/std. The CPU path does the same with PIL and returns uint8 pixels; normalizing
happens on the model's device, so only a quarter of the bytes cross to the GPU. The GPU path decodes JPEGs
with nvjpeg and resizes with torch (bicubic, antialiased); its scores differ slightly from the PIL path
(bench/clip_gpu.py measures by how much).
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Shorter side -> size, longer side scaled and truncated, as torchvision's Resize(int) computes it."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """torchvision's center_crop offsets (rounded half to even like Python's round)."""
    left = round((width - size) / 2.0)
    top = round((height - size) / 2.0)
    return left, top, left + size, top + size


def pil_pixels(data: bytes, size: int, draft: bool = True) -> np.ndarray:
    """Decodes and resizes one image to a size x size x 3 uint8 array. Raises on undecodable data.

    `draft` lets PIL decode JPEGs at a reduced DCT scale that still covers `size` (2-4x faster on large
    photos); the result differs from a full decode by a few intensity levels.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as img:
            if draft and img.format == "JPEG":
                w, h = img.size
                scale = size / min(w, h)
                img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
            rgb = img.convert("RGB")
    w, h = rgb.size
    target = resized_size(w, h, size)
    if target != (w, h):
        rgb = rgb.resize(target, Image.Resampling.BICUBIC)
    if target != (size, size):
        rgb = rgb.crop(crop_box(*target, size))
    return np.array(rgb, dtype=np.uint8)


def normalize(pixels, mean: Sequence[float], std: Sequence[float], dtype):
    """uint8 NHWC or NCHW tensor on any device -> normalized float NCHW of `dtype`."""
    import torch

    if pixels.shape[-1] == 3 and pixels.shape[1] != 3:
        pixels = pixels.permute(0, 3, 1, 2)
    x = pixels.float().div_(255.0)
    m, s = _channel_stats(tuple(mean), tuple(std), x.device)
    return x.sub_(m).div_(s).to(dtype).contiguous(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=16)
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device):
    """Mean and std as 1x3x1x1 tensors on `device`, made once: a fresh copy per batch from pageable memory
    would wait for the GPU work queued before it."""
    import torch

    def on_device(values: tuple[float, ...]):
        return to_device(torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1), str(device))

    return on_device(mean), on_device(std)


def to_device(tensor, device: str):
    """Copies a CPU tensor to `device` through pinned memory: a copy from pageable memory would first wait
    for every kernel queued before it (the previous batch's model), and the CPU could not work ahead."""
    if device.startswith("cuda"):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def gpu_decode_resize(jpegs: Sequence[bytes], size: int, device: str):
    """Batch-decodes JPEGs with nvjpeg on `device` and resizes/crops each on the GPU.

    Returns (uint8 NCHW tensor of the decodable ones, list of indices that failed).
    """
    import torch
    import torch.nn.functional as F

    decoded, failed = _decode_torchvision(jpegs, device)
    if not decoded:
        return torch.empty((0, 3, size, size), dtype=torch.uint8, device=device), failed
    # Images of one size are resized as one batch, and rounding and casting run once for the whole batch:
    # each distinct size costs a few kernel launches (the CPU cost of this path; web images come in many
    # sizes, `bench/clip_gpu.py resize` measures it).
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(decoded):
        by_shape.setdefault((img.shape[1], img.shape[2]), []).append(i)
    crops, order = [], []
    for (h, w), indices in by_shape.items():
        tw, th = resized_size(w, h, size)
        x = decoded[indices[0]][None] if len(indices) == 1 else torch.stack([decoded[i] for i in indices])
        x = x.float()
        if (tw, th) != (w, h):
            x = F.interpolate(x, size=(th, tw), mode="bicubic", antialias=True, align_corners=False)
        left, top, _, _ = crop_box(tw, th, size)
        crops.append(x[:, :, top : top + size, left : left + size])
        order.extend(indices)
    pixels = crops[0] if len(crops) == 1 else torch.cat(crops)
    pixels = pixels.round_().clamp_(0, 255).to(torch.uint8).contiguous()
    if len(crops) > 1:  # back to the input order
        position = [0] * len(order)
        for row, i in enumerate(order):
            position[i] = row
        pixels = pixels[to_device(torch.tensor(position), device)]
    return pixels, failed


def _decode_torchvision(jpegs: Sequence[bytes], device: str):
    """CHW uint8 tensors and failed indices. A failure of the batch call falls back to one-by-one decoding
    so one bad file cannot sink its neighbours."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    # An empty payload (frombuffer refuses it) becomes one byte, which fails like any corrupt file.
    raw = [torch.frombuffer(bytearray(b or b"\0"), dtype=torch.uint8) for b in jpegs]
    with _decode_memory(device) as decoded:
        try:
            decoded.extend(decode_jpeg(raw, mode=ImageReadMode.RGB, device=device))
            return decoded, []
        except RuntimeError:
            failed = []
            for i, one in enumerate(raw):
                try:
                    decoded.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    failed.append(i)
            return decoded, failed


@contextlib.contextmanager
def _decode_memory(device: str) -> Iterator[list]:
    """Gives the decoder's output tensors memory that no queued kernel still uses.

    torchvision allocates a decoded image on the caller's current stream but writes it from nvjpeg's own
    stream, without waiting for the caller's stream. On the model's stream, that memory can be an earlier
    batch's activations, freed by Python while the GPU has not yet run the kernels that use them: the
    decoder would overwrite them (garbage or NaN scores once the CPU works ahead, clip_score.overlap). So
    the decoder allocates on a stream of its own, whose memory holds only decoded images; each one is
    marked as used by the model's stream, so its memory is reused only once those kernels have run.
    """
    decoded: list = []
    if not device.startswith("cuda"):
        yield decoded
        return
    import torch

    consumer = torch.cuda.current_stream(device)
    side = _allocation_stream(torch.device(device))
    with torch.cuda.stream(side):
        yield decoded
    consumer.wait_stream(side)  # torchvision made `side` wait for the decoder
    for image in decoded:
        image.record_stream(consumer)


@functools.lru_cache(maxsize=8)
def _allocation_stream(device):
    import torch

    return torch.cuda.Stream(device)
