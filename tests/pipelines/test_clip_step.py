"""CLIP scoring inside the Beam pipeline with the bundled tiny CLIP, on the synthetic dataset."""

import collections
import json
import os

import pytest

from vlcurate.pipelines.clean import run_clean
from vlcurate.schemas.config import load_clean_config
from vlcurate.tests.pipelines.helpers import jpeg, kept_rows, output_files, reject_rows, synth_config


@pytest.fixture(scope="module")
def clip_run(synth_dir, tmp_path_factory):
    config = load_clean_config(os.path.join(synth_dir, "clean.yaml"))  # the bundled threshold 0.4
    config.output.dir = str(tmp_path_factory.mktemp("clip") / "out")
    stats = run_clean(config, progress=False)
    return config.output.dir, stats


def test_planted_mismatches_are_rejected_and_matched_pairs_kept(clip_run, ground_truth):
    out, stats = clip_run
    by_uid = {f"synth/{g['key']}": g for g in ground_truth}
    rejected = {r["uid"]: r["reason"] for r in reject_rows(out)}
    kept = {r["uid"] for r in kept_rows(out)}
    assert len(kept) + len(rejected) == len(ground_truth)
    # Every other defect still gets exactly its reason.
    for uid, truth in by_uid.items():
        if truth["defect"] != "clip_mismatch" and rejected.get(uid) != "clip_low_score":
            assert rejected.get(uid) == truth["expected_reason"], uid
    planted = {uid for uid, g in by_uid.items() if g["expected_reason_with_clip"] == "clip_low_score"}
    caught = {uid for uid, reason in rejected.items() if reason == "clip_low_score"}
    recall = len(caught & planted) / len(planted)
    precision = len(caught & planted) / len(caught)
    # Measured with the bundled model on this data (400 pairs, seed 7): 15 of 16 planted mismatches caught
    # (recall 0.9375) and no matched pair dropped (precision 1.0); before the near duplicates were planted
    # (other pairs) 14 of 16 and 1 matched pair dropped; on 1,000 pairs recall is 0.95-0.975.
    assert recall >= 0.85 and precision >= 0.9, (recall, precision)
    scores = [dict(r["scores"])["clip"] for r in kept_rows(out)]
    assert len(scores) == len(kept) and min(scores) >= 0.4
    histogram = stats["histograms"]["clip"]["synth"]
    assert histogram["bins"] == 75 and sum(histogram["counts"]) == stats["steps"]["clip_filter"]["seen"]


def test_keep_fraction_keeps_the_requested_share_per_source(synth_dir, tmp_path):
    config = synth_config(
        synth_dir,
        "webdataset",
        str(tmp_path / "out"),
        steps={"clip_filter": {"keep_fraction": 0.3}},
        disable=["dedup", "near_dedup"],  # nothing after the filter: its share is the kept share
    )
    stats = run_clean(config, progress=False)
    scored = stats["steps"]["clip_filter"]["seen"]
    kept = stats["sources"]["synth"]["kept"]
    assert abs(kept - 0.3 * scored) <= 1, (kept, scored)


def _group(lang, fractions):
    return lang if lang in fractions else "default"


def test_the_recorded_thresholds_are_the_ones_applied(synth_dir, tmp_path):
    """A global threshold, and a source that keeps a fraction per language instead (its setting wins):
    info.json and stats.json record each threshold the filter applied, per source and language group,
    and every kept score is at or above it, every clip_low_score reject below it."""
    from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig

    wds = os.path.join(str(synth_dir), "wds", "*.tar")
    fractions = {"zh": 0.5, "default": 0.3}
    config = CleanConfig(
        sources=[
            SourceConfig(
                name="frac",
                format="webdataset",
                paths=[wds],
                steps={"clip_filter": {"keep_fraction": fractions}},
            ),
            SourceConfig(name="abs", format="webdataset", paths=[wds]),
        ],
        output=OutputConfig(dir=str(tmp_path / "out")),
        steps={"clip_filter": {"threshold": 0.4}},
        disable=["dedup", "near_dedup"],  # both sources read the same pairs
    )
    stats = run_clean(config, progress=False)
    with open(tmp_path / "out" / "info.json", encoding="utf-8") as fh:
        info = json.load(fh)
    applied = stats["thresholds"]["clip_filter"]
    assert info["thresholds"]["clip_filter"] == applied
    assert applied["abs"] == {"default": {"value": 0.4, "from": "threshold"}}
    assert info["step_params"]["frac"]["clip_filter"] == {"keep_fraction": fractions}
    kept = [r for r in kept_rows(str(tmp_path / "out")) if r["source"] == "frac"]
    low = [
        r
        for r in reject_rows(str(tmp_path / "out"))
        if r["source"] == "frac" and r["reason"] == "clip_low_score"
    ]
    scored = collections.Counter(_group(r["lang"], fractions) for r in kept + low)
    for group, share in fractions.items():
        entry = applied["frac"][group]
        assert entry["from"] == "keep_fraction" and entry["keep_fraction"] == share
        assert entry["quantile"] == round(1 - share, 12) and entry["scored"] == scored[group] > 10
        in_group = [r for r in kept if _group(r["lang"], fractions) == group]
        assert all(dict(r["scores"])["clip"] >= entry["value"] for r in in_group)
        assert all(
            dict(r["scores"])["clip"] < entry["value"] for r in low if _group(r["lang"], fractions) == group
        )
        assert abs(len(in_group) - share * scored[group]) <= 1, (group, len(in_group), scored[group])
    # report.html's thresholds table says, per group, where each computed threshold came from.
    html = (tmp_path / "out" / "report.html").read_text()
    for group, share in fractions.items():
        entry = applied["frac"][group]
        assert f"keep_fraction {share:g}: quantile {entry['quantile']:g} of {entry['scored']:,}" in html


def test_keep_fraction_on_scores_the_input_carries(tmp_path):
    """Without the CLIP step (re-tuning on vlcurate's own shards), keep_fraction still ranks the scores
    the input carries: the threshold comes from them, not from the LAION defaults."""
    from vlcurate.cli import main
    from vlcurate.tests.pipelines.test_config_errors import clean_config, write_wds

    samples = [
        {
            "key": f"k{i:02d}",
            "image": jpeg(300, 300),
            "caption": "a red circle on the grass",
            "json": {"scores": {"clip": i / 100}},
        }
        for i in range(40)
    ]
    wds = write_wds(tmp_path / "scored.tar", samples)
    argv = [
        *clean_config(tmp_path, wds, "steps: {clip_filter: {keep_fraction: 0.25}}"),
        "--disable",
        "clip_score,dedup,near_dedup",
    ]
    assert main(argv) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    (entry,) = stats["thresholds"]["clip_filter"]["s"].values()
    # The scores are 0.00-0.39: the 0.75 quantile of 40 (nearest rank, 29.25 -> 29) is 0.29, and every
    # pair at or above it is kept, 11 of 40 (a quarter, rounded up by the rank).
    assert entry == {
        "value": 0.29,
        "from": "keep_fraction",
        "keep_fraction": 0.25,
        "quantile": 0.75,
        "scored": 40,
    }
    assert stats["totals"]["kept"] == 11
    assert stats["sources"]["s"]["rejected_by_reason"] == {"clip_low_score": 29}


def test_per_source_thresholds_apply_to_their_source(synth_dir, tmp_path):
    from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig

    wds = os.path.join(str(synth_dir), "wds", "*.tar")
    config = CleanConfig(
        sources=[
            SourceConfig(
                name="strict", format="webdataset", paths=[wds], steps={"clip_filter": {"threshold": 0.99}}
            ),
            SourceConfig(name="lenient", format="webdataset", paths=[wds]),
        ],
        output=OutputConfig(dir=str(tmp_path / "out")),
        steps={"clip_filter": {"threshold": -1.0}},
        disable=["dedup", "near_dedup"],
    )
    stats = run_clean(config, progress=False)
    dropped = {s: v["dropped"] for s, v in stats["steps"]["clip_filter"]["by_source"].items()}
    assert dropped["lenient"] == {}
    assert dropped["strict"]["clip_low_score"] == stats["steps"]["clip_filter"]["by_source"]["strict"]["seen"]
    assert collections.Counter(stats["sources"]["lenient"]["rejected_by_reason"]) == collections.Counter(
        {k: v for k, v in stats["sources"]["strict"]["rejected_by_reason"].items() if k != "clip_low_score"}
    )


def test_scores_are_not_encoded_between_runinference_and_attach(synth_dir, tmp_path, monkeypatch):
    """Beam samples elements of every PCollection to estimate sizes; estimating a prediction by pickling
    it would wait for the GPU to finish its scores (no overlap left). The clip coders estimate without
    encoding, so in a fused run no PendingScores is ever pickled, and no group of images either."""
    from vlcurate.model.clip_handler import ClipInput, PendingScores

    pickled = collections.Counter()
    real = PendingScores.__getstate__
    monkeypatch.setattr(PendingScores, "__getstate__", lambda self: pickled.update(["scores"]) or real(self))
    monkeypatch.setattr(
        ClipInput,
        "__reduce__",
        lambda self: pickled.update(["input"]) or object.__reduce__(self),
        raising=False,
    )
    config = synth_config(synth_dir, "webdataset", str(tmp_path / "out"), disable=["dedup", "near_dedup"])
    stats = run_clean(config, progress=False)
    assert stats["steps"]["clip_filter"]["seen"] > 0
    assert pickled == {}


def shards_and_rejects(out: str) -> dict[str, bytes]:
    return {
        name: data for name, data in output_files(out).items() if name.startswith(("shards/", "rejects/"))
    }


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_model_shared_by_the_workers_writes_what_per_process_models_write(synth_dir, tmp_path, workers):
    """share_model: the workers call one model through Beam's cross-process proxy (in-process too, with
    one worker); the kept shards and rejects must be byte-identical to a run where each worker has its own."""
    outputs = {}
    for share in (False, True):
        out = str(tmp_path / f"share-{share}")
        steps = {"clip_score": {"share_model": share}}
        run_clean(synth_config(synth_dir, "webdataset", out, workers=workers, steps=steps), progress=False)
        outputs[share] = shards_and_rejects(out)
    assert sorted(outputs[True]) == sorted(outputs[False]) and len(outputs[True]) >= 2
    assert [name for name in outputs[True] if outputs[True][name] != outputs[False][name]] == []
