"""`vlcurate format`: stage-1 samples from a clean output and stage-2 samples from task JSONL."""

import json
import os

import pytest

from vlcurate.pipelines.clean import run_clean
from vlcurate.pipelines.format import run_format
from vlcurate.schemas.errors import ConfigError
from vlcurate.tests.pipelines.helpers import kept_rows, output_files, synth_config


def read_jsonl(folder):
    rows = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jsonl"):
            with open(os.path.join(folder, name)) as fh:
                rows += [json.loads(line) for line in fh]
    return rows


@pytest.fixture(scope="module")
def cleaned(synth_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fmt") / "clean")
    run_clean(
        synth_config(synth_dir, "webdataset", out, disable=["clip_score", "clip_filter"]), progress=False
    )
    return out


def test_stage1_makes_one_captioning_sample_per_kept_pair(cleaned, tmp_path):
    out = str(tmp_path / "s1")
    stats = run_format(1, [cleaned], out)
    kept = {r["uid"]: r for r in kept_rows(cleaned)}
    samples = read_jsonl(os.path.join(out, "samples"))
    assert sorted(s["id"] for s in samples) == sorted(kept)
    for sample in samples:
        path = sample["images"][0]
        assert os.path.isfile(os.path.join(out, path)) and len(path.encode()) <= 254
        language = "Chinese" if kept[sample["id"]]["lang"] == "zh" else "English"
        assert sample["prefix"] == f"<img>{path}</img>Generate the caption in {language}:"
        assert sample["target"] == f" {kept[sample['id']]['caption']}<|endoftext|>"
    packs = read_jsonl(os.path.join(out, "packed"))
    assert sum(p["num_samples"] for p in packs) == len(samples) == stats["samples"]
    assert all(p["num_tokens"] <= 2048 for p in packs)
    assert stats["fill_ratio"] >= 0.95
    again = str(tmp_path / "s1-again")
    run_format(1, [cleaned], again, workers=2)
    first, second = output_files(out), output_files(again)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_stage2_formats_each_task_and_rejects_bad_records(tmp_path):
    records = [
        {"task": "captioning", "id": "c", "image": "i/1.jpg", "caption": "A dog."},
        {
            "task": "vqa",
            "id": "v",
            "image": "i/1.jpg",
            "question": "How many dogs?",
            "answers": [{"answer": "2", "confidence": "yes"}, {"answer": "3", "confidence": "maybe"}],
        },
        {
            "task": "referring_grounding",
            "id": "r",
            "image": "i/2.jpg",
            "width": 640,
            "height": 480,
            "phrase": "the red car",
            "boxes": [[64, 48, 320, 240]],
        },
        {
            "task": "referring_grounding",
            "id": "bad",
            "image": "i/2.jpg",
            "width": 640,
            "height": 480,
            "phrase": "nothing",
            "boxes": [[64, 48, 64, 240]],
        },
    ]
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n")
    out = str(tmp_path / "s2")
    stats = run_format(2, [str(data)], out)
    samples = {s["id"]: s for s in read_jsonl(os.path.join(out, "samples"))}
    assert samples["c"]["prefix"] + samples["c"]["target"] == (
        "<img>i/1.jpg</img>Generate the caption in English: A dog.<|endoftext|>"
    )
    assert (
        samples["v"]["prefix"] + samples["v"]["target"]
        == "<img>i/1.jpg</img>How many dogs? Answer: 2<|endoftext|>"
    )
    assert samples["r"]["prefix"] + samples["r"]["target"] == (
        "<img>i/2.jpg</img><ref>the red car</ref><box>(100,100),(500,500)</box><|endoftext|>"
    )
    assert stats["rejected_by_reason"] == {"bad_json": 1, "degenerate_box": 1}
    assert stats["samples_by_task"] == {"captioning": 1, "referring_grounding": 1, "vqa": 1}


def test_stage1_refuses_an_unfinished_clean_output(tmp_path):
    with pytest.raises(ConfigError, match="not a completed vlcurate output"):
        run_format(1, [str(tmp_path)], str(tmp_path / "out"))
