"""Image preprocessing for the Qwen-VL model, exactly as Qwen-VL's `visual.py` does it.

Qwen-VL: `Image.open(path).convert("RGB")`, `Resize((size, size), BICUBIC)` (the aspect ratio is NOT
kept, and no EXIF rotation is applied), `ToTensor()`, `Normalize(mean, std)` with OpenAI CLIP's statistics.
torchvision resizes a PIL image with PIL's own bicubic filter, so the PIL path here gives the same
pixels; the float step reuses clip_preprocess.normalize (x / 255, minus mean, over std).
`size` is the model's `config.vision.image_size` (448 for Qwen-VL and the bundled compact model).
"""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
from PIL import Image

from vlcurate.model.clip_preprocess import normalize

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 448


def qwenvl_pixels(image: bytes | Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Encoded bytes or a PIL image -> [size, size, 3] uint8, RGB, resized bicubic without keeping the
    aspect ratio. Raises (PIL's errors) on undecodable data."""
    rgb = _open_rgb(image) if isinstance(image, (bytes, bytearray, memoryview)) else image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return np.array(rgb, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only)


def decode_rgb(image: bytes) -> np.ndarray:
    """Encoded bytes -> [height, width, 3] uint8 RGB at the image's own size (qwenvl_pixels before its
    resize; `resize_like_pil` finishes it on a GPU). Raises (PIL's errors) on undecodable data."""
    return np.array(_open_rgb(image), dtype=np.uint8)


def _open_rgb(data: bytes | bytearray | memoryview) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(bytes(data))) as img:
            return img.convert("RGB")


# PIL's 8-bit resampling (Pillow's Resample.c): per axis, weights in fixed point with 22 fraction bits;
# each pass adds half a unit, floors and clips to 0-255; the horizontal pass first. That order is every
# Pillow's before 13 (Qwen-VL's included); Pillow 13 runs some resizes that shrink the height more than
# the width vertically first, which moves a few pixels of those images by a few levels.
_PRECISION_BITS = 22
_CHUNK_VALUES = 1 << 26  # input values resized at once (float64: 512 MB)


def _bicubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic kernel (a = -0.5, support 2)."""
    a, x = -0.5, np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=256)
def pil_bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] float64 holding PIL's integer weights (scaled by 2**22) for resizing one axis
    from in_size to out_size pixels, bicubic: out = floor((2**21 + weights @ in) / 2**22), clipped."""
    scale = in_size / out_size
    support = 2.0 * max(scale, 1.0)
    weights = np.zeros((out_size, in_size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero, as int() does
        hi = min(int(center + support + 0.5), in_size)
        k = _bicubic((np.arange(lo, hi) - center + 0.5) / max(scale, 1.0))
        if k.sum() != 0.0:
            k = k / k.sum()
        weights[out, lo:hi] = np.trunc(k * (1 << _PRECISION_BITS) + np.where(k < 0, -0.5, 0.5))
    weights.setflags(write=False)
    return weights


def resize_like_pil(pixels, size: int):
    """uint8 [n, height, width, 3] tensor (any device) -> uint8 [n, size, size, 3]: the pixels PIL's
    `resize((size, size), BICUBIC)` gives, bit for bit (tests/model/test_qwenvl_images.py; with
    Pillow 13, for images whose height does not shrink more than their width, see above). The
    fixed-point sums are integers below 2**31, which float64 holds exactly. On a GPU this replaces some
    3.5 ms of CPU time an image (PIL's resize) with two small matmuls."""
    import torch

    n, height, width, _ = pixels.shape
    chunk = max(1, _CHUNK_VALUES // (height * width * 3))
    out = []
    for first in range(0, n, chunk):
        x = pixels[first : first + chunk].to(torch.float64)
        for axis, length in ((2, width), (1, height)):  # horizontal, then vertical
            if length == size:
                continue
            weights = torch.tensor(pil_bicubic_weights(length, size), device=x.device)  # [size, length]
            x = torch.movedim(torch.movedim(x, axis, -1) @ weights.T, -1, axis)
            x = torch.floor((x + (1 << (_PRECISION_BITS - 1))) / (1 << _PRECISION_BITS)).clamp_(0, 255)
        out.append(x.to(torch.uint8))
    return torch.cat(out)


def normalize_pixels(pixels, dtype=None):
    """uint8 [n, size, size, 3] (numpy or tensor, any device) -> normalized float [n, 3, size, size]."""
    import torch

    if isinstance(pixels, np.ndarray):
        pixels = torch.from_numpy(np.ascontiguousarray(pixels))
    return normalize(pixels, MEAN, STD, dtype or torch.float32).contiguous()


def image_tensor(image: bytes | Image.Image, size: int = IMAGE_SIZE, dtype=None):
    """One image -> the [3, size, size] float tensor Qwen-VL's model receives."""
    return normalize_pixels(qwenvl_pixels(image, size)[None], dtype)[0]


def image_batch(images, size: int = IMAGE_SIZE, dtype=None):
    """Several images -> [n, 3, size, size]."""
    return normalize_pixels(np.stack([qwenvl_pixels(image, size) for image in images]), dtype)
