"""`vlcurate demo`: its summary against the planted ground truth, and every output's info.json."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re

import pytest

from vlcurate.model.clip_models import WEIGHTS_DIR
from vlcurate.pipelines.demo import run_demo

N = 200
# Checked by hand against synth/ground_truth.jsonl for n=200, seed 0: 90 planted defects (8 or 6 of each
# rejecting kind, synth.defect_counts) and 110 pairs to keep (none 64, chinese 24, exif_rotated 6, html 8,
# irregular_pattern 8). Each of the 6 planted near duplicates (keys 11, 105, 120, 132, 167, 196: four
# cropped, two re-encoded) is rejected as near_duplicate, naming the original ground truth names. The
# bundled CLIP lets 1 of the 8 mismatched captions (key 26) through: that is the planted defect missed,
# and the pair kept beyond the 110.
EXPECTED = {
    "read": 200,
    "kept": 111,
    "rejected": 89,
    "rejected_by_reason": {
        "aspect_ratio": 8,
        "disallowed_script": 8,
        "emoji": 8,
        "too_short": 8,
        "too_small": 8,
        "clip_low_score": 7,
        "caption_empty": 6,
        "duplicate": 6,
        "image_missing": 6,
        "image_truncated": 6,
        "image_undecodable": 6,
        "near_duplicate": 6,
        "too_long": 6,
    },
    "planted_defects": 90,
    "planted_defects_rejected_as_planted": 89,
    "clean_pairs": 110,
    "clean_pairs_kept": 110,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo") / "demo-out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = run_demo(out, n=N)
    return out, summary, printed.getvalue()


@pytest.mark.slow
def test_summary_counts_agree_with_the_planted_ground_truth(demo):
    out, summary, printed = demo
    summary = dict(summary)
    checks = summary.pop("checks")
    assert summary == EXPECTED
    assert list(summary["rejected_by_reason"]) == list(EXPECTED["rejected_by_reason"])  # most first
    with open(os.path.join(out, "summary.json")) as fh:
        assert json.load(fh) == {**EXPECTED, "checks": checks}
    assert printed.splitlines()[-7:] == [
        "Demo summary (clean step):",
        "  kept      111 of 200 (55.5%)",
        "  rejected  89 of 200 (44.5%): aspect_ratio 8, disallowed_script 8, emoji 8, too_short 8, too_small 8, "
        "clip_low_score 7, caption_empty 6, duplicate 6, image_missing 6, image_truncated 6, image_undecodable 6, "
        "near_duplicate 6, too_long 6",
        "  against the planted ground truth (synth/ground_truth.jsonl):",
        "    planted defects rejected for the planted reason: 89 of 90 (98.9%)",
        "    clean pairs kept: 110 of 110 (100.0%)",
        f"  open {os.path.join(out, 'clean', 'report.html')}",
    ]
    assert os.path.isfile(os.path.join(out, "clean", "report.html"))


@pytest.mark.slow
def test_every_output_is_checked_and_has_no_structural_finding(demo):
    out, summary, printed = demo
    checks = summary["checks"]
    assert sorted(checks) == ["clean", "sft", "stage1", "stage2"]
    assert checks["clean"]["samples"] == EXPECTED["kept"]
    for name, check in checks.items():
        assert check["samples"] > 0 and check["structural_findings"] == 0, (name, check)
        assert os.path.isfile(os.path.join(out, name, "check", "COMPLETED"))
        line = next(line for line in printed.splitlines() if line.startswith(f"[vlcurate] check {name} "))
        assert f"{check['samples']:,} samples, 0 structural findings" in line


ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["clean", "sft", "stage1", "stage2"])
def test_every_output_records_what_reproduces_it(demo, kind):
    out, _, _ = demo
    with open(os.path.join(out, kind, "info.json")) as fh:
        info = json.load(fh)
    assert set(info["versions"]) == {
        "vlcurate", "python", "torch", "open_clip", "apache_beam", "pyarrow", "pillow", "numpy",
    }  # fmt: skip
    assert all(isinstance(v, str) for v in info["versions"].values())  # all installed here
    assert info["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", info["git_commit"])
    run = info["run"]
    assert re.fullmatch(ISO, run["started"]) and re.fullmatch(ISO, run["finished"])
    assert run["started"] <= run["finished"] and run["wall_seconds"] >= 0
    if kind == "clean":
        weights = os.path.join(WEIGHTS_DIR, "tiny-synth-clip", "open_clip_model.safetensors")
        with open(weights, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        assert info["models"] == {"bundled:tiny-synth-clip": {"file": weights, "sha256": digest}}
    else:
        assert info["models"] == {}
