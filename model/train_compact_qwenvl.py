"""Trains the bundled compact Qwen-VL (bundled:compact-qwenvl) on vlcurate's synthetic shapes domain.

    python -m vlcurate.model.train_compact_qwenvl --out model/weights/compact-qwenvl

A tool, imported by nothing in the package (import-linter contract "trainers"): with its samples
(train_compact_qwenvl_data.py) and its eval (train_compact_qwenvl_eval.py) it imports formatters/ and
synth/, above model/ in the layers, because its token sequences must be exactly what our shards hold.
Images are rendered at 112-448 px a side, JPEG-encoded, kept in memory by path, and reach the model through
qwenvl_images.image_batch, the checker's own preprocessing (448 px).

Seeded end to end; `--device cuda` trains on a GPU (the bundled weights: one H100, two runs of 8 and 3.5
minutes, see weights/compact-qwenvl/README.md), `--device cpu` on the CPU (0.8 s a step of six scenes on
2 cores). `--init DIR` goes on from saved weights (their config wins, every embedding row they hold is
kept). The recipe, and why:
- A step takes one group of `--scenes` scenes (3; the bundled weights: 6) and the samples that show them:
  the ViT encodes each image once.
- A dense auxiliary head (not saved) makes every adapter output predict, for its cell of the 16x16 grid,
  a 4x4 thumbnail, its (row, column), and the kind, colour and box digits of the shape it lies on (from
  the renderer's geometry). It stands in for the pretraining Qwen-VL's ViT starts from (OpenCLIP):
  without it the decoder learns the text templates within minutes and never starts to read the image.
- Token ids that never occur in the training samples keep zero embeddings (tied in/out): their logit is
  exactly 0, so the loss adds their count to the partition function (log-sum-exp with log(n_unused))
  and equals the full-vocabulary cross-entropy the checker computes, while the softmax runs over the few
  hundred ids the domain uses.
Writes config.json + model.safetensors (fp16) and eval.json: held-out losses per task, the share of
samples whose own image gives a lower loss than another sample's, and how model/loss_flags.py catches
planted defects (swapped images, mirrored boxes, exchanged captions) at its defaults and over a grid of
its thresholds, all measured on the saved weights; the per-sample losses are stored too (`--reflag`
recomputes the flags from them after a change of loss_flags).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time

from vlcurate.formatters.boxes import normalize_box
from vlcurate.model.qwen_tokenizer import IGNORE_INDEX
from vlcurate.model.qwenvl_config import QwenVLConfig
from vlcurate.model.scenes import (
    COLORS,
    KINDS,
)
from vlcurate.model.train_compact_qwenvl_data import (
    SHOT_SIDES,
    Domain,
    Shot,
    batch_tensors,
    domain_ids,
    sub_batches,
    training_groups,
)
from vlcurate.model.train_compact_qwenvl_eval import evaluate, reflag, write_eval_json
from vlcurate.synth.scene_tasks import shape_boxes

VISION_LR = float(os.environ.get("VISION_LR", "1"))  # experiment knob
AUX_WEIGHT = float(os.environ.get("AUX_WEIGHT", "1"))  # experiment knob

# --- the dense auxiliary objective ---------------------------------------------------------------------

AUX_OUTPUTS = 48 + 2 + (1 + len(KINDS)) + (1 + len(COLORS)) + 8 * 10


def dense_targets(shot: Shot, side: int):
    """Per grid cell (row-major), from the renderer's geometry: its (row, column) in [-1, 1]; the kind and
    colour (0: background) of the shape whose box holds the cell's centre, and the hundreds and tens
    digits of that box's normalized coordinates, as its `<box>(x1,y1),(x2,y2)</box>` text writes them."""
    import torch

    axis = (torch.arange(side, dtype=torch.float32) + 0.5) / side  # cell centres in [0, 1]
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    x, y = cols.reshape(-1), rows.reshape(-1)
    kind = torch.zeros(side * side, dtype=torch.long)
    color = torch.zeros(side * side, dtype=torch.long)
    digits = torch.zeros(side * side, 8, dtype=torch.long)
    w, h = shot.width, shot.height
    for shape, box in zip(shot.scene.shapes, shape_boxes(shot.scene, w, h)):
        inside = (x >= box[0] / w) & (x <= box[2] / w) & (y >= box[1] / h) & (y <= box[3] / h)
        kind[inside] = KINDS.index(shape.kind) + 1  # later shapes are drawn on top
        color[inside] = list(COLORS).index(shape.color) + 1
        digits[inside] = torch.tensor([d for v in normalize_box(box, w, h) for d in (v // 100, v // 10 % 10)])
    return torch.stack([y, x], -1) * 2 - 1, kind, color, digits


def dense_loss(pred, pixels, targets):
    """Each image slot predicts its cell's 4x4 thumbnail and (row, column), and the kind, colour and box
    digits of the shape it lies on: the ViT and adapter learn what the decoder needs (what and where), as
    a pretrained vision tower would bring. pred [n, slots, AUX_OUTPUTS], pixels [n, 3, S, S]."""
    import torch
    import torch.nn.functional as F

    n, slots, _ = pred.shape
    side = math.isqrt(slots)
    thumbs = F.avg_pool2d(pixels, pixels.shape[-1] // (4 * side)).unfold(2, 4, 4).unfold(3, 4, 4)
    thumbs = thumbs.permute(0, 2, 3, 1, 4, 5).reshape(n, slots, 48)  # [n, slots, 3 x 4 x 4]
    where, kind, color, digits = (torch.stack(t) for t in zip(*targets))
    on_shape = kind > 0
    k, c = 50 + 1 + len(KINDS), 50 + 2 + len(KINDS) + len(COLORS)
    return (
        F.mse_loss(pred[..., :48], thumbs)
        + F.mse_loss(pred[..., 48:50], where)
        + F.cross_entropy(pred[..., 50:k].reshape(-1, k - 50), kind.reshape(-1))
        + F.cross_entropy(pred[..., k:c].reshape(-1, c - k), color.reshape(-1))
        + F.cross_entropy(pred[..., c:][on_shape].reshape(-1, 10), digits[on_shape].reshape(-1))
    )


# --- training --------------------------------------------------------------------------------------------


def warmup_share(steps: int) -> float:
    """OneCycleLR's pct_start: 5% of the steps, but at least two steps' worth (torch divides by zero when
    the warm-up is exactly one step, e.g. 20 steps at 5%)."""
    share = max(0.05, 2 / steps)
    return share if share < 0.5 else 0.3  # a run of 4 steps or fewer


def train(
    out: str,
    config: QwenVLConfig,
    n_groups: int,
    steps: int,
    lr: float,
    seed: int,
    per_scene: int = 2,
    device: str = "cpu",
    scenes: int = 3,
    init: str | None = None,
    sides: tuple[int, int] = SHOT_SIDES,
) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from vlcurate.model.qwenvl import QwenVL
    from vlcurate.model.qwenvl_images import image_batch
    from vlcurate.model.qwenvl_weights import save_local_dir

    start = time.time()
    torch.manual_seed(seed)
    domain = Domain(f"compact-qwenvl:train:{seed}", sides)
    groups = training_groups(domain, n_groups, per_scene, scenes=scenes)
    vocab = domain_ids([e for g in groups for e in g])
    n_samples = sum(map(len, groups))
    print(f"{n_samples} training samples, {len(vocab)} distinct ids, {time.time() - start:.0f}s", flush=True)

    if init:  # go on from saved weights (their config wins): their rows for the ids they know
        from vlcurate.model.qwenvl_weights import load_model

        model, config = load_model(f"local-dir:{init}", device="cpu")
        model.use_vocab_rows(None)
        used = torch.nonzero(model.wte.weight.ne(0).any(dim=1)).squeeze(1).tolist()
        vocab = sorted(set(vocab) | set(used))  # ids this data lacks keep their rows
        known = model.wte.weight.detach()[torch.tensor(vocab)]
        rows = torch.randn(len(vocab), config.decoder.hidden_size).mul_(0.02)
        rows = torch.where(known.ne(0).any(dim=1, keepdim=True), known, rows)
        model = model.to(device)
    else:
        model = QwenVL(config).to(device)
        rows = torch.randn(len(vocab), config.decoder.hidden_size).mul_(0.02)
    # While training, the embedding holds only the domain's rows; `table` maps an id to its row.
    table = torch.zeros(config.decoder.vocab_size, dtype=torch.long, device=device)
    table[torch.tensor(vocab, device=device)] = torch.arange(len(vocab), device=device)
    rows = nn.Parameter(rows.to(device))
    del model.wte
    model.wte = lambda ids: F.embedding(table[ids], rows)  # what QwenVL.embed calls
    log_unused = torch.tensor(math.log(config.decoder.vocab_size - len(vocab)), device=device)
    aux = nn.Linear(config.decoder.hidden_size, AUX_OUTPUTS).to(device)  # the dense auxiliary head, not saved
    side = math.isqrt(config.adapter.queries)
    targets_of: dict[str, tuple] = {}
    params = [rows, *model.parameters(), *aux.parameters()]
    vision = {id(p) for p in model.visual.parameters()}
    param_groups = [
        {
            "params": [p for p in params if p.dim() >= 2 and id(p) in vision],
            "weight_decay": 0.05,
            "lr": lr * VISION_LR,
        },
        {
            "params": [p for p in params if p.dim() < 2 and id(p) in vision],
            "weight_decay": 0.0,
            "lr": lr * VISION_LR,
        },
        {
            "params": [p for p in params if p.dim() >= 2 and id(p) not in vision],
            "weight_decay": 0.05,
            "lr": lr,
        },
        {"params": [p for p in params if p.dim() < 2 and id(p) not in vision], "weight_decay": 0.0, "lr": lr},
    ]
    optimizer = torch.optim.AdamW(param_groups, lr=lr, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in param_groups], total_steps=steps, pct_start=warmup_share(steps)
    )
    order = random.Random(seed)
    model.train()
    for step in range(steps):
        if step % len(groups) == 0:
            order.shuffle(groups)  # a new epoch
        group = groups[step % len(groups)]
        paths = sorted({p for e in group for p in e.view.images})
        pixels = image_batch([domain.images[p] for p in paths], config.vision.image_size).to(device)
        features = model.visual(pixels)  # [n, slots, hidden]
        for p in paths:
            if p not in targets_of:
                targets_of[p] = tuple(t.to(device) for t in dense_targets(domain.shots[p], side))
        aux_loss = dense_loss(aux(features), pixels, [targets_of[p] for p in paths])
        where = {p: i for i, p in enumerate(paths)}
        losses = []
        for part in sub_batches(group):
            ids, labels = (t.to(device) for t in batch_tensors(part))
            index = [where[p] for e in part for p in e.view.images]
            h = model.hidden_states(ids, features=features[index] if index else None)[:, :-1]
            targets = labels[:, 1:]
            r, c = torch.nonzero(targets != IGNORE_INDEX, as_tuple=True)
            logits = h[r, c] @ rows.T  # [S, domain]; the other ids' logits are exactly 0
            norm = torch.logaddexp(torch.logsumexp(logits, -1), log_unused)
            losses.append(norm - logits.gather(1, table[targets[r, c]].unsqueeze(1)).squeeze(1))
        loss = torch.cat(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        (loss + AUX_WEIGHT * aux_loss).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(
                f"step {step:5d}  loss {loss.item():.3f}  aux {aux_loss.item():.3f}  {time.time() - start:.0f}s",
                flush=True,
            )
    seconds = time.time() - start

    # Export: the full vocabulary, zero rows for the ids the domain never uses.
    full = torch.zeros(config.decoder.vocab_size, config.decoder.hidden_size)
    full[torch.tensor(vocab)] = rows.detach().cpu()
    model = model.cpu()
    model.wte = nn.Embedding.from_pretrained(full, freeze=False)
    save_local_dir(model.eval(), config, out)
    return {
        "seed": seed,
        "steps": steps,
        "train_groups": n_groups,
        "samples_per_scene": per_scene,
        "scenes_per_group": scenes,
        "init": init,
        "image_sides": list(sides),
        "train_samples": n_samples,
        "train_images": len(domain.images),
        "lr": lr,
        "domain_ids": len(vocab),
        "train_seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "file_bytes": os.path.getsize(os.path.join(out, "model.safetensors")),
    }


# What train() reports, kept by --eval-only.
TRAINING_FACTS = (
    "seed",
    "steps",
    "train_groups",
    "samples_per_scene",
    "scenes_per_group",
    "init",
    "image_sides",
    "train_samples",
    "train_images",
    "lr",
    "domain_ids",
    "train_seconds",
    "parameters",
    "file_bytes",
)


def default_config(overrides: str = "") -> QwenVLConfig:
    """The bundled model's sizes (QwenVLConfig's defaults), with `overrides` (JSON, per section) applied:
    '{"decoder": {"hidden_size": 128}}'."""
    merged = QwenVLConfig().to_dict()
    for section, values in (json.loads(overrides) if overrides else {}).items():
        merged.setdefault(section, {}).update(values)
    return QwenVLConfig.from_dict(merged, where="--config")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "weights", "compact-qwenvl"))
    parser.add_argument("--groups", type=int, default=4000, help="training groups (one per step)")
    parser.add_argument("--scenes", type=int, default=3, help="scenes per training group")
    parser.add_argument("--init", default=None, help="go on training the local-dir weights in this folder")
    parser.add_argument(
        "--sides",
        default=f"{SHOT_SIDES[0]},{SHOT_SIDES[1]}",
        help="training images' side range in px (the eval's stays)",
    )
    parser.add_argument("--per-scene", type=int, default=2, help="single-image samples per scene")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the bundled weights: one H100)")
    parser.add_argument("--eval-clean", type=int, default=60, help="held-out clean samples per task")
    parser.add_argument("--eval-defects", type=int, default=20, help="planted defects per (kind, task)")
    parser.add_argument("--config", default="", help="JSON overrides of the model sizes, per section")
    parser.add_argument("--reflag", action="store_true", help="only recompute --out's eval.json flags")
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="only re-run the eval of the weights in --out (keeps the training facts)",
    )
    args = parser.parse_args()
    if args.reflag:
        print(json.dumps(reflag(args.out)["flags"], indent=1))
        return
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.eval_only:
        with open(os.path.join(args.out, "eval.json"), encoding="utf-8") as fh:
            report = {k: v for k, v in json.load(fh).items() if k in TRAINING_FACTS}
    else:
        report = train(
            args.out,
            default_config(args.config),
            args.groups,
            args.steps,
            args.lr,
            args.seed,
            args.per_scene,
            args.device,
            args.scenes,
            args.init,
            tuple(int(v) for v in args.sides.split(",")),
        )
    report["eval_device"] = args.device
    started = time.time()
    report.update(evaluate(args.out, args.seed + 1, args.eval_clean, args.eval_defects, args.device))
    report["eval_seconds"] = round(time.time() - started, 1)
    write_eval_json(os.path.join(args.out, "eval.json"), report)
    print(
        json.dumps({k: v for k, v in report.items() if k not in ("flags_by_threshold", "samples")}, indent=1)
    )


if __name__ == "__main__":
    main()
