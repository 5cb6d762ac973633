"""`vlcurate retune`: new thresholds on a clean output's stored scores give what a fresh clean gives."""

import json

import pytest

from vlcurate.cli import main
from vlcurate.pipelines.retune import _retunable
from vlcurate.pipelines.stored_scores import _attach
from vlcurate.schemas.record import Pair
from vlcurate.tests.pipelines.helpers import tree_files


def _clean(synth_dir, out, threshold: float) -> None:
    config = out.parent / f"clean-{threshold}.yaml"
    text = (synth_dir / "clean.yaml").read_text().replace("threshold: 0.4", f"threshold: {threshold}")
    text = text.replace("paths:\n      - wds/*.tar", f"paths:\n      - {synth_dir}/wds/*.tar")
    config.write_text(text)
    assert main(["clean", "--config", str(config), "--output", str(out), "--no-progress"]) == 0


@pytest.fixture(scope="module")
def first(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("retune") / "first"
    _clean(synth_dir, out, 0.4)
    return out


def test_retune_writes_what_a_fresh_clean_with_the_new_threshold_writes(first, synth_dir, tmp_path):
    retuned, fresh = tmp_path / "retuned", tmp_path / "fresh"
    argv = ["retune", "--from", str(first), "--set", "clip_filter.threshold=0.5", "--output", str(retuned)]
    assert main([*argv, "--no-progress"]) == 0
    _clean(synth_dir, fresh, 0.5)
    for part in ("shards", "rejects"):
        assert tree_files(str(retuned / part)) == tree_files(str(fresh / part)), part
    assert (retuned / "stats.json").read_bytes() == (fresh / "stats.json").read_bytes()
    info = json.loads((retuned / "info.json").read_text())
    assert info["scores_from"] == str(first) and info["config"]["steps"]["clip_filter"] == {"threshold": 0.5}
    stats = json.loads((retuned / "stats.json").read_text())
    assert stats["totals"]["read"] == stats["totals"]["kept"] + stats["totals"]["rejected"] == 400


def test_a_threshold_per_language_joins_the_one_in_effect(first, tmp_path):
    out = tmp_path / "zh"
    assert (
        main(
            [
                "retune",
                "--from",
                str(first),
                "--set",
                "clip_filter.threshold.zh=0.6",
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    info = json.loads((out / "info.json").read_text())
    assert info["thresholds"]["clip_filter"]["synth"] == {
        "default": {"value": 0.4, "from": "threshold"},
        "zh": {"value": 0.6, "from": "threshold"},
    }


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "min_side.min_side=120",
            "these thresholds would send 7 pairs that {first} rejected before CLIP on to CLIP (e.g. "
            "synth/000000064); their scores were never computed. Run clean with these thresholds instead.",
        ),
        (
            "language.allowed=[en]",
            "--set 'language.allowed=[en]': retune changes only thresholds (min_side, aspect_ratio, length, "
            "language.min_prob, clip_filter threshold and keep_fraction); for anything else run clean.",
        ),
        (
            "web:min_side.min_side=300",
            "--set 'web:min_side.min_side=300': no source 'web' in this output (synth).",
        ),
        (
            "clip_filter=0.3",
            "--set 'clip_filter=0.3': write [SOURCE:]STEP.PARAM[.LANGUAGE]=VALUE, e.g. clip_filter.threshold.en=0.31",
        ),
    ],
)
def test_what_retune_cannot_do_is_refused_before_any_input_is_read(first, tmp_path, capsys, setting, message):
    out = tmp_path / "refused"
    assert main(["retune", "--from", str(first), "--set", setting, "--output", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"vlcurate: error: {message.format(first=first)}"
    assert not out.exists()


def test_a_pair_without_one_stored_score_gets_none_and_says_why():
    pair = Pair(uid="s/1", source="s", caption_raw="a")
    (out,) = _attach(
        (("s/1", "a"), {"pairs": [pair], "stored": [{"clip": 0.1}, {"clip": 0.2}]}), ["clip"], "first"
    )
    assert "clip" not in out.scores and out.meta["error"] == "stored scores disagree for clip in first"
    (out,) = _attach(
        (("s/1", "a"), {"pairs": [Pair(uid="s/1", source="s")], "stored": []}), ["clip"], "first"
    )
    assert out.meta["error"] == "no stored score for clip in first"
    (out,) = _attach(
        (("s/1", "a"), {"pairs": [Pair(uid="s/1", source="s")], "stored": [{"clip": 0.3}] * 2}), ["clip"], "x"
    )
    assert out.scores == {"clip": 0.3} and "error" not in out.meta


@pytest.mark.parametrize(
    "step, param, retunable",
    [
        ("clip_filter", "threshold", True),
        ("clip_filter", "keep_fraction", True),  # sets the threshold in its place (exclusive with it)
        ("min_side", "min_side", True),
        ("length", "max_words", True),
        ("language", "min_prob", True),
        ("language", "allowed", False),
        ("clip_score", "batch_size", False),
        ("near_dedup", "radius", False),
        ("no_such_step", "threshold", False),
    ],
)
def test_only_thresholds_and_what_stands_in_for_them_are_retunable(step, param, retunable):
    assert _retunable(step, param) is retunable
