"""Held-out evaluation of a trained compact Qwen-VL (train_compact_qwenvl.py writes eval.json with it):
per-task losses, the share of samples whose own image lowers the loss, and how model/loss_flags.py
catches planted defects at its defaults and over a grid of its thresholds. Part of the offline trainer.
"""

from __future__ import annotations

import json
import os
import random

from vlcurate.model import loss_flags
from vlcurate.model.qwenvl_losses import (
    partner_images,
    partner_indices,
    prompt_ids,
    supervised_ids,
)
from vlcurate.model.train_compact_qwenvl_data import (
    DEFECT_TASKS,
    SFT_TASKS,
    STAGE2_TASKS,
    Domain,
    Example,
    make_examples,
    sub_batches,
)

# --- evaluation ------------------------------------------------------------------------------------------

SAMPLE_FIELDS = ("id", "task", "defect", "loss", "swap_loss", "box_loss", "flip_loss")  # eval.json "samples"


def score(model, examples: list[Example], images: dict[str, bytes], partners: dict[str, list[str]]):
    """{id: (loss, swap_loss, box_loss, flip_loss)} through the checker's own code
    (qwenvl_losses.sample_losses): own images, `partners[id]` (None without images), and the box tokens
    with the own images and mirrored ones where the answer holds boxes a mirror moves (else None)."""
    from vlcurate.model import qwenvl_losses

    qwenvl_losses.clear_feature_cache()  # every domain names its images img/000000.jpg, ...
    out = {}
    for part in sub_batches(examples, max_tokens=8000):
        items = tuple(
            qwenvl_losses.LossItem(
                e.id,
                e.task,
                tuple(e.view.input_ids),
                tuple(e.view.labels),
                tuple(e.view.images),
                tuple(partners[e.id]),
                mirror=qwenvl_losses.mirror_moves_boxes(supervised_ids(e.view.labels)),
            )
            for e in part
        )
        for r in qwenvl_losses.sample_losses(model, qwenvl_losses.LossBatch(items), images.__getitem__):
            out[r.id] = (r.loss, r.swap_loss, r.box_loss, r.flip_loss)
    return out


def _flag_rounds(clean: list[dict], defects: list[dict], thresholds: dict, share: float = 0.1):
    """loss_flags on a task's clean rows plus its defects a few at a time (`share` of the clean count per
    round, a realistic defect rate for the robust statistics). Returns (flagged defect ids, mean share
    of clean rows flagged per round)."""
    size = max(1, round(share * len(clean)))
    rounds = [defects[i : i + size] for i in range(0, len(defects), size)] or [[]]
    hit, clean_share = set(), []
    for chunk in rounds:
        flagged = {f.id for f in loss_flags.loss_findings(clean + chunk, **thresholds)}
        hit |= flagged & {r["id"] for r in chunk}
        clean_share.append(len(flagged & {r["id"] for r in clean}) / len(clean))
    return hit, sum(clean_share) / len(clean_share)


def flag_metrics(rows: list[dict], **thresholds: float) -> dict:
    """Recall per defect kind and the share of clean samples flagged, task by task as the checker runs."""
    by_task: dict[str, list[dict]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    hit, clean_flags, n_clean = set(), 0.0, 0
    for task_rows in by_task.values():
        clean = [r for r in task_rows if r["defect"] is None]
        found, share = _flag_rounds(clean, [r for r in task_rows if r["defect"]], thresholds)
        hit |= found
        clean_flags += share * len(clean)
        n_clean += len(clean)
    recall = {}
    for kind in DEFECT_TASKS:
        ids = [r["id"] for r in rows if r["defect"] == kind]
        recall[kind] = round(sum(i in hit for i in ids) / len(ids), 4)
    return {"recall": recall, "clean_flagged": round(clean_flags / n_clean, 4)}


def evaluate(out: str, seed: int, n_clean: int, n_defect: int, device: str = "cpu") -> dict:
    """Held-out metrics of the saved model in `out` (loaded exactly as the checker loads it)."""
    import statistics

    from vlcurate.model.qwenvl_weights import load_model

    model, _ = load_model(f"local-dir:{out}", device=device)
    domain = Domain(f"compact-qwenvl:eval:{seed}")
    examples = make_examples(domain, dict.fromkeys(STAGE2_TASKS + SFT_TASKS, n_clean), tag="clean/")
    for kind, tasks in DEFECT_TASKS.items():
        examples += make_examples(domain, dict.fromkeys(tasks, n_defect), kind, tag=f"{kind}/")
    # Partners as the checker picks them: within a task, in a fixed shuffled order, the next one's images.
    partners, shuffle = {}, random.Random(seed)
    for task in STAGE2_TASKS + SFT_TASKS:
        pool = [e for e in examples if e.task == task]
        shuffle.shuffle(pool)
        found = partner_indices(
            [supervised_ids(e.view.labels) for e in pool],
            [e.view.images for e in pool],
            [prompt_ids(e.view.input_ids, e.view.labels) for e in pool],
        )
        for e, j in zip(pool, found):
            partners[e.id] = list(partner_images(e.view.images, () if j is None else pool[j].view.images))
    scores = score(model, examples, domain.images, partners)
    rows = [
        {
            "id": e.id,
            "task": e.task,
            "defect": e.defect,
            "loss": round(scores[e.id][0], 5),
            "swap_loss": None if scores[e.id][1] is None else round(scores[e.id][1], 5),
            "box_loss": None if scores[e.id][2] is None else round(scores[e.id][2], 5),
            "flip_loss": None if scores[e.id][3] is None else round(scores[e.id][3], 5),
        }
        for e in examples
    ]
    clean = [r for r in rows if r["defect"] is None]
    tasks = {}
    for task in STAGE2_TASKS + SFT_TASKS:
        mine = [r for r in clean if r["task"] == task]
        entry = {"samples": len(mine), "mean_loss": round(statistics.fmean(r["loss"] for r in mine), 4)}
        if mine[0]["swap_loss"] is not None:
            gains = [r["swap_loss"] - r["loss"] for r in mine]
            entry["mean_swap_loss"] = round(statistics.fmean(r["swap_loss"] for r in mine), 4)
            entry["own_image_lowers_loss"] = round(sum(g > 0 for g in gains) / len(gains), 4)
            entry["median_gain"] = round(statistics.median(gains), 4)
        tasks[task] = entry
    gains = sorted(r["swap_loss"] - r["loss"] for r in clean if r["swap_loss"] is not None)
    return {
        "eval_seed": seed,
        "clean_per_task": n_clean,
        "defects_per_task": n_defect,
        "own_image_lowers_loss": round(sum(g > 0 for g in gains) / len(gains), 4),
        "clean_gain_median": round(statistics.median(gains), 4),
        "clean_gain_p01": round(gains[len(gains) // 100], 4),
        "tasks": tasks,
        **flag_report(rows),
        # Every held-out sample, for recomputing the flags with other rules: SAMPLE_FIELDS.
        "samples": [[r[key] for key in SAMPLE_FIELDS] for r in rows],
    }


def flag_report(rows: list[dict]) -> dict:
    """loss_flags at its defaults, and over a grid of its thresholds."""
    defaults = {
        "k": loss_flags.OUTLIER_K,
        "min_excess": loss_flags.MIN_OUTLIER_EXCESS,
        "gain_share": loss_flags.GAIN_SHARE,
        "min_mirror_gain": loss_flags.MIN_MIRROR_GAIN,
    }
    grid = [
        {**defaults, **changed, **flag_metrics(rows, **{**defaults, **changed})}
        for changed in [{"k": k} for k in (2.5, 3.0, 4.0, 5.0)]
        + [{"min_excess": e} for e in (0.0, 0.5, 1.0)]
        + [{"gain_share": g} for g in (0.0, 0.2, 0.3)]
        + [{"min_mirror_gain": m} for m in (0.05, 0.1, 0.2)]
    ]
    return {"flags": {**defaults, **flag_metrics(rows, **defaults)}, "flags_by_threshold": grid}


def reflag(folder: str) -> dict:
    """Recomputes eval.json's flags in `folder` from its stored samples (after changing loss_flags)."""
    path = os.path.join(folder, "eval.json")
    with open(path, encoding="utf-8") as fh:
        report = json.load(fh)
    report.update(flag_report([dict(zip(SAMPLE_FIELDS, row)) for row in report["samples"]]))
    write_eval_json(path, report)
    return report


def write_eval_json(path: str, report: dict) -> None:
    """eval.json, indented, with one line per stored sample."""
    text = json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1)
    if "samples" in report:
        rows = ",\n  ".join(json.dumps(row, ensure_ascii=False) for row in report["samples"])
        text = text[: -len("\n}")] + f',\n "samples": [\n  {rows}\n ]\n}}'
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
