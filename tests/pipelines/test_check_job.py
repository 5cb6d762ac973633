"""`vlcurate check` end to end on SFT and stage-2 outputs that the test builds, then damages: every
planted defect is found with its reason, nothing else is, and the results do not depend on workers."""

from __future__ import annotations

import io
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from vlcurate.cli import main as cli_main
from vlcurate.pipelines.check_job import CheckOptions, run_check
from vlcurate.pipelines.demo import write_demo_stage2_inputs
from vlcurate.pipelines.format import run_format
from vlcurate.pipelines.sft import run_sft
from vlcurate.pipelines.sft_demo import write_demo_sft_inputs
from vlcurate.schemas.sft_config import load_sft_config

pytestmark = pytest.mark.slow
STRUCTURAL = CheckOptions(model=None)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Clean SFT and stage-2 outputs of the demo's synthetic inputs (24 scenes)."""
    root = tmp_path_factory.mktemp("check")
    inputs = str(root / "inputs")
    config = load_sft_config(write_demo_sft_inputs(inputs, seed=3, n=24))
    config.output.dir = str(root / "sft")
    run_sft(config, progress=False)
    run_format(2, [write_demo_stage2_inputs(inputs)], str(root / "stage2"), progress=False)
    return root


def _copy(outputs, name: str, tmp_path) -> str:
    target = str(tmp_path / name)
    shutil.copytree(str(outputs / name), target)
    if name == "stage2":  # its images live beside the inputs: bring them along
        shutil.copytree(str(outputs / "inputs"), str(tmp_path / "inputs"))
        info = _json(os.path.join(target, "info.json"))
        info["image_root"] = str(tmp_path / "inputs")
        with open(os.path.join(target, "info.json"), "w") as fh:
            json.dump(info, fh)
    return target


def _json(path: str):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _findings(check_dir: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in pq.read_table(os.path.join(check_dir, "findings.parquet")).to_pylist():
        found.setdefault(row["id"], set()).add(row["reason"])
    return found


def _sft_samples(directory: str) -> dict[str, list[dict]]:
    info = _json(os.path.join(directory, "info.json"))
    return {s["json"]: _json(os.path.join(directory, s["json"])) for s in info["shards"]}


def _write_sft(directory: str, shards: dict[str, list[dict]]) -> None:
    """Rewrites the shards and their JSONL twins alike (a twin that differs is its own finding)."""
    for name, array in shards.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as fh:
            json.dump(array, fh, ensure_ascii=False)
        with open(os.path.join(directory, name[: -len(".json")] + ".jsonl"), "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in array)


def _images_of(sample: dict) -> list[str]:
    text = "".join(t["value"] for t in sample["conversations"])
    return [part.split("</img>")[0] for part in text.split("<img>")[1:]]


def test_clean_outputs_have_no_structural_findings(outputs, tmp_path):
    for name in ("sft", "stage2"):
        directory = _copy(outputs, name, tmp_path)
        check = run_check(directory, options=STRUCTURAL, quiet=True)
        assert check["structural_findings"] == 0, _findings(os.path.join(directory, "check"))
        assert check["samples"] > 0 and check["passed_structural"]
        assert os.path.exists(os.path.join(directory, "check", "COMPLETED"))


def test_every_planted_sft_defect_is_found_with_its_reason(outputs, tmp_path):
    directory = _copy(outputs, "sft", tmp_path)
    shards = _sft_samples(directory)
    samples = [s for array in shards.values() for s in array]
    with_image = [s for s in samples if len(_images_of(s)) == 1]
    used_by: dict[str, list[str]] = {}
    for s in samples:
        for path in _images_of(s):
            used_by.setdefault(path, []).append(s["id"])
    # Images used by exactly one sample, so each defect has one victim.
    single = [s for s in with_image if len(used_by[_images_of(s)[0]]) == 1]
    garbage, truncated, missing, long_path, too_long, special = single[:6]
    expected: dict[str, set[str]] = {}

    def image_file(sample):
        return os.path.join(directory, _images_of(sample)[0])

    with open(image_file(garbage), "wb") as fh:
        fh.write(os.urandom(3000))
    expected[garbage["id"]] = {"image_undecodable"}
    data = _bytes(image_file(truncated))
    with open(image_file(truncated), "wb") as fh:
        fh.write(data[: len(data) // 2])
    expected[truncated["id"]] = {"image_truncated"}
    os.remove(image_file(missing))
    expected[missing["id"]] = {"image_missing"}
    old = _images_of(long_path)[0]
    long_path["conversations"][0]["value"] = long_path["conversations"][0]["value"].replace(
        old, "images/" + "x" * 289 + ".jpg"
    )
    expected[long_path["id"]] = {"image_path_too_long"}
    too_long["conversations"][-1]["value"] += " and then" * 700
    expected[too_long["id"]] = {"too_long"}
    special["conversations"][-1]["value"] += " <|im_end|> done"
    expected[special["id"]] = {"special_tokens"}
    _write_sft(directory, shards)

    check = run_check(directory, options=STRUCTURAL, quiet=True)
    assert _findings(os.path.join(directory, "check")) == expected
    assert check["structural_findings_by_reason"] == {
        "image_missing": 1,
        "image_path_too_long": 1,
        "image_truncated": 1,
        "image_undecodable": 1,
        "special_tokens": 1,
        "too_long": 1,
    }
    assert check["samples"] == len(samples)


def test_a_pack_whose_ids_disagree_with_its_samples_is_found(outputs, tmp_path):
    directory = _copy(outputs, "stage2", tmp_path)
    path = os.path.join(directory, "packed", "packed-00000.jsonl")
    with open(path, encoding="utf-8") as fh:
        packs = [json.loads(line) for line in fh]
    victim = next(i for i, p in enumerate(packs) if p["images"])
    packs[victim]["input_ids"][300] = 13  # one token of the first sample's text changed
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(p, separators=(",", ":")) + "\n" for p in packs)
    run_check(directory, options=STRUCTURAL, quiet=True)
    assert _findings(os.path.join(directory, "check")) == {
        f"packed/packed-00000.jsonl#{victim}": {"pack_mismatch"}
    }


def test_workers_do_not_change_the_results(outputs, tmp_path):
    directory = _copy(outputs, "sft", tmp_path)
    shards = _sft_samples(directory)
    next(iter(shards.values()))[0]["conversations"][-1]["value"] += " <box>"
    _write_sft(directory, shards)
    one = str(tmp_path / "one")
    two = str(tmp_path / "two")
    run_check(directory, one, STRUCTURAL, workers=1, quiet=True)
    run_check(directory, two, STRUCTURAL, workers=2, quiet=True)
    for name in ("check.json", "findings.parquet", "report.html"):
        assert _bytes(os.path.join(one, name)) == _bytes(os.path.join(two, name))
    table = pq.read_table(io.BytesIO(_bytes(os.path.join(one, "findings.parquet"))))
    assert table.num_rows == 1


def test_strict_exits_1_and_config_errors_exit_2(outputs, tmp_path, capsys):
    directory = _copy(outputs, "sft", tmp_path)
    shards = _sft_samples(directory)
    next(iter(shards.values()))[0]["conversations"][-1]["value"] += " <|endoftext|>"
    _write_sft(directory, shards)
    assert cli_main(["check", "--input", directory, "--model", "none", "--strict"]) == 1
    assert "1 structural findings" in capsys.readouterr().err
    assert cli_main(["check", "--input", str(tmp_path / "nowhere"), "--model", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "COMPLETED" in err[0]
    assert cli_main(["check", "--input", directory, "--model", "local-dir:/no/such/folder"]) == 2
    assert "local-dir" in capsys.readouterr().err
