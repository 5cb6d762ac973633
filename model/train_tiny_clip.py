"""Trains the bundled tiny CLIP on synthetic scenes (model/scenes.py), English and Chinese captions.

    python -m vlcurate.model.train_tiny_clip --out model/weights/tiny-synth-clip

Seeded end to end, CPU only, a few minutes on 2 cores. Writes open_clip's local-dir layout
(open_clip_config.json + open_clip_model.safetensors in fp16) and eval.json with the held-out ROC AUC of
matched vs mismatched pairs (a caption of another random scene), per caption language.
The model: ViT 2 layers x width 64 on 32 px (patch 4), text 2 layers x width 32, embedding 64.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import time

import numpy as np

from vlcurate.model.clip_preprocess import pil_pixels
from vlcurate.model.scenes import caption_en, caption_zh, random_scene, render

IMAGE_SIZE = 32
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, as open_clip's default preprocessing
STD = (0.26862954, 0.26130258, 0.27577711)
CONFIG = {
    "model_cfg": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 64, "head_width": 32, "patch_size": 4},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {
        "size": IMAGE_SIZE,
        "mean": list(MEAN),
        "std": list(STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}


def make_examples(n: int, seed: int, zh_share: float = 0.3) -> tuple[np.ndarray, list[str], list[str]]:
    """n scenes rendered at web-like sizes, half of them JPEG-compressed, reduced to 32 px exactly as
    the scorer's CPU path does. Returns (pixels, captions, languages)."""
    rng = random.Random(seed)
    pixels, captions, langs = [], [], []
    for _ in range(n):
        scene = random_scene(rng)
        w, h = rng.randint(128, 288), rng.randint(128, 288)
        buffer = io.BytesIO()
        render(scene, w, h).save(buffer, "JPEG" if rng.random() < 0.5 else "PNG", quality=85)
        pixels.append(pil_pixels(buffer.getvalue(), IMAGE_SIZE))
        zh = rng.random() < zh_share
        captions.append(caption_zh(scene, rng) if zh else caption_en(scene, rng))
        langs.append("zh" if zh else "en")
    return np.stack(pixels), captions, langs


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a matched pair outscores a mismatched one (ties count half)."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    rank_sum = ranks[: len(positive)].sum()
    return float((rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def train(out: str, steps: int, n_train: int, seed: int, batch: int = 256) -> dict:
    import open_clip
    import torch
    from safetensors.torch import save_file

    from vlcurate.model.clip_preprocess import normalize

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.time()
    images, captions, _ = make_examples(n_train, seed)
    print(f"rendered {n_train} training scenes in {time.time() - start:.0f}s", flush=True)
    model = open_clip.CLIP(**CONFIG["model_cfg"])
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the standard CLIP BPE tokenizer, shipped in the wheel
    tokens = tokenizer(captions)
    pixels = normalize(torch.from_numpy(images), MEAN, STD, torch.float32).contiguous()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, n_train, (batch,), generator=generator)
        image_features, text_features, scale = model(pixels[idx], tokens[idx])
        logits = scale * image_features @ text_features.T
        # Same scene drawn twice in a batch is rare; plain InfoNCE both ways.
        target = torch.arange(batch)
        loss = (
            torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)
        ) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - start:.0f}s", flush=True)
    model.eval()
    evaluation = evaluate(model, tokenizer, seed + 1)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "open_clip_config.json"), "w") as fh:
        json.dump(CONFIG, fh, indent=1)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out, "open_clip_model.safetensors"))
    report = {
        "seed": seed,
        "steps": steps,
        "train_scenes": n_train,
        "seconds": round(time.time() - start, 1),
        **evaluation,
    }
    with open(os.path.join(out, "eval.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    return report


def evaluate(model, tokenizer, seed: int, n: int = 2000) -> dict:
    """Held-out scenes: matched caption vs the caption of another random scene, per language."""
    import torch

    from vlcurate.model.clip_preprocess import normalize

    images, captions, langs = make_examples(n, seed, zh_share=0.5)
    shuffled = captions[1:] + captions[:1]  # each image meets the caption of a different random scene
    with torch.no_grad():
        img = torch.nn.functional.normalize(
            model.encode_image(normalize(torch.from_numpy(images), MEAN, STD, torch.float32)), dim=-1
        )
        pos = (img * torch.nn.functional.normalize(model.encode_text(tokenizer(captions)), dim=-1)).sum(-1)
        neg = (img * torch.nn.functional.normalize(model.encode_text(tokenizer(shuffled)), dim=-1)).sum(-1)
    pos, neg, langs = pos.numpy(), neg.numpy(), np.array(langs)
    result = {"auc": round(roc_auc(pos, neg), 4)}
    for lang in ("en", "zh"):
        mask = langs == lang
        result[f"auc_{lang}"] = round(roc_auc(pos[mask], neg[mask]), 4)
    result["matched_mean"], result["mismatched_mean"] = (
        round(float(pos.mean()), 4),
        round(float(neg.mean()), 4),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "weights", "tiny-synth-clip")
    )
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--train-scenes", type=int, default=16000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(train(args.out, args.steps, args.train_scenes, args.seed), indent=1))


if __name__ == "__main__":
    main()
