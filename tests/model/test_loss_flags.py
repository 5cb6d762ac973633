"""model/loss_flags.py: exact findings on hand-made losses."""

import dataclasses
import math
import random

import pytest

from vlcurate.model.loss_flags import (
    GAIN_SHARE,
    MAD_TO_SIGMA,
    MIN_GAIN,
    MIN_MIRROR_GAIN,
    MIN_OUTLIER_EXCESS,
    MIN_TASK_SAMPLES,
    OUTLIER_K,
    Finding,
    flag_samples,
    gain_thresholds,
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
    assert (GAIN_SHARE, MIN_OUTLIER_EXCESS, MIN_MIRROR_GAIN) == (0.1, 0.3, 0.0)


def test_exact_findings_on_hand_made_rows():
    findings = loss_findings(vqa_rows() + caption_rows(), min_gain=0.05)
    limit = 1.0 + 3.5 * 1.4826 * 0.1  # 1.51891
    assert findings == [
        Finding(
            "c1",
            "captioning",
            "image_does_not_help",
            "another image's loss 9.000 - own 9.000 = 0.000 <= 0.050",
        ),
        Finding("c2", "captioning", "loss_not_finite", "loss is nan"),
        Finding(
            "v03", "vqa", "image_does_not_help", "another image's loss 1.110 - own 1.100 = 0.010 <= 0.050"
        ),
        Finding(
            "v04", "vqa", "image_does_not_help", "another image's loss 1.000 - own 1.200 = -0.200 <= 0.050"
        ),
        Finding("v20", "vqa", "loss_outlier", f"loss 2.000 > {limit:.3f} (robust z > 3.5 in vqa)"),
    ]
    assert outlier_thresholds(vqa_rows() + caption_rows()) == {
        "vqa": pytest.approx(limit),
        "captioning": None,
    }
    # vqa: median gain 0.5, so 0.1 x 0.5 = 0.05; captioning: 3 finite gains < 20, min_gain alone.
    assert gain_thresholds(vqa_rows() + caption_rows()) == {"vqa": pytest.approx(0.05), "captioning": 0.0}


def test_the_own_image_must_help_a_share_of_what_it_helps_the_task():
    rows = vqa_rows()
    rows[6]["swap_loss"] = rows[6]["loss"] + 0.2  # helps, but less than half as much as for the others
    flagged = [f.id for f in loss_findings(rows) if f.reason == "image_does_not_help"]
    assert flagged == ["v03", "v04"]  # the default share: gain <= 0.1 x 0.5
    flagged = [f.id for f in loss_findings(rows, gain_share=0.5) if f.reason == "image_does_not_help"]
    assert flagged == ["v03", "v04", "v06"]  # gain <= 0.25
    flagged = [f.id for f in loss_findings(rows, gain_share=0.0) if f.reason == "image_does_not_help"]
    assert flagged == ["v04"]  # the plain rule: the own image does not lower the loss at all


def test_a_nearly_always_right_task_needs_a_real_excess_to_make_an_outlier():
    # Short answers: losses 0.01 +- 0.005 (MAD 0.005, so 3.5 robust sigmas are only 0.026).
    rows = [{"id": f"s{i:02d}", "task": "t", "loss": 0.005 + 0.005 * (i % 3)} for i in range(24)]
    rows += [{"id": "unsure", "task": "t", "loss": 0.2}, {"id": "wrong", "task": "t", "loss": 0.5}]
    assert [f.id for f in loss_findings(rows)] == ["wrong"]  # 0.5 > 0.01 + 0.3
    assert [f.id for f in loss_findings(rows, min_excess=0.0)] == ["unsure", "wrong"]


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
    # k = 1.3, no minimum excess: limit 1.0 + 1.3 * 1.4826 * 0.1 = 1.1927 < 1.2, so the four 1.2s are
    # outliers too (with the default excess the limit is 1.3).
    assert [f.id for f in loss_findings(rows, k=1.3, min_excess=0) if f.reason == "loss_outlier"] == [
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
    rows[0] |= {"box_loss": 0.8, "flip_loss": 0.55}  # the mirrored image explains the boxes better
    rows[1] |= {"box_loss": 0.9, "flip_loss": 0.9}  # no better: not flagged
    rows[2] |= {"box_loss": 0.7, "flip_loss": 1.3}  # a correct box: mirroring hurts
    rows[3] |= {"box_loss": None, "flip_loss": 0.1}  # not scored
    rows[5] |= {"box_loss": 0.5, "flip_loss": math.nan}
    found = [f for f in loss_findings(rows) if f.reason == "boxes_fit_mirrored_image"]
    assert found == [
        Finding(
            "v00",
            "vqa",
            "boxes_fit_mirrored_image",
            "box tokens: own 0.800 - mirrored image's 0.550 = 0.250 > 0",
        )
    ]
    assert not [f for f in loss_findings(rows, min_mirror_gain=0.3) if f.reason == "boxes_fit_mirrored_image"]
