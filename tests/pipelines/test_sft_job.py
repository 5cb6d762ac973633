"""`vlcurate sft` end to end on demo inputs, a small cleaned-pairs directory and planted bad records."""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from vlcurate.cli import sft as sft_command
from vlcurate.formatters.sft_strategies import text_cutoff
from vlcurate.formatters.sft_validate import ANNOUNCEMENT
from vlcurate.model import scenes
from vlcurate.model.scenes import Scene, Shape, render
from vlcurate.pipelines.check_job import CheckOptions, run_check
from vlcurate.pipelines.output import COMPLETED
from vlcurate.pipelines.sft import run_sft
from vlcurate.pipelines.write import write_kept_shard
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair
from vlcurate.schemas.sft_config import load_sft_config, sft_config_from_dict
from vlcurate.synth.scene_tasks import shape_boxes
from vlcurate.synth.sft_inputs import write_demo_sft_inputs
from vlcurate.tests.pipelines.helpers import tree_files

MAX_LEN = 1024
PLANTED = "extra_grounding/planted"


def _jpeg(color: tuple[int, int, int], size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _jsonl(path, rows) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")


def _clean_output(directory: str) -> None:
    """A finished `clean` output made by clean's own shard writer: 3 good pairs and one bad image."""
    pairs = [
        Pair(uid=f"web/{i:03d}", source="web", caption=caption, image=image, image_format="JPEG", lang=lang)
        for i, (caption, lang, image) in enumerate(
            [
                ("A red square on a white wall.", "en", _jpeg((200, 30, 30))),
                ("白色背景上的蓝色圆形。", "zh", _jpeg((30, 30, 200))),
                ("A green field under a grey sky.", "en", _jpeg((30, 160, 30))),
                ("A broken file.", "en", b"not an image at all"),
            ]
        )
    ]
    write_kept_shard(directory, 0, 1, 1000, pairs, [])
    open(os.path.join(directory, COMPLETED), "w").close()


def _extra_inputs(folder: str) -> None:
    os.makedirs(os.path.join(folder, "img"), exist_ok=True)
    for name, color in (("long", (10, 10, 10)), ("planted", (250, 250, 0)), ("size", (0, 250, 250))):
        with open(os.path.join(folder, "img", f"{name}.jpg"), "wb") as fh:
            fh.write(_jpeg(color))
    long_qas = [
        {"question": f"Question number {i} about the dark picture?", "answer": f"Answer {i}. " * 12}
        for i in range(40)
    ]
    _jsonl(
        os.path.join(folder, "vqa.jsonl"),
        [
            {"id": "long", "image": "img/long.jpg", "qas": long_qas},
            # U+2028 is legal inside JSON strings: a reader splitting lines on it would break the record.
            {
                "id": "sep",
                "image": "img/long.jpg",
                "qas": [{"question": "Two lines?", "answer": "one\u2028two"}],
            },
            {"id": "no-file", "image": "img/absent.jpg", "qas": [{"question": "Q?", "answer": "A."}]},
            {"id": "no-qas", "image": "img/long.jpg"},
            "{not json",
            "",
        ],
    )
    _jsonl(
        os.path.join(folder, "grounding.jsonl"),
        [
            # Valid on its own, but names a picture the sample does not have: refused by validation.
            {
                "id": "planted",
                "image": "img/planted.jpg",
                "width": 64,
                "height": 48,
                "phrases": [{"phrase": "the dog of Picture 7", "boxes": [[0, 0, 10, 10]]}],
            },
            {
                "id": "size",
                "image": "img/size.jpg",
                "width": 640,
                "height": 480,
                "phrases": [{"phrase": "it", "boxes": [[0, 0, 10, 10]]}],
            },
        ],
    )


def _config_dict(root: str, out: str, workers: int = 1) -> dict:
    return {
        "inputs": [
            {"name": "cleaned", "kind": "pairs", "paths": ["clean"]},
            {"name": "shapes_captions", "kind": "captions", "paths": ["demo/captions.jsonl"]},
            {"name": "shapes_vqa", "kind": "vqa", "paths": ["demo/vqa.jsonl"]},
            {"name": "shapes_grounding", "kind": "grounding", "paths": ["demo/grounding.jsonl"]},
            {"name": "shapes_chat", "kind": "text", "paths": ["demo/text.jsonl"]},
            {"name": "extra_vqa", "kind": "vqa", "paths": ["extra/vqa.jsonl"]},
            {"name": "extra_grounding", "kind": "grounding", "paths": ["extra/grounding.jsonl"]},
        ],
        "output": {"dir": out, "samples_per_shard": 12},
        "seed": 11,
        "model_max_length": MAX_LEN,
        "multi_image": {"share": 0.4, "min_images": 2, "max_images": 3},
        "text_share": 0.05,
        "workers": workers,
    }


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sft"))
    write_demo_sft_inputs(os.path.join(root, "demo"), seed=3, n=15)
    _clean_output(os.path.join(root, "clean"))
    _extra_inputs(os.path.join(root, "extra"))
    config = sft_config_from_dict(_config_dict(root, "out"), base=root)
    stats = run_sft(config)
    return {"root": root, "out": config.output.dir, "stats": stats, "config": config}


def _samples(out: str) -> list[dict]:
    samples = []
    for path in sorted(glob.glob(os.path.join(out, "shards", "*.json"))):
        with open(path, encoding="utf-8") as fh:
            samples += json.load(fh)
    return samples


def _rejects(out: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "rejects", "*.jsonl"))):
        with open(path, encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh]
    return rows


def test_every_shard_loads_with_json_load_and_passes_validation(job):
    out = job["out"]
    shards = sorted(glob.glob(os.path.join(out, "shards", "sft-*.json")))
    assert len(shards) >= 3 and os.path.basename(shards[0]) == "sft-00000.json"
    for path in shards:
        with open(path, encoding="utf-8") as fh:
            array = json.load(fh)
        assert isinstance(array, list) and array
        assert all(set(s) == {"id", "conversations"} for s in array)
        with open(path + "l", encoding="utf-8") as fh:
            assert [json.loads(line) for line in fh] == array
    check = run_check(out, os.path.join(job["root"], "check"), CheckOptions(model=None), quiet=True)
    assert check["structural_findings"] == 0
    assert check["samples"] == job["stats"]["totals"]["samples_written"] == len(_samples(out))
    with open(os.path.join(out, "info.json")) as fh:
        info = json.load(fh)
    assert info["image_root"] == "." and info["model_max_length"] == MAX_LEN
    assert os.path.exists(os.path.join(out, COMPLETED))


def test_planted_bad_records_and_the_invalid_sample_are_rejected_never_written(job):
    rejects = {row["id"]: row["reason"] for row in _rejects(job["out"])}
    assert rejects[PLANTED] == "invalid_picture_ref_unknown"
    assert rejects["extra_vqa/no-file"] == "image_missing"
    assert rejects["extra_vqa/no-qas"] == "missing_field"
    assert rejects["extra_vqa/vqa-000000004"] == "bad_json"
    assert rejects["extra_grounding/size"] == "image_size_mismatch"
    assert rejects["cleaned/web/003"] == "image_undecodable"
    ids = {s["id"] for s in _samples(job["out"])}
    assert PLANTED not in ids and not any(i.startswith(PLANTED) for i in ids)
    planted_image = _jpeg((250, 250, 0))
    assert planted_image not in tree_files(os.path.join(job["out"], "images")).values()


def test_a_line_separator_inside_a_record_survives(job):
    answers = [t["value"] for s in _samples(job["out"]) for t in s["conversations"][1::2]]
    assert answers.count("one\u2028two") == 1  # alone or in a multi-image dialogue


def test_text_share_cutoff():
    ranks = [(i / 10, f"t{i}") for i in range(10)]
    assert text_cutoff(90, ranks, 0.1) == (0.9, "t9")  # 10 texts of 100 dialogues
    assert text_cutoff(45, ranks, 0.1) == (0.4, "t4")  # 5 of 50
    assert text_cutoff(5, ranks, 0.1) is None  # fewer than one text's worth
    assert text_cutoff(0, ranks, 0.1) == (0.9, "t9")  # a text-only run keeps every text
    assert text_cutoff(90, ranks, 0.0) is None and text_cutoff(90, [], 0.5) is None


def test_every_record_is_accounted_for(job):
    totals = job["stats"]["totals"]
    lines = 0
    for path in glob.glob(os.path.join(job["root"], "*", "*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            lines += sum(1 for line in fh if line.strip())
    assert totals["records_read"] == lines + 4  # + the cleaned pairs
    assert (
        totals["records_read"]
        == totals["records_rejected"] + totals["records_unused"] + totals["records_in_dialogues"]
    )
    assert len(_rejects(job["out"])) == totals["records_rejected"] + totals["samples_rejected"]
    stats = job["stats"]
    assert sum(stats["samples_by_kind"].values()) == totals["samples_written"]
    assert sum(stats["histograms"]["token_length"]["counts"]) == totals["samples_written"]
    assert (
        sum(stats["images_per_sample"].values())
        == sum(stats["turns_per_sample"].values())
        == totals["samples_written"]
    )
    assert 0 < stats["tokens"]["supervised_share"] < 1
    assert stats["rejects_by_reason"]["invalid_picture_ref_unknown"] == 1


def test_over_long_dialogue_is_split_into_valid_numbered_parts(job):
    parts = sorted(
        (s for s in _samples(job["out"]) if s["id"].startswith("extra_vqa/long#part")),
        key=lambda s: int(s["id"].split("part")[1]),
    )
    assert len(parts) >= 3 and job["stats"]["split"]["dialogues"] >= 1
    answers = [t["value"] for s in parts for t in s["conversations"][1::2]]
    assert answers == [(f"Answer {i}. " * 12).strip() for i in range(40)]  # all there, in order
    for s in parts:
        assert (
            ANNOUNCEMENT.match(s["conversations"][0]["value"]).group(1) == "1"
        )  # the image opens every part


def test_multi_image_dialogues_and_text_share(job):
    samples = _samples(job["out"])
    multi = [s for s in samples if s["id"].startswith("multi/")]
    assert multi
    for s in multi:
        numbers = [int(m.group(1)) for t in s["conversations"] for m in ANNOUNCEMENT.finditer(t["value"])]
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 2
    dialogues = job["stats"]["dialogues_by_kind"]
    image_dialogues = sum(n for kind, n in dialogues.items() if kind != "text")
    with open(os.path.join(job["root"], "demo", "text.jsonl")) as fh:
        available = sum(1 for _ in fh)
    expected = min(available, math.floor(0.05 / 0.95 * image_dialogues))
    assert dialogues["text"] == expected > 0
    assert job["stats"]["unused"]["text_over_share"] == available - expected > 0


def test_images_are_copied_with_short_paths_only_when_used(job):
    out = job["out"]
    named = {
        m.group(2)
        for s in _samples(out)
        for t in s["conversations"]
        for m in ANNOUNCEMENT.finditer(t["value"])
    }
    on_disk = {os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "images", "*", "*"))}
    assert named == on_disk
    assert all(len(p.encode()) <= 40 for p in named)


def test_same_input_and_seed_give_byte_identical_output_with_two_workers(job):
    out2 = os.path.join(job["root"], "out2")
    config_path = os.path.join(job["root"], "sft.yaml")
    with open(config_path, "w") as fh:
        json.dump(_config_dict(job["root"], "out2"), fh)  # JSON is YAML
    parser = argparse.ArgumentParser()
    sft_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sft", "--config", config_path, "--workers", "2", "--check"])
    assert sft_command.run(args) == 0
    first, second = tree_files(job["out"]), tree_files(out2)
    check = {name: second.pop(name) for name in list(second) if name.startswith("check/")}
    assert json.loads(check["check/check.json"])["structural_findings"] == 0
    assert sorted(first) == sorted(second)
    info = [json.loads(files.pop("info.json")) for files in (first, second)]
    for i in info:
        del i["config"]["output"]["dir"], i["config"]["workers"]
        del i["run"], i["git_commit"]  # when each run happened, and the checkout's state then
    assert info[0] == info[1]
    assert first == second


def test_refuses_a_completed_output_and_an_unfinished_clean_run(job, tmp_path):
    with pytest.raises(ConfigError, match="already holds a completed run"):
        run_sft(job["config"])
    unfinished = tmp_path / "clean"
    unfinished.mkdir()
    data = {
        "inputs": [{"name": "c", "kind": "pairs", "paths": [str(unfinished)]}],
        "output": {"dir": str(tmp_path / "o")},
    }
    with pytest.raises(ConfigError, match="no COMPLETED marker"):
        run_sft(sft_config_from_dict(data))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "inputs: [{name: a, kind: vqa, paths: [x]}]\nmulti_imag: {}\n",
            r"unknown key 'multi_imag'.*Did you mean 'multi_image'",
        ),
        ("inputs: [{name: a, kind: pictures, paths: [x]}]\n", r"unknown input kind 'pictures'"),
        (
            "inputs: [{name: a, kind: text, paths: [x]}]\ntext_share: 1\n",
            r"text_share must be a number in \[0, 1\)",
        ),
        ("inputs: [{name: a, kind: text, paths: [x]}]\nmulti_image: {min_images: 1}\n", r"2 <= min_images"),
        (
            "inputs: [{name: a, kind: text, paths: [x]}]\nmodel_max_length: 100\n",
            r"model_max_length must be >= 300",
        ),
        ("inputs: []\n", r"no inputs"),
        (
            "inputs: [{name: a, kind: vqa, paths: [x]}]\nmulti_image: {max_images: 8}\n",
            r"max_images must be <= 7",
        ),
    ],
)
def test_config_is_strict(tmp_path, text, expected):
    path = tmp_path / "sft.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_sft_config(str(path))


def test_demo_boxes_match_the_rendered_pixels():
    """Every shape kind at several sizes: the box hugs the pixels of the shape's fill and outline."""
    checked = 0
    for i, kind in enumerate(scenes.KINDS * 3):
        color, background = ("red", "beige") if i % 2 else ("blue", "pink")
        width, height = 220 + 37 * i % 300, 200 + 53 * i % 280
        scene = Scene((Shape(kind, color, scenes.POSITIONS[i % 5]),), background, None)
        pixels = np.asarray(render(scene, width, height)).astype(int)
        ink = [scenes.COLORS[color], scenes._darker(scenes.COLORS[color])]
        ys, xs = np.nonzero(np.any([np.all(pixels == c, axis=-1) for c in ink], axis=0))
        drawn = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        [box] = shape_boxes(scene, width, height)
        assert max(abs(a - b) for a, b in zip(drawn, box)) <= 1.5, (kind, drawn, box)
        checked += 1
    assert checked == 18
