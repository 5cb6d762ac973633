"""Image preprocessing for the Qwen-VL model, exactly as Qwen-VL's `visual.py` does it.

Qwen-VL: `Image.open(path).convert("RGB")`, `Resize((size, size), BICUBIC)` (the aspect ratio is NOT
kept, and no EXIF rotation is applied), `ToTensor()`, `Normalize(mean, std)` with OpenAI CLIP's statistics.
torchvision resizes a PIL image with PIL's own bicubic filter, so the PIL path here gives the same
pixels; the float step reuses clip_preprocess.normalize (x / 255, minus mean, over std).
`size` is the model's `config.vision.image_size` (448 for Qwen-VL and the bundled compact model).
"""

from __future__ import annotations

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
    if isinstance(image, (bytes, bytearray, memoryview)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(bytes(image))) as img:
                rgb = img.convert("RGB")
    else:
        rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return np.array(rgb, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only)


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
