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
from vlcurate.pipelines.format import run_format
from vlcurate.pipelines.sft import run_sft
from vlcurate.schemas.sft_config import load_sft_config
from vlcurate.synth.sft_inputs import write_demo_sft_inputs
from vlcurate.synth.stage2_inputs import write_demo_stage2_inputs

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
    used_by: dict[str, list[str]] = {}
    for s in samples:
        for path in _images_of(s):
            used_by.setdefault(path, []).append(s["id"])
    garbage, truncated, missing = sorted(used_by)[:3]  # every sample that shows one of these is hit
    expected: dict[str, set[str]] = {}
    with open(os.path.join(directory, garbage), "wb") as fh:
        fh.write(os.urandom(3000))
    data = _bytes(os.path.join(directory, truncated))
    with open(os.path.join(directory, truncated), "wb") as fh:
        fh.write(data[: len(data) // 2])
    os.remove(os.path.join(directory, missing))
    for path, reason in (
        (garbage, "image_undecodable"),
        (truncated, "image_truncated"),
        (missing, "image_missing"),
    ):
        for sample_id in used_by[path]:
            expected.setdefault(sample_id, set()).add(reason)
    spared = [s for s in samples if s["id"] not in expected]
    long_path = next(s for s in spared if len(_images_of(s)) == 1)
    old = _images_of(long_path)[0]
    long_path["conversations"][0]["value"] = long_path["conversations"][0]["value"].replace(
        old, "images/" + "x" * 289 + ".jpg"
    )
    expected[long_path["id"]] = {"image_path_too_long"}
    too_long, special = [s for s in spared if s is not long_path][:2]
    too_long["conversations"][-1]["value"] += " and then" * 1200
    expected[too_long["id"]] = {"too_long"}
    special["conversations"][-1]["value"] += " <|im_end|> done"
    expected[special["id"]] = {"special_tokens"}
    _write_sft(directory, shards)

    check = run_check(directory, options=STRUCTURAL, quiet=True)
    assert _findings(os.path.join(directory, "check")) == expected
    by_reason = {}
    for reasons in expected.values():
        for reason in reasons:
            by_reason[reason] = by_reason.get(reason, 0) + 1
    assert check["structural_findings_by_reason"] == dict(sorted(by_reason.items()))
    assert set(by_reason) == {
        "image_missing",
        "image_path_too_long",
        "image_truncated",
        "image_undecodable",
        "special_tokens",
        "too_long",
    }
    assert check["samples"] == len(samples)


def test_a_pack_whose_ids_disagree_with_its_samples_is_found(outputs, tmp_path):
    directory = _copy(outputs, "stage2", tmp_path)
    path = os.path.join(directory, "packed", "packed-00000.jsonl")
    with open(path, encoding="utf-8") as fh:
        packs = [json.loads(line) for line in fh]
    victim = next(i for i, p in enumerate(packs) if p["images"])
    target = packs[victim]["boundaries"][0][1]  # the first sample's first target token
    packs[victim]["input_ids"][target] = 13 if packs[victim]["input_ids"][target] != 13 else 14
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
