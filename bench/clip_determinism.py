"""Does a pair's CLIP score depend on the other pairs in its batch? Unpadded vs padded batches.

Scores the same N pairs three ways and compares each pair's score bit for bit with a reference run (one
full batch of `--batch` pairs):
- `unpadded`: batches of random sizes 1..batch (what timing-dependent batching produced);
- `padded`: the same random batches, each padded to `--batch` rows (zero images, the first caption), the
  padding's outputs dropped: the kernels always see the same shapes;
- `shuffled+padded`: the pairs in another order, padded.
It needs only torch and open_clip (no Beam), so it runs on a GPU machine with open_clip's wheel carried.

    python bench/clip_determinism.py [--device cuda] [--models tiny ViT-B-32] [--n 1024] [--batch 256]
"""

from __future__ import annotations

import argparse
import os
import random

import open_clip
import torch
from report import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = "local-dir:" + os.path.join(HERE, "..", "model", "weights", "tiny-synth-clip")


def load(name: str, device: str, precision: str):
    if name == "tiny":
        model, _, _ = open_clip.create_model_and_transforms(TINY)
        tokenizer = open_clip.get_tokenizer(TINY)
    else:
        model = open_clip.create_model(name, pretrained=None)
        tokenizer = open_clip.get_tokenizer(name)
    model = model.to(device).eval()
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    return model, tokenizer


@torch.inference_mode()
def score(model, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    image = model.encode_image(images)
    text = model.encode_text(tokens)
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return (image * text).sum(dim=-1).float()


def batched_scores(model, images, tokens, order, sizes, pad_to: int | None) -> torch.Tensor:
    out = torch.empty(len(order), device=images.device)
    start = 0
    for size in sizes:
        idx = torch.tensor(order[start : start + size], device=images.device)
        batch_images, batch_tokens = images[idx], tokens[idx]
        if pad_to is not None and size < pad_to:
            pad = pad_to - size
            batch_images = torch.cat([batch_images, images.new_zeros((pad, *images.shape[1:]))])
            batch_tokens = torch.cat([batch_tokens, tokens[:1].expand(pad, -1)])
        out[idx] = score(model, batch_images, batch_tokens)[:size]
        start += size
    return out


def random_sizes(n: int, batch: int, rng: random.Random) -> list[int]:
    sizes = []
    while sum(sizes) < n:
        sizes.append(min(rng.randint(1, batch), n - sum(sizes)))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["tiny", "ViT-B-32"])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    args = parser.parse_args()
    rng = random.Random(0)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model, tokenizer = load(name, args.device, args.precision if name != "tiny" else "fp32")
        size = model.visual.image_size
        size = size[0] if isinstance(size, tuple) else size
        dtype = next(model.parameters()).dtype
        images = torch.rand(args.n, 3, size, size, device=args.device, dtype=dtype)
        words = ["a", "red", "dog", "on", "the", "grass", "photo", "of", "blue", "car", "wow!amazing"]
        captions = [" ".join(rng.choices(words, k=rng.randint(2, 12))) for _ in range(args.n)]
        tokens = tokenizer(captions).to(args.device)
        order = list(range(args.n))
        full = [args.batch] * (args.n // args.batch) + ([args.n % args.batch] if args.n % args.batch else [])
        reference = batched_scores(model, images, tokens, order, full, pad_to=args.batch)
        shuffled = order[:]
        rng.shuffle(shuffled)
        sizes = random_sizes(args.n, args.batch, rng)
        for label, run_order, pad in (
            ("unpadded", order, None),
            ("padded", order, args.batch),
            ("shuffled+padded", shuffled, args.batch),
        ):
            got = batched_scores(model, images, tokens, run_order, sizes, pad)
            diff = (got - reference).abs()
            rows.append(
                {
                    "model": name,
                    "precision": str(dtype).removeprefix("torch."),
                    "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                    "batches": label,
                    "pairs_differing": int((diff > 0).sum()),
                    "max_abs_diff": float(diff.max()),
                }
            )
            print(
                f"{name:10s} {rows[-1]['precision']:9s} {label:16s} "
                f"{rows[-1]['pairs_differing']:5d} of {args.n} differ, max {rows[-1]['max_abs_diff']:.3g}"
            )
    machine = rows[0]["device"] if rows else args.device
    print("wrote", write_results("clip_determinism", rows, machine))


if __name__ == "__main__":
    main()
