"""The CLIP scorer on the CPU: loading, preprocessing that matches open_clip, scoring, the bundled model."""

import io
import json
import os
import shutil
import time

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from vlcurate.model.clip_fast import use_sdpa
from vlcurate.model.clip_handler import ClipInput, encode_captions, score_batch
from vlcurate.model.clip_models import (
    WEIGHTS_DIR,
    ClipModelError,
    image_size_of,
    load_clip,
    resolve,
)
from vlcurate.model.clip_preprocess import normalize, pil_pixels
from vlcurate.model.train_tiny_clip import make_examples, roc_auc
from vlcurate.schemas.model_spec import DEFAULT_BUNDLED, ModelSpec
from vlcurate.schemas.record import Pair


def test_bundled_model_separates_matched_from_mismatched_pairs(tiny):
    """Held-out scenes (a seed the training never used): AUC of matched vs another scene's caption."""
    images, captions, langs = make_examples(400, seed=12345, zh_share=0.5)
    shuffled = captions[1:] + captions[:1]
    pairs = [Pair(uid=str(i), source="s", caption=c) for i, c in enumerate(captions)]
    wrong = [Pair(uid=str(i), source="s", caption=c) for i, c in enumerate(shuffled)]
    pos = np.array(score_batch(tiny, [ClipInput(p, pixels=x) for p, x in zip(pairs, images)]))
    neg = np.array(score_batch(tiny, [ClipInput(p, pixels=x) for p, x in zip(wrong, images)]))
    langs = np.array(langs)
    assert roc_auc(pos, neg) >= 0.95
    for lang in ("en", "zh"):
        assert roc_auc(pos[langs == lang], neg[langs == lang]) >= 0.95, lang


def test_bundled_eval_json_records_the_training_result():
    with open(os.path.join(WEIGHTS_DIR, "tiny-synth-clip", "eval.json")) as fh:
        report = json.load(fh)
    assert report["auc"] >= 0.95 and report["auc_en"] >= 0.95 and report["auc_zh"] >= 0.95


def test_cpu_preprocessing_equals_open_clip_transform(tiny):
    rng = np.random.default_rng(0)
    for size in ((640, 480), (300, 301), (225, 900), (32, 32)):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "PNG")
        _, _, transform = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
        expected = transform(Image.open(io.BytesIO(buffer.getvalue())))
        ours = normalize(
            torch.from_numpy(pil_pixels(buffer.getvalue(), 224, draft=False))[None],
            open_clip.OPENAI_DATASET_MEAN,
            open_clip.OPENAI_DATASET_STD,
            torch.float32,
        )[0]
        assert ours.shape == expected.shape == (3, 224, 224)
        assert torch.allclose(ours, expected, atol=1e-5), size


def test_truncated_caption_tokens_and_sdpa_give_the_same_embeddings():
    torch.manual_seed(0)
    model = load_clip("ViT-B-32@random")
    captions = ["a red circle on the left", "一个红色的圆形", "word " * 100]
    full = torch.nn.functional.normalize(model.model.encode_text(model.tokenizer(captions)).float(), dim=-1)
    with torch.no_grad():
        assert torch.allclose(encode_captions(model, captions), full, atol=1e-5)
        x = torch.randn(2, 3, 224, 224)
        before = model.model.encode_image(x)
        assert use_sdpa(model.model) == 24  # 12 image + 12 text blocks
        assert torch.allclose(model.model.encode_image(x), before, atol=1e-4)
        assert torch.allclose(encode_captions(model, captions), full, atol=1e-4)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bundled:nope", r"no bundled CLIP model 'nope'; bundled: tiny-synth-clip"),
        ("local-dir:/nonexistent", r"/nonexistent has no open_clip_config.json"),
        ("ViT-B-32", r"ViT-B-32 needs weights: write ViT-B-32@<tag or checkpoint path>"),
        ("ViT-B-32@nosuchtag", r"'nosuchtag' is neither a file nor a pretrained tag of ViT-B-32"),
        ("ViT-Q-99@openai", r"unknown open_clip architecture 'ViT-Q-99'"),
        ("ViT-B-32@openai", r"not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it"),
    ],
)
def test_a_model_that_cannot_be_had_is_a_clear_error(spec, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ClipModelError, match=message) as err:
        resolve(ModelSpec.parse(spec))
    assert "Pass one of: a bundled model" in str(err.value)
    assert time.monotonic() - started < 20  # no hub retries


def test_a_folder_without_weights_is_refused_not_run_with_random_weights(tmp_path):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}}))
    with pytest.raises(ClipModelError, match="has no weights"):
        resolve(ModelSpec.parse(f"local-dir:{tmp_path}"))


def _copy_of_bundled(folder, drop: str | None = None):
    """The bundled model's files in `folder`, optionally without the weight `drop`; returns its weights."""
    source = os.path.join(WEIGHTS_DIR, DEFAULT_BUNDLED.split(":", 1)[1])
    shutil.copy(os.path.join(source, "open_clip_config.json"), folder)
    weights = load_file(os.path.join(source, "open_clip_model.safetensors"))
    weights.pop(drop, None)
    save_file(weights, os.path.join(folder, "open_clip_model.safetensors"))
    return weights


def test_a_checkpoint_gives_its_exact_weights_and_leaves_torch_initializers_working(tmp_path):
    # Loading skips the initializers (the checkpoint overwrites every weight); they must be back after.
    normal = torch.nn.init.normal_
    weights = _copy_of_bundled(tmp_path)
    loaded = load_clip(f"local-dir:{tmp_path}").model.state_dict()
    assert set(weights) <= set(loaded)
    for name, tensor in weights.items():
        assert torch.equal(loaded[name], tensor.float()), name
    assert torch.nn.init.normal_ is normal
    assert torch.nn.init.normal_(torch.zeros(64)).abs().sum() > 0


def test_a_checkpoint_missing_a_weight_fails_instead_of_leaving_it_uninitialized(tmp_path):
    _copy_of_bundled(tmp_path, drop="ln_final.weight")
    with pytest.raises(ClipModelError, match=r"ln_final\.weight"):
        load_clip(f"local-dir:{tmp_path}")
    assert torch.nn.init.zeros_(torch.ones(4)).sum() == 0  # initializers are back after a failed load


def test_image_size_comes_from_the_config_without_weights():
    assert image_size_of(DEFAULT_BUNDLED) == 32
    assert image_size_of("ViT-L-14@random") == 224


def test_the_handler_in_runinference_gives_score_batch_scores(tiny):
    """ClipModelHandler behind RunInference (groups of ClipInputs, pooled into model batches of 8) scores
    like one score_batch call on all inputs."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.util import assert_that

    from vlcurate.model.clip_handler import ClipModelHandler
    from vlcurate.pipelines.options import pipeline_options

    images, captions, _ = make_examples(24, seed=7, zh_share=0.25)
    pairs = [Pair(uid=f"s/{i:02d}", source="s", caption=c) for i, c in enumerate(captions)]
    groups = [
        [ClipInput(p, pixels=x) for p, x in zip(pairs[i : i + 5], images[i : i + 5])] for i in range(0, 24, 5)
    ]
    expected = {p.uid: s for p, s in zip(pairs, score_batch(tiny, [e for g in groups for e in g]))}

    def close_to_expected(actual):
        assert sorted(uid for uid, _ in actual) == sorted(expected)
        assert all(abs(score - expected[uid]) < 1e-4 for uid, score in actual)

    handler = ClipModelHandler(DEFAULT_BUNDLED, batch_size=8, device="cpu")
    with beam.Pipeline(options=pipeline_options()) as p:
        scored = (
            p
            | beam.Create(groups)
            | RunInference(handler)
            | beam.FlatMap(lambda r: [(e.pair.uid, s) for e, s in zip(r.example, r.inference, strict=True)])
        )
        assert_that(scored, close_to_expected)
