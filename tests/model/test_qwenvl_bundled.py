"""The bundled compact Qwen-VL on samples this test makes: with its own image a sample's loss is lower
than with its partner's image (chosen as the checker chooses it) for at least 95% of them. Samples come
from the trainer's generator (the project's formatters) with a seed neither training nor eval.json used."""

import json
import os

import pytest
import torch

from vlcurate.model.loss_flags import GAIN_SHARE, MIN_MIRROR_GAIN, MIN_OUTLIER_EXCESS, OUTLIER_K
from vlcurate.model.qwenvl_config import QwenVLConfig
from vlcurate.model.qwenvl_losses import (
    partner_images,
    partner_indices,
    prompt_ids,
    supervised_ids,
)
from vlcurate.model.qwenvl_weights import DEFAULT_MODEL, WEIGHTS_DIR, load_model
from vlcurate.model.train_compact_qwenvl_data import SFT_TASKS, STAGE2_TASKS, Domain, make_examples
from vlcurate.model.train_compact_qwenvl_eval import SAMPLE_FIELDS, flag_metrics, score

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
    # eval.json's flags are what the current rules and defaults give on its stored held-out losses, and
    # they meet the bars (own image >= 0.95; recall >= 0.8 of each kind at <= 5% flagged clean
    # samples); docs/check.md gives a second eval seed, where more clean samples are flagged.
    assert report["own_image_lowers_loss"] >= 0.95
    defaults = {
        "k": OUTLIER_K,
        "min_excess": MIN_OUTLIER_EXCESS,
        "gain_share": GAIN_SHARE,
        "min_mirror_gain": MIN_MIRROR_GAIN,
    }
    rows = [dict(zip(SAMPLE_FIELDS, row)) for row in report["samples"]]
    assert report["flags"] == {**defaults, **flag_metrics(rows, **defaults)}
    assert report["flags"]["clean_flagged"] <= 0.05
    assert min(report["flags"]["recall"].values()) >= 0.8, report["flags"]["recall"]


@pytest.mark.slow
def test_own_images_lower_the_loss_for_95_percent(bundled):
    model, _ = bundled
    torch.manual_seed(0)
    domain = Domain("compact-qwenvl:test")
    image_tasks = STAGE2_TASKS + SFT_TASKS[:4]
    examples = make_examples(domain, dict.fromkeys(image_tasks, 10))  # 90 samples
    partners = {}
    for task in image_tasks:
        pool = [e for e in examples if e.task == task]
        found = partner_indices(
            [supervised_ids(e.view.labels) for e in pool],
            [e.view.images for e in pool],
            [prompt_ids(e.view.input_ids, e.view.labels) for e in pool],
        )
        for e, j in zip(pool, found):
            partners[e.id] = list(partner_images(e.view.images, pool[j].view.images))
    scores = score(model, examples, domain.images, partners)
    lower = {sample: own < swapped for sample, (own, swapped, *_) in scores.items()}
    assert sum(lower.values()) / len(lower) >= 0.95, sorted(s for s, ok in lower.items() if not ok)
