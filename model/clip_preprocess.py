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
    # Web images come in many sizes, and each distinct size is resized on its own: a cast to float and an
    # interpolate call are all a size costs (kernel launches, the CPU cost of this path). The rest runs
    # once per batch: one copy lays out each size's images side by side, one gather takes every crop's
    # rows in input order (`bench/clip_gpu.py resize` measures the per-size cost). Floats are made size by
    # size, so a batch of large images is never all in float at once.
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(decoded):
        by_shape.setdefault((img.shape[1], img.shape[2]), []).append(i)
    flat = torch.cat([decoded[i].reshape(-1) for indices in by_shape.values() for i in indices])
    resized, windows, start, offset = [], [(0, 0, 0)] * len(decoded), 0, 0
    del decoded  # the copy in `flat` is all that is needed now
    for (h, w), indices in by_shape.items():
        x = flat[start : start + len(indices) * 3 * h * w].view(len(indices), 3, h, w).float()
        start += x.numel()
        tw, th = resized_size(w, h, size)
        if (tw, th) != (w, h):
            x = F.interpolate(x, size=(th, tw), mode="bicubic", antialias=True, align_corners=False)
        left, top, _, _ = crop_box(tw, th, size)
        for k, i in enumerate(indices):  # where image i's crop starts, its channel plane, its row length
            windows[i] = (offset + k * 3 * th * tw + top * tw + left, th * tw, tw)
        resized.append(x)
        offset += x.numel()
    if len(resized) == 1:  # one size: the crop is a slice, already in input order
        pixels = resized[0][:, :, top : top + size, left : left + size]
    else:
        pixels = _crop_rows(torch.cat([x.reshape(-1) for x in resized]), windows, size, device)
    return pixels.round_().clamp_(0, 255).to(torch.uint8).contiguous(), failed


def _crop_rows(pool, windows: list[tuple[int, int, int]], size: int, device: str):
    """Each image's crop, gathered from `pool` (the flat resized images) as whole rows: the crop of window
    (start, plane, row length) has row r of channel c at start + c * plane + r * row length. Rows are
    read through a view of `pool` whose row j is pool[j : j + size], so the index has one entry per row."""
    import torch

    windows_on_device = to_device(torch.tensor(windows, dtype=torch.int64), device)
    start, plane, width = windows_on_device.view(-1, 3, 1, 1).unbind(1)
    channels, rows = _crop_grid(size, str(device))
    return pool.unfold(0, size, 1)[start + channels * plane + rows * width]


@functools.lru_cache(maxsize=8)
def _crop_grid(size: int, device: str):
    """Channel and row numbers shaped to broadcast over (images, 3, size), made once per device."""
    import torch

    channels = to_device(torch.arange(3, dtype=torch.int64).view(1, 3, 1), device)
    return channels, to_device(torch.arange(size, dtype=torch.int64).view(1, 1, size), device)


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
