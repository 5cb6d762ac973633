"""What-if curves (pipelines/whatif.py): the kept count a threshold would give, read off one run, equals
what a fresh run with that threshold keeps."""

import os

import pytest

from vlcurate.pipelines.clean import run_clean
from vlcurate.pipelines.whatif import Curve
from vlcurate.schemas.config import load_clean_config

IMAGE_STEPS_ONLY = ["clip_score", "clip_filter"]


def _run(synth_dir, out, steps=None, disable=None, audit=False) -> dict:
    config = load_clean_config(os.path.join(synth_dir, "clean.yaml"))
    config.output.dir = str(out)
    config.steps.update(steps or {})
    config.disable = list(disable or [])
    config.audit = audit
    return run_clean(config, progress=False)


def _passed(stats) -> int:
    """Pairs that passed every per-pair step: written, or set aside as duplicates or near duplicates."""
    dups = sum(
        s["rejected_by_reason"].get(r, 0)
        for s in stats["sources"].values()
        for r in ("duplicate", "duplicate_uid", "near_duplicate")
    )
    return stats["totals"]["kept"] + dups


def _at(stats, curve: str, threshold: float) -> tuple[int, int]:
    entry = stats["whatif"][curve]
    k = entry["grid"].index(threshold)
    languages = [lang for s in entry["by_source"].values() for lang in s["languages"].values()]
    return sum(lang["kept"][k] for lang in languages), sum(lang["undetermined"][k] for lang in languages)


@pytest.fixture(scope="module")
def clip_run(synth_dir, tmp_path_factory):
    return _run(synth_dir, tmp_path_factory.mktemp("whatif") / "out")


def test_the_clip_curve_gives_what_a_fresh_run_keeps(clip_run, synth_dir, tmp_path):
    """clip_filter is the last per-pair step: every pair it rejected has met every other one, so its
    curve is exact (nothing undetermined), at the applied threshold and elsewhere."""
    assert sorted(clip_run["whatif"]) == [
        "aspect_ratio.max_ratio",
        "clip_filter.threshold",
        "language.min_prob",
        "length.max_chars",
        "length.max_cjk_chars",
        "length.max_words",
        "length.min_chars",
        "length.min_cjk_chars",
        "length.min_words",
        "min_side.min_side",
    ]
    assert _at(clip_run, "clip_filter.threshold", 0.4) == (_passed(clip_run), 0)
    for threshold in (0.3, 0.5):
        fresh = _run(synth_dir, tmp_path / str(threshold), {"clip_filter": {"threshold": threshold}})
        assert _at(clip_run, "clip_filter.threshold", threshold) == (_passed(fresh), 0)
    # Steps before CLIP: the pairs they rejected never met CLIP, so below the applied threshold some are
    # undetermined; at it, the curve is the run itself.
    assert _at(clip_run, "min_side.min_side", 200.0) == (_passed(clip_run), 0)
    assert _at(clip_run, "min_side.min_side", 120.0)[1] > 0
    assert clip_run["whatif"]["min_side.min_side"]["by_source"]["synth"]["settled"] is False


def test_in_audit_runs_the_image_step_curves_give_what_fresh_runs_keep(synth_dir, tmp_path):
    """With --audit every per-pair step meets every pair, so without a model step after them the curves
    of every step are exact on both sides of the applied threshold."""
    audited = _run(synth_dir, tmp_path / "audit", disable=IMAGE_STEPS_ONLY, audit=True)
    assert _at(audited, "min_side.min_side", 200.0) == (_passed(audited), 0)
    assert _at(audited, "aspect_ratio.max_ratio", 3.0) == (_passed(audited), 0)
    assert _at(audited, "length.min_words", 3.0) == (_passed(audited), 0)
    assert _at(audited, "language.min_prob", 0.0) == (_passed(audited), 0)
    for step, param, curve, threshold in [
        ("min_side", "min_side", "min_side.min_side", 120),
        ("min_side", "min_side", "min_side.min_side", 300),
        ("aspect_ratio", "max_ratio", "aspect_ratio.max_ratio", 2.5),
        ("aspect_ratio", "max_ratio", "aspect_ratio.max_ratio", 4.0),
        # Thresholds of one step on two branches: min_words applies to captions that are not Chinese,
        # min_cjk_chars to Chinese ones, max_chars to both.
        ("length", "min_words", "length.min_words", 5),
        ("length", "min_cjk_chars", "length.min_cjk_chars", 8),
        ("length", "max_chars", "length.max_chars", 60),
        ("language", "min_prob", "language.min_prob", 0.95),
    ]:
        fresh = _run(synth_dir, tmp_path / f"{step}{threshold}", {step: {param: threshold}}, IMAGE_STEPS_ONLY)
        assert _at(audited, curve, float(threshold)) == (_passed(fresh), 0), (curve, threshold)


def test_a_grid_point_is_compared_as_the_step_compares():
    at_least = Curve(None, "p", "x", "min", (1.0, 2.0, 3.0), True)
    at_most = Curve(None, "p", "x", "max", (1.0, 2.0, 3.0), True)
    values = [0.5, 1.0, 2.0, 2.5, 3.0, 9.0]
    for curve, passes in ((at_least, lambda v, t: v >= t), (at_most, lambda v, t: v <= t)):
        slots = [0] * 4
        for value in values:
            slots[curve.index(value)] += 1
        assert curve.cumulative(slots) == [sum(passes(v, t) for v in values) for t in curve.grid]
