"""Every output of `vlcurate demo` loads, unmodified, with the libraries users load it with: webdataset's
own reader and HF datasets' webdataset, parquet and json builders (offline, cache in a tmp folder).

Every file loads as written. (Before the scores struct and the one image extension per output, HF
datasets refused the Parquet files, which held an Arrow map, and the tars, whose samples mixed jpg, png
and webp members.) One limit of HF datasets' webdataset builder, not ours: it infers the `.json` member's
fields from the first 5 samples of the first tar and silently drops keys that only later samples have
(a passthrough field of some inputs only, `image_reencode_error`); the Parquet twins' `meta` keeps them.
"""

from __future__ import annotations

import collections
import fnmatch
import glob
import json
import os
import tarfile

import datasets
import pytest
import webdataset
from PIL import ImageOps

from vlcurate.pipelines.demo import run_demo
from vlcurate.tests.pipelines.helpers import run, synth_config

pytestmark = pytest.mark.slow  # the demo runs every pipeline (~15 s)

# Every file a demo stage writes, by the builder that loads it; anything else must be in NOT_DATA, so
# a new kind of output fails test_every_output_is_loaded_here until a test loads it.
LOADERS = {
    "clean/shards/*.tar": "webdataset",
    "clean/shards/*.parquet": "parquet",
    "clean/rejects/*.parquet": "parquet",
    "stage[12]/samples/*.parquet": "parquet",
    "stage[12]/samples/*.jsonl": "json",
    "stage[12]/packed/*.jsonl": "json",
    "stage[12]/rejects/*.jsonl": "json",
    "sft/shards/*.json": "json",
    "sft/shards/*.jsonl": "json",
    "sft/rejects/*.jsonl": "json",
    "*/check/findings.parquet": "parquet",
}
NOT_DATA = ("*/info.json", "*/stats.json", "*/check/check.json", "*/report.html", "*/COMPLETED", "*/images/*")
STAGES = ("clean", "sft", "stage1", "stage2")
SCORE_NAMES = [  # the demo's steps, in chain order (filters/chain.py score_names)
    "n_disallowed",
    "n_emoji",
    "n_chars",
    "n_words",
    "n_cjk",
    "chinese",
    "lang_prob",
    "pixels",
    "min_side",
    "aspect_ratio",
    "clip",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("demo"))
    run_demo(out)
    return out


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    """load(builder, files) -> the HF dataset of those files (train split)."""
    cache = str(tmp_path_factory.mktemp("hf-datasets-cache"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_DATASETS_CACHE", cache)
        env.setenv("HF_HUB_OFFLINE", "1")

        def load(builder: str, files: list[str]) -> datasets.Dataset:
            assert files, f"no files for {builder}"
            return datasets.load_dataset(builder, data_files=sorted(files), split="train", cache_dir=cache)

        yield load


def _files(demo: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(demo, pattern)))


def _json(demo: str, stage: str, name: str) -> dict:
    with open(os.path.join(demo, stage, name), encoding="utf-8") as fh:
        return json.load(fh)


def _input_captions(demo: str) -> dict[str, str]:
    """{key: caption} of the demo's input tars, read with webdataset."""
    tars = _files(demo, "synth/wds/*.tar")
    return {s["__key__"]: s["txt"] for s in webdataset.WebDataset(tars, shardshuffle=False).decode()}


def _ground_truth(demo: str) -> dict[str, dict]:
    with open(os.path.join(demo, "synth", "ground_truth.jsonl"), encoding="utf-8") as fh:
        return {g["key"]: g for g in map(json.loads, fh)}


def test_every_output_is_loaded_here(demo):
    unloaded = []
    for stage in STAGES:
        for root, _, names in os.walk(os.path.join(demo, stage)):
            for name in names:
                rel = os.path.relpath(os.path.join(root, name), demo)
                patterns = (*LOADERS, *NOT_DATA)
                if not any(fnmatch.fnmatch(rel, p) for p in patterns):
                    unloaded.append(rel)
    assert unloaded == []


def test_check_findings_load_with_hf_datasets(demo, load):
    files = _files(demo, "*/check/findings.parquet")
    assert len(files) == len(STAGES)
    expected = 0
    for stage in STAGES:
        check = _json(demo, stage, "check/check.json")
        expected += check["structural_findings"] + check["model_findings"]
    ds = load("parquet", files)
    assert ds.column_names == ["id", "task", "check", "reason", "loss", "swap_loss", "detail"]
    assert len(ds) == expected > 0  # the bundled model flags some demo samples
    assert set(ds["check"]) <= {"structural", "model"}


def test_kept_tars_load_with_webdatasets_reader(demo):
    kept = _json(demo, "clean", "info.json")["counts"]["kept"]
    captions, truth = _input_captions(demo), _ground_truth(demo)
    samples = list(
        webdataset.WebDataset(_files(demo, "clean/shards/*.tar"), shardshuffle=False).decode("pil")
    )
    assert len(samples) == kept > 0
    formats = collections.Counter()
    for s in samples:
        assert {k for k in s if not k.startswith("__")} == {"jpg", "txt", "json"}
        meta, image = s["json"], s["jpg"]
        assert meta["key"] == s["__key__"] and meta["caption"] == s["txt"]
        key = meta["uid"].split("/", 1)[1]
        # webdataset does not apply EXIF orientation; the recorded size is after it.
        assert (
            ImageOps.exif_transpose(image).size
            == (meta["width"], meta["height"])
            == (
                truth[key]["width"],
                truth[key]["height"],
            )
        )
        assert meta["image_format"] == "JPEG"  # the member is .jpg (above); PIL's decode says RGB only
        assert meta["original_image_format"] == truth[key]["image_format"]
        if meta["original_image_format"] != "JPEG":  # re-encoded upright: no orientation left
            assert image.size == (meta["width"], meta["height"])
        if truth[key]["defect"] in ("none", "chinese"):  # nothing to clean: the input's caption
            assert s["txt"] == captions[key]
        formats[meta["original_image_format"]] += 1
    assert set(formats) == {"JPEG", "PNG", "WEBP"}  # the demo keeps every input format


def test_kept_tars_load_with_hf_datasets(demo, load):
    kept = _json(demo, "clean", "info.json")["counts"]["kept"]
    ds = load("webdataset", _files(demo, "clean/shards/*.tar"))
    assert len(ds) == kept
    assert isinstance(ds.features["jpg"], datasets.Image)
    assert set(ds.features["json"]["scores"]) == set(SCORE_NAMES)
    for row in ds:
        meta = row["json"]
        assert row["txt"] == meta["caption"]
        assert row["jpg"].size == (meta["width"], meta["height"])  # HF datasets applies EXIF orientation
    raw = ds.cast_column("jpg", datasets.Image(decode=False))["jpg"]
    assert all(image["bytes"][:3] == b"\xff\xd8\xff" and image["path"].endswith(".jpg") for image in raw)


def test_kept_parquet_twins_load_with_hf_datasets(demo, load):
    kept = _json(demo, "clean", "info.json")["counts"]["kept"]
    ds = load("parquet", _files(demo, "clean/shards/*.parquet"))
    assert len(ds) == kept
    assert list(ds.features["scores"]) == SCORE_NAMES
    by_key = {
        s["__key__"]: s for s in webdataset.WebDataset(_files(demo, "clean/shards/*.tar"), shardshuffle=False)
    }
    for row in ds:
        member = json.loads(by_key[row["key"]]["json"])
        assert (row["uid"], row["caption"], row["width"], row["height"]) == (
            member["uid"],
            member["caption"],
            member["width"],
            member["height"],
        )
        assert row["scores"] == {name: member["scores"].get(name) for name in SCORE_NAMES}
        assert row["scores"]["clip"] >= 0.4  # the demo's threshold
        assert row["image_format"] == "JPEG"


def test_rejects_load_with_hf_datasets_and_point_at_their_images(demo, load):
    stats = _json(demo, "clean", "stats.json")
    ds = load("parquet", _files(demo, "clean/rejects/*.parquet"))  # rejects and duplicates together
    assert len(ds) == stats["totals"]["rejected"] > 0
    assert collections.Counter(ds["reason"]) == stats["sources"]["synth"]["rejected_by_reason"]
    assert list(ds.features["scores"]) == SCORE_NAMES
    members = {}  # member name -> its tar, in the demo's input
    for tar in _files(demo, "synth/wds/*.tar"):
        with tarfile.open(tar) as fh:
            members.update((name, tar) for name in fh.getnames())
    truth = _ground_truth(demo)
    for row in ds:
        key = row["uid"].split("/", 1)[1]
        if row["reason"] == "image_missing":  # the input has no image for it
            assert row["image_ref"] is None
            continue
        tar, _, member = row["image_ref"].partition("#")
        assert members[member] == tar and member.split(".")[0] == key
        if row["reason"] == "too_small":  # decided on its own score; CLIP never saw it
            assert row["scores"]["min_side"] == min(truth[key]["width"], truth[key]["height"]) < 200
            assert row["scores"]["clip"] is None


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_stage_samples_and_packs_load_with_hf_datasets(demo, load, stage):
    counts = _json(demo, stage, "info.json")["counts"]
    from_parquet = load("parquet", _files(demo, f"{stage}/samples/*.parquet"))
    from_jsonl = load("json", _files(demo, f"{stage}/samples/*.jsonl"))
    assert len(from_parquet) == len(from_jsonl) == counts["samples"] > 0
    assert sorted(from_parquet["id"]) == sorted(from_jsonl["id"])
    first = from_parquet[0]
    twin = from_jsonl[from_jsonl["id"].index(first["id"])]
    assert (twin["prefix"], twin["target"], twin["images"]) == (
        first["prefix"],
        first["target"],
        first["images"],
    )
    assert first["target"].endswith("<|endoftext|>")
    packs = load("json", _files(demo, f"{stage}/packed/*.jsonl"))
    assert len(packs) == counts["packs"] and sum(packs["num_samples"]) == counts["samples"]
    if stage == "stage1":  # its images come from the kept shards: one format, all there
        images = {path for paths in from_parquet["images"] for path in paths}
        assert {os.path.splitext(p)[1] for p in images} == {".jpg"}
        assert all(os.path.exists(os.path.join(demo, stage, p)) for p in images)
        assert len(from_parquet) == _json(demo, "clean", "info.json")["counts"]["kept"]
    rejects = _files(demo, f"{stage}/rejects/*.jsonl")
    assert (len(load("json", rejects)) if rejects else 0) == counts["rejected"]


def test_sft_arrays_and_jsonl_twins_load_with_hf_datasets(demo, load):
    info = _json(demo, "sft", "info.json")
    arrays = load("json", _files(demo, "sft/shards/*.json"))
    lines = load("json", _files(demo, "sft/shards/*.jsonl"))
    assert len(arrays) == len(lines) == info["counts"]["samples_written"] > 0
    assert [s["samples"] for s in info["shards"]] == [
        len(load("json", [os.path.join(demo, "sft", s["json"])])) for s in info["shards"]
    ]
    assert sorted(arrays["id"]) == sorted(lines["id"])
    for conversation in arrays["conversations"]:
        assert conversation[0]["from"] == "user" and conversation[-1]["from"] == "assistant"
    rejects = _files(demo, "sft/rejects/*.jsonl")
    assert (len(load("json", rejects)) if rejects else 0) == info["counts"]["samples_rejected"] + info[
        "counts"
    ]["records_rejected"]


def test_a_clean_output_of_several_shards_loads_as_one_dataset(synth_dir, tmp_path, load):
    # One schema for every shard (the run's score names) and one image extension: whole folders load.
    config = synth_config(synth_dir, "webdataset", str(tmp_path / "out"))  # CLIP on: every score name
    config.output.pairs_per_shard = 60
    out, stats = config.output.dir, run(config)
    kept = stats["totals"]["kept"]
    tars = _files(out, "shards/*.tar")
    assert len(tars) >= 3
    twins = load("parquet", _files(out, "shards/*.parquet"))
    assert len(twins) == len(load("webdataset", tars)) == kept
    assert list(twins.features["scores"]) == SCORE_NAMES


def test_keep_stores_the_inputs_images_as_they_are(synth_dir, tmp_path, load):
    out = str(tmp_path / "keep")
    config = synth_config(synth_dir, "webdataset", out, disable=["clip_score", "clip_filter"])
    config.output.image_format = "keep"
    stats = run(config)
    inputs = {}
    for tar in sorted(glob.glob(os.path.join(str(synth_dir), "wds", "*.tar"))):
        with tarfile.open(tar) as fh:
            for member in fh.getmembers():
                inputs[member.name] = fh.extractfile(member).read()
    exts = collections.Counter()
    for sample in webdataset.WebDataset(_files(out, "shards/*.tar"), shardshuffle=False):
        meta = json.loads(sample["json"])
        (ext,) = {k for k in sample if not k.startswith("__")} - {"txt", "json"}
        key = meta["uid"].split("/", 1)[1]
        assert sample[ext] == inputs[f"{key}.{ext}"]  # byte for byte
        assert meta["image_format"] == meta["original_image_format"]
        exts[ext] += 1
    assert set(exts) == {"jpg", "png", "webp"} and sum(exts.values()) == stats["totals"]["kept"]
    # The Parquet twins still load; HF datasets' webdataset builder refuses such mixed tars by design.
    assert len(load("parquet", _files(out, "shards/*.parquet"))) == stats["totals"]["kept"]
