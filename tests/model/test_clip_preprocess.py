import io

import numpy as np
import torch
from PIL import Image

from vlcurate.model.clip_preprocess import gpu_decode_resize, pil_pixels


def jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    # Smooth content (a gradient plus a little noise): resampling differences stay small.
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], axis=-1)
    rgb = np.clip(rgb + rng.integers(-8, 8, rgb.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_tensor_path_batches_by_size_keeps_order_and_reports_bad_files():
    # The nvjpeg path's logic runs on the CPU too (torchvision decodes there), so it is tested here.
    images = [jpeg(64, 48, 0), b"not a jpeg", jpeg(40, 80, 1), jpeg(64, 48, 2), jpeg(32, 32, 3)]
    out, failed = gpu_decode_resize(images, 32, "cpu")
    assert failed == [1]
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8
    for row, data in zip(out, [images[0], images[2], images[3], images[4]]):
        reference = torch.from_numpy(pil_pixels(data, 32, draft=False)).permute(2, 0, 1)
        assert (row.int() - reference.int()).abs().float().mean() < 3.0


def test_one_size_only_is_one_batch():
    images = [jpeg(64, 48, s) for s in range(3)]
    out, failed = gpu_decode_resize(images, 24, "cpu")
    assert failed == [] and out.shape == (3, 3, 24, 24)
    single = [gpu_decode_resize([img], 24, "cpu")[0][0] for img in images]
    assert all(torch.equal(out[i], single[i]) for i in range(3))


def test_mixed_sizes_come_back_in_input_order_equal_to_one_by_one():
    """Sizes repeat out of order (two of 64x48), and besides downscaling some images are only cropped
    (shorter side 24), one is already 24x24 and one is upscaled; each must equal its single-image result
    (one size alone takes another way to its crop)."""
    sizes = [(64, 48), (40, 80), (24, 50), (32, 32), (64, 48), (24, 24), (90, 30), (20, 30), (70, 24)]
    images = [jpeg(w, h, seed) for seed, (w, h) in enumerate(sizes)]
    out, failed = gpu_decode_resize(images, 24, "cpu")
    assert failed == [] and out.shape == (len(sizes), 3, 24, 24)
    for i, img in enumerate(images):
        assert torch.equal(out[i], gpu_decode_resize([img], 24, "cpu")[0][0]), i


def test_a_batch_where_nothing_decodes_is_empty():
    out, failed = gpu_decode_resize([b"broken", b""], 24, "cpu")
    assert failed == [0, 1] and out.shape == (0, 3, 24, 24) and out.dtype == torch.uint8
