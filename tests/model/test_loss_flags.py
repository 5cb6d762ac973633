"""model/loss_flags.py: exact findings on hand-made losses."""

import dataclasses
import math
import random

import pytest

from vlcurate.model.loss_flags import (
    MAD_TO_SIGMA,
    MIN_GAIN,
    MIN_MIRROR_GAIN,
    MIN_TASK_SAMPLES,
    OUTLIER_K,
    Finding,
    flag_samples,
    loss_findings,
    outlier_thresholds,
)


def vqa_rows():
    """21 VQA losses: 0.8, 0.9, 1.0, 1.1, 1.2 four times each (median 1.0, MAD 0.1) and v20 at 2.0.
    Every image helps by 0.5 except v03 (by 0.01) and v04 (by -0.2)."""
    rows = []
    for i, loss in enumerate([0.8, 0.9, 1.0, 1.1, 1.2] * 4 + [2.0]):
        rows.append({"id": f"v{i:02d}", "task": "vqa", "loss": loss, "swap_loss": loss + 0.5})
    rows[3]["swap_loss"] = rows[3]["loss"] + 0.01
    rows[4]["swap_loss"] = rows[4]["loss"] - 0.2
    return rows


def caption_rows():
    """Too few for the outlier rule (3 < 20), whatever their losses; one is NaN, one has no image, one
    has a NaN swap loss (not judged)."""
    return [
        {"id": "c1", "task": "captioning", "loss": 9.0, "swap_loss": 9.0},
        {"id": "c2", "task": "captioning", "loss": float("nan"), "swap_loss": 1.0},
        {"id": "c0", "task": "captioning", "loss": 0.5, "swap_loss": None},
        {"id": "c3", "task": "captioning", "loss": 0.5, "swap_loss": float("nan")},
    ]


def test_defaults_are_the_documented_ones():
    assert (OUTLIER_K, MIN_GAIN, MIN_TASK_SAMPLES, MAD_TO_SIGMA) == (3.5, 0.0, 20, 1.4826)


def test_exact_findings_on_hand_made_rows():
    findings = loss_findings(vqa_rows() + caption_rows(), min_gain=0.05)
    limit = 1.0 + 3.5 * 1.4826 * 0.1  # 1.51891
    assert findings == [
        Finding(
            "c1",
            "captioning",
            "image_does_not_help",
            "another image's loss 9.000 - own 9.000 = 0.000 <= 0.05",
        ),
        Finding("c2", "captioning", "loss_not_finite", "loss is nan"),
        Finding(
            "v03", "vqa", "image_does_not_help", "another image's loss 1.110 - own 1.100 = 0.010 <= 0.05"
        ),
        Finding(
            "v04", "vqa", "image_does_not_help", "another image's loss 1.000 - own 1.200 = -0.200 <= 0.05"
        ),
        Finding("v20", "vqa", "loss_outlier", f"loss 2.000 > {limit:.3f} (robust z > 3.5 in vqa)"),
    ]
    assert outlier_thresholds(vqa_rows() + caption_rows()) == {
        "vqa": pytest.approx(limit),
        "captioning": None,
    }


def test_the_order_of_rows_does_not_matter_and_tuples_match():
    rows = vqa_rows() + caption_rows()
    expected = loss_findings(rows)
    for seed in range(5):
        random.Random(seed).shuffle(rows)
        assert loss_findings(rows) == expected
    assert flag_samples(rows) == [(f.id, f.reason, f.detail) for f in expected]


def test_thresholds_are_parameters():
    rows = vqa_rows()
    assert [f.id for f in loss_findings(rows, k=2.0) if f.reason == "loss_outlier"] == ["v20"]
    # k = 1.3: limit 1.0 + 1.3 * 1.4826 * 0.1 = 1.1927 < 1.2, so the four 1.2s are outliers too.
    assert [f.id for f in loss_findings(rows, k=1.3) if f.reason == "loss_outlier"] == [
        "v04",
        "v09",
        "v14",
        "v19",
        "v20",
    ]
    assert [f.id for f in loss_findings(rows, min_gain=0.6) if f.reason == "image_does_not_help"] == [
        f"v{i:02d}" for i in range(21)
    ]
    assert not [f for f in loss_findings(rows, min_task_samples=22) if f.reason == "loss_outlier"]


def test_no_outliers_without_spread():
    rows = [{"id": f"s{i}", "task": "t", "loss": 1.0, "swap_loss": 3.0} for i in range(25)]
    rows.append({"id": "big", "task": "t", "loss": 50.0, "swap_loss": 60.0})
    assert outlier_thresholds(rows) == {"t": None}  # MAD 0: the robust z-score is undefined
    assert loss_findings(rows) == []


def test_infinite_losses_and_objects_as_rows():
    @dataclasses.dataclass
    class Result:
        id: str
        task: str
        loss: float
        swap_loss: float | None

    rows = [Result("a", "t", math.inf, 1.0), Result("b", "t", 1.0, math.inf), Result("c", "t", 1.0, None)]
    assert loss_findings(rows) == [Finding("a", "t", "loss_not_finite", "loss is inf")]


def test_by_default_a_sample_is_flagged_exactly_when_its_own_image_does_not_lower_the_loss():
    rows = [
        {"id": "same", "task": "t", "loss": 1.0, "swap_loss": 1.0},
        {"id": "worse", "task": "t", "loss": 1.0, "swap_loss": 0.9},
        {"id": "better", "task": "t", "loss": 1.0, "swap_loss": 1.001},
        {"id": "text", "task": "t", "loss": 1.0, "swap_loss": None},
    ]
    assert [(i, r) for i, r, _ in flag_samples(rows)] == [
        ("same", "image_does_not_help"),
        ("worse", "image_does_not_help"),
    ]


def test_boxes_that_fit_the_mirrored_image_better_are_flagged():
    rows = vqa_rows()
    rows[0]["flip_loss"] = rows[0]["loss"] - 0.25  # the mirrored image explains the boxes better
    rows[1]["flip_loss"] = rows[1]["loss"] - 0.1  # by exactly the margin: not flagged
    rows[2]["flip_loss"] = rows[2]["loss"] + 0.3  # a correct box: mirroring hurts
    rows[5]["flip_loss"] = math.nan  # not scored
    found = [f for f in loss_findings(rows) if f.reason == "boxes_fit_mirrored_image"]
    assert found == [
        Finding("v00", "vqa", "boxes_fit_mirrored_image", "own 0.800 - mirrored image's 0.550 = 0.250 > 0.1")
    ]
    assert MIN_MIRROR_GAIN == 0.1
    assert [f.id for f in loss_findings(rows, min_mirror_gain=0.05)].count("v01") == 1
