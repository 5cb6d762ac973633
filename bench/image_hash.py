"""Perceptual hashes (filters/image_hash.py) on planted near-duplicates: what Hamming radius catches
re-encoded, resized and cropped copies, how many distinct images it would merge, and what a hash costs.

    python bench/image_hash.py [--images 600] [--seed 0]

Originals: distinct synthetic scenes (model/scenes.py; equal scenes are drawn once), 480x360 JPEGs at
quality 90. Copies of each: re-encoded at quality 50, resized to half (quality 85), and cropped by 5% and
by 10% of each side's length (half from each end, quality 85). Every hash is taken the way the pipeline
would take it, from a draft decode at 1/8 scale (decode_check's, 64 px at least), and also from the full
decode, to show the two agree. Per hash and radius r: the share of copies within r of their original
(recall), and the share of originals with another original within r (falsely merged). Distinct scenes can
differ only in a shape's colour or a word, which grey levels barely show: the synthetic domain is harder
on false merges than photographs, and is the only image set this machine has. Prints tables and writes
bench/results/image_hash.json.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import sys
import time

import numpy as np
from PIL import Image
from report import write_results

RADII = range(0, 17)
COPIES = ("reencode_q50", "half_size", "crop_5pct", "crop_10pct")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _crop(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * share / 2), round(h * share / 2)
    return image.crop((dx, dy, w - dx, h - dy))


def planted(n: int, seed: int) -> tuple[list[bytes], dict[str, list[bytes]]]:
    """n distinct originals (JPEG bytes) and, per kind of copy, one copy of each."""
    from vlcurate.model.scenes import random_scene, render

    rng, scenes = random.Random(seed), {}
    while len(scenes) < n:
        scene = random_scene(rng)
        scenes.setdefault(scene, None)
    originals, copies = [], {kind: [] for kind in COPIES}
    for scene in scenes:
        image = render(scene, 480, 360)
        original = _jpeg(image, 90)
        decoded = Image.open(io.BytesIO(original)).convert("RGB")
        originals.append(original)
        copies["reencode_q50"].append(_jpeg(decoded, 50))
        copies["half_size"].append(_jpeg(decoded.resize((240, 180), Image.Resampling.BICUBIC), 85))
        copies["crop_5pct"].append(_jpeg(_crop(decoded, 0.05), 85))
        copies["crop_10pct"].append(_jpeg(_crop(decoded, 0.10), 85))
    return originals, copies


def _decoded(data: bytes, draft: bool) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    if draft:
        image.draft("RGB", (64, 64))  # decode_check's default draft_size
    image.load()
    return image


def hashes(images: list[bytes], fn, draft: bool) -> np.ndarray:
    return np.array([fn(_decoded(data, draft)) for data in images], dtype=np.uint64)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise Hamming distances of two uint64 arrays."""
    x = np.bitwise_xor(a, b)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def nearest_other(h: np.ndarray) -> np.ndarray:
    """For each hash, the distance to the nearest other hash of the array (all pairs: a bench, not LSH)."""
    bits = np.unpackbits(h.view(np.uint8).reshape(-1, 8), axis=1).astype(np.int32)  # [n, 64]
    d = bits.shape[1] - (bits @ bits.T + (1 - bits) @ (1 - bits).T)  # Hamming: 64 minus agreements
    np.fill_diagonal(d, 10**6)
    return d.min(axis=1)


def cost_us(images: list[bytes], fn) -> dict[str, float]:
    """Per image: the draft decode alone, and the hash of an already decoded draft (best of 3)."""
    decoded = [_decoded(data, True) for data in images]
    best_decode = best_hash = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for data in images:
            _decoded(data, True)
        best_decode = min(best_decode, time.perf_counter() - start)
        start = time.perf_counter()
        for image in decoded:
            fn(image)
        best_hash = min(best_hash, time.perf_counter() - start)
    return {"draft_decode_us": 1e6 * best_decode / len(images), "hash_us": 1e6 * best_hash / len(images)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from vlcurate.filters.image_hash import dhash64, phash64

    originals, copies = planted(args.images, args.seed)
    rows = []
    for name, fn in (("phash64", phash64), ("dhash64", dhash64)):
        base = hashes(originals, fn, draft=True)
        full = hashes(originals, fn, draft=False)
        copy_d = {kind: distances(base, hashes(images, fn, draft=True)) for kind, images in copies.items()}
        merged = nearest_other(base)
        row = {
            "hash": name,
            "images": len(originals),
            "draft_vs_full_mean_bits": float(distances(base, full).mean()),
            **cost_us(originals[:200], fn),
            "by_radius": [
                {
                    "radius": r,
                    **{f"recall_{kind}": float((d <= r).mean()) for kind, d in copy_d.items()},
                    "falsely_merged": float((merged <= r).mean()),
                }
                for r in RADII
            ],
        }
        rows.append(row)
        print(
            f"\n{name}: {len(originals)} distinct scenes; draft vs full decode differ by "
            f"{row['draft_vs_full_mean_bits']:.2f} bits on average; draft decode "
            f"{row['draft_decode_us']:.0f} us, hash {row['hash_us']:.0f} us an image"
        )
        print("radius  " + "  ".join(f"{k:>12}" for k in COPIES) + "  falsely merged")
        for entry in row["by_radius"]:
            recalls = "  ".join(f"{entry['recall_' + k]:>12.1%}" for k in COPIES)
            print(f"{entry['radius']:>6}  {recalls}  {entry['falsely_merged']:>14.1%}")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print("\nwrote", write_results("image_hash", rows, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
