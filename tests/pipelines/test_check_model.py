"""The model checks of `vlcurate check` with the bundled compact Qwen-VL: defects only a model can see,
planted by the test into a real stage-2 output (an image swapped with another sample's, boxes mirrored,
captions exchanged between images), are flagged far more often than clean samples.

On this output (90 demo scenes, 675 clean samples, 10 planted defects per kind) the shipped weights catch
9 swapped images, 9 mirrored boxes and 10 exchanged captions, the issue's recall bar, but flag 9.3% of
the clean samples, above its 5% (on the model's own held-out eval: 4.6%). The model grounds worse on the
demo's texts and misses some of their VQA answers; docs/check.md says more.
The asserts below guard those measured levels, with a margin, so that worse weights or a broken check
fail."""

from __future__ import annotations

import json
import os
import random
import shutil

import pyarrow.parquet as pq
import pytest

from vlcurate.model.qwen_tokenizer import BOX_PATTERN, get_tokenizer
from vlcurate.model.qwenvl_losses import MIRROR_IOU, box_iou
from vlcurate.pipelines.check_job import CheckOptions, run_check
from vlcurate.pipelines.format import run_format
from vlcurate.synth.sft_inputs import write_demo_sft_inputs
from vlcurate.synth.stage2_inputs import write_demo_stage2_inputs

pytestmark = pytest.mark.slow
PLANTED = 10  # per kind


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    root = tmp_path_factory.mktemp("check-model")
    inputs = str(root / "inputs")
    write_demo_sft_inputs(inputs, seed=11, n=90)
    out = str(root / "stage2")
    run_format(2, [write_demo_stage2_inputs(inputs)], out, progress=False)
    return root


def _recount(row: dict) -> None:
    tok = get_tokenizer()
    row["prefix_tokens"], row["target_tokens"] = tok.count(row["prefix"]), tok.count(row["target"])
    row["num_tokens"] = row["prefix_tokens"] + row["target_tokens"]


def _plant(directory: str) -> dict[str, str]:
    """Damages samples in place (keeping them structurally valid) and returns id -> defect kind."""
    info_path = os.path.join(directory, "info.json")
    with open(info_path, encoding="utf-8") as fh:
        info = json.load(fh)
    info["files"]["packed"] = []  # packs would (rightly) disagree with the damaged samples
    with open(info_path, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    (path,) = [os.path.join(directory, f) for f in info["files"]["samples"]]
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    rng = random.Random(5)
    planted: dict[str, str] = {}
    images = sorted({r["images"][0] for r in rows if r["images"]})

    by_task = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    for row in rng.sample([r for r in by_task["captioning"] + by_task["vqa"]], PLANTED):
        other = rng.choice([p for p in images if p != row["images"][0]])
        row["prefix"] = row["prefix"].replace(row["images"][0], other)
        row["images"] = [other]
        planted[row["id"]] = "swapped_image"
    mirrored = 0
    for row in rng.sample(by_task["referring_grounding"], len(by_task["referring_grounding"])):
        boxes = [tuple(map(int, m)) for m in BOX_PATTERN.findall(row["target"])]
        flipped = [(999 - x2, y1, 999 - x1, y2) for x1, y1, x2, y2 in boxes]
        if (
            mirrored == PLANTED
            or row["id"] in planted
            or any(box_iou(a, b) >= MIRROR_IOU for a, b in zip(boxes, flipped))
        ):
            continue
        row["target"] = BOX_PATTERN.sub(
            lambda m: f"<box>({999 - int(m[3])},{m[2]}),({999 - int(m[1])},{m[4]})</box>",
            row["target"],
        )
        planted[row["id"]] = "mirrored_boxes"
        mirrored += 1
    captions = [r for r in by_task["captioning"] if r["id"] not in planted]
    pairs = rng.sample(captions, PLANTED)
    for a, b in zip(pairs[::2], pairs[1::2]):
        a["target"], b["target"] = b["target"], a["target"]
        planted[a["id"]] = planted[b["id"]] = "exchanged_caption"
    for row in rows:
        _recount(row)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
    return planted


def test_model_checks_flag_planted_mismatches_and_few_clean_samples(stage2, tmp_path):
    directory = str(tmp_path / "stage2")
    shutil.copytree(str(stage2 / "stage2"), directory)
    planted = _plant(directory)
    assert sorted(set(planted.values())) == ["exchanged_caption", "mirrored_boxes", "swapped_image"]
    check = run_check(directory, options=CheckOptions(), quiet=True)
    assert check["structural_findings"] == 0
    flagged = {
        row["id"]
        for row in pq.read_table(os.path.join(directory, "check", "findings.parquet")).to_pylist()
        if row["check"] == "model"
    }
    recall = {
        kind: sum(i in flagged for i, k in planted.items() if k == kind) / list(planted.values()).count(kind)
        for kind in sorted(set(planted.values()))
    }
    scored = sum(t["model"]["scored"] for t in check["tasks"].values() if t["model"])
    clean = scored - len(planted)
    false_flags = len(flagged - set(planted)) / clean
    assert scored == check["samples"] and clean > 600
    caught = sum(i in flagged for i in planted) / len(planted)
    assert min(recall.values()) >= 0.7, recall
    assert false_flags <= 0.15 and caught >= 5 * false_flags, (caught, false_flags, recall)


def test_model_results_do_not_depend_on_workers(stage2, tmp_path):
    directory = str(stage2 / "stage2")
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    run_check(directory, one, CheckOptions(sample=60), workers=1, quiet=True)
    run_check(directory, two, CheckOptions(sample=60), workers=2, quiet=True)
    for name in ("check.json", "findings.parquet", "report.html"):
        with open(os.path.join(one, name), "rb") as a, open(os.path.join(two, name), "rb") as b:
            assert a.read() == b.read(), name
    with open(os.path.join(one, "check.json"), encoding="utf-8") as fh:
        check = json.load(fh)
    assert sum(t["model"]["scored"] for t in check["tasks"].values() if t["model"]) == 60
