"""The bundled compact Qwen-VL on samples this test makes: with its own image a sample's loss is lower
than with another sample's image for at least 90% of them (the issue asks 95%: not met yet). Samples come from the
trainer's generator (the project's formatters) with a seed neither training nor eval.json used."""

import json
import os

import pytest
import torch

from vlcurate.model.loss_flags import MIN_GAIN, OUTLIER_K
from vlcurate.model.qwenvl_config import QwenVLConfig
from vlcurate.model.qwenvl_weights import DEFAULT_MODEL, WEIGHTS_DIR, load_model
from vlcurate.model.train_compact_qwenvl import SFT_TASKS, STAGE2_TASKS, Domain, make_examples, score

BUNDLED = os.path.join(WEIGHTS_DIR, "compact-qwenvl")


@pytest.fixture(scope="module")
def bundled():
    return load_model(DEFAULT_MODEL, device="cpu")


def test_the_bundled_files_fit_the_package_limits(bundled):
    _, config = bundled
    assert config == QwenVLConfig.from_json(os.path.join(BUNDLED, "config.json"))
    assert config.decoder.vocab_size == 151936 and config.vision.image_size == 448
    assert os.path.getsize(os.path.join(BUNDLED, "model.safetensors")) <= 25 * 1024 * 1024
    with open(os.path.join(BUNDLED, "eval.json")) as fh:
        report = json.load(fh)
    # What the shipped weights measured (the bars are 0.95, recall >= 0.8 at <= 5% flagged clean
    # samples: not met yet, see docs/check.md); these guard against shipping worse weights.
    assert report["own_image_lowers_loss"] >= 0.90
    (at_defaults,) = [
        f for f in report["flags_by_threshold"] if (f["k"], f["min_gain"]) == (OUTLIER_K, MIN_GAIN)
    ]
    assert at_defaults["clean_flagged"] <= 0.10
    assert at_defaults["recall"]["swapped_image"] >= 0.6 and at_defaults["recall"]["exchanged_caption"] >= 0.6


@pytest.mark.slow
def test_own_images_lower_the_loss_for_90_percent(bundled):
    model, config = bundled
    torch.manual_seed(0)
    domain = Domain("compact-qwenvl:test")
    image_tasks = STAGE2_TASKS + SFT_TASKS[:4]
    examples = make_examples(domain, dict.fromkeys(image_tasks, 5))  # 45 samples
    partners = {}
    for task in image_tasks:
        pool = [e for e in examples if e.task == task]
        for i, e in enumerate(pool):  # the next sample's images, cycled to as many as this one shows
            theirs = pool[(i + 1) % len(pool)].view.images
            partners[e.id] = [theirs[j % len(theirs)] for j in range(len(e.view.images))]
    scores = score(model, examples, domain.images, partners, config.vision.image_size)
    lower = [own < swapped for own, swapped in scores.values()]
    assert sum(lower) / len(lower) >= 0.9, (
        sorted
    )  # 41 of 45 with the shipped weights; the issue asks 0.95(scores.items(), key=lambda kv: kv[1][1] - kv[1][0])[:5]
