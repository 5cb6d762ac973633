"""The report's galleries: which pairs meet each threshold (NearThresholds), and a real run with the bundled
CLIP, whose near-threshold and kept galleries must be on the right side, pictured, and the same bytes for
any number of workers."""

import json
import os
import re

import pytest

from vlcurate.filters.clip_filter import ClipFilter
from vlcurate.filters.image_size import AspectRatio, MinSide
from vlcurate.filters.length import LengthFilter
from vlcurate.filters.runner import StepRunner
from vlcurate.pipelines.clean import run_clean
from vlcurate.pipelines.steps import NearThresholds
from vlcurate.schemas.config import load_clean_config
from vlcurate.schemas.record import Pair
from vlcurate.schemas.stats import KEPT_PER_SOURCE, NEAR_PER_SIDE, RunStats
from vlcurate.tests.pipelines.helpers import kept_rows, output_files, synth_config


def _near_uids(stats: RunStats) -> dict:
    return {
        (name.partition(".")[0], side): [p["uid"] for p in entry[side]]
        for name, by_source in stats.to_json().get("near_threshold", {}).items()
        for entry in by_source.values()
        for side in ("below", "above")
    }


def _sized(key: str, width: int, height: int, **fields) -> Pair:
    return Pair(uid=f"s/{key}", source="s", width=width, height=height, image=b"jpeg", **fields)


@pytest.mark.parametrize("audit", [False, True])
def test_a_threshold_gallery_holds_only_pairs_that_reached_its_step(audit):
    steps = {"s": [MinSide(min_side=200), AspectRatio(max_ratio=3.0)]}
    # `small` carries an aspect_ratio score from its input, but min_side rejects it before aspect_ratio.
    small = _sized("small", 150, 600, scores={"aspect_ratio": 4.0})
    wide = _sized("wide", 300, 1200)
    fine = _sized("fine", 250, 300)
    unread = _sized("unread", 300, 100, scores={"min_side": 100.0}, reject="image_missing")  # by its reader
    batch = [small, wide, fine, unread]
    StepRunner(steps, audit=audit).run(batch)
    stats = RunStats()
    NearThresholds(steps, audit=audit).offer(batch, stats)
    near = _near_uids(stats)
    # in --audit runs every step sees every pair, the reader's rejects included
    assert near[("min_side", "below")] == [*(["s/unread"] if audit else []), "s/small"]
    assert near[("min_side", "above")] == ["s/fine", "s/wide"]  # score order
    assert near[("aspect_ratio", "below")] == ["s/fine", *(["s/unread"] if audit else [])]  # ratio <= 3
    assert near[("aspect_ratio", "above")] == (["s/small", "s/wide"] if audit else ["s/wide"])
    wide_entry = stats.to_json()["near_threshold"]["min_side.min_side"]["s"]["above"][1]
    assert wide_entry["reject"] == "aspect_ratio" and wide_entry["threshold"] == 200


def test_pairs_without_an_image_are_not_offered():
    """A gallery shows pictures: a caption-only source's pairs are passed over before any threshold."""
    steps = {"s": [LengthFilter()]}
    batch = [Pair(uid=f"s/{i}", source="s", caption="a few words " * i) for i in range(1, 30)]
    StepRunner(steps).run(batch)
    stats = RunStats()
    NearThresholds(steps).offer(batch, stats)
    assert stats.near == {}
    for pair in batch:
        pair.image = b"jpeg"
    NearThresholds(steps).offer(batch, stats)
    near = stats.to_json()["near_threshold"]
    # an English caption is no Chinese caption's neighbour: the CJK thresholds do not apply to it
    assert "length.min_words" in near and not any("cjk" in name for name in near)


def test_each_pair_is_compared_with_its_own_threshold_computed_ones_included():
    def pair(key: str, clip: float, lang: str) -> Pair:
        return Pair(uid=f"s/{key}", source="s", lang=lang, scores={"clip": clip}, image=b"jpeg")

    steps = {"s": [ClipFilter(threshold={"en": 0.3, "default": 0.5})]}
    batch = [pair("en", 0.35, "en"), pair("zh", 0.35, "zh")]
    StepRunner(steps).run(batch)
    stats = RunStats()
    NearThresholds(steps).offer(batch, stats)
    entry = stats.to_json()["near_threshold"]["clip_filter.threshold"]["s"]
    assert [(p["uid"], p["threshold"]) for p in entry["above"]] == [("s/en", 0.3)]
    assert [(p["uid"], p["threshold"], p["reject"]) for p in entry["below"]] == [
        ("s/zh", 0.5, "clip_low_score")
    ]
    # keep_fraction: no gallery before the threshold is known, the computed one after
    steps = {"s": [ClipFilter(keep_fraction=0.5)]}
    computed = {"s": {"default": {"value": 0.42, "from": "keep_fraction"}}}
    batch = [pair("a", 0.41, "en"), pair("b", 0.43, "en")]
    near, stats = NearThresholds(steps), RunStats()
    near.offer(batch, stats)
    assert stats.near == {}
    StepRunner(steps).run(batch, computed)
    near.offer(batch, stats, computed)
    entry = stats.to_json()["near_threshold"]["clip_filter.threshold"]["s"]
    assert [(p["uid"], p["threshold"]) for p in entry["below"] + entry["above"]] == [
        ("s/a", 0.42),
        ("s/b", 0.42),
    ]


def _run(synth_dir, out: str, workers: int = 1) -> dict:
    config = load_clean_config(os.path.join(synth_dir, "clean.yaml"))  # the bundled CLIP, threshold 0.4
    config.output.dir = out
    config.workers = workers
    return run_clean(config, progress=False)


@pytest.fixture(scope="module")
def clip_run(synth_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("galleries") / "out")
    return out, _run(synth_dir, out)


def _section(page: str, title: str) -> str:
    start = page.index(f"<h2>{title}")
    end = page.find("<h2>", start + 1)
    return page[start : end if end >= 0 else len(page)]


def test_the_clip_gallery_shows_pictured_pairs_on_both_sides_of_the_threshold(clip_run):
    out, stats = clip_run
    entry = stats["near_threshold"]["clip_filter.threshold"]["synth"]
    assert (entry["step"], entry["param"], entry["score"], entry["direction"]) == (
        "clip_filter",
        "threshold",
        "clip",
        "min",
    )
    below, above = entry["below"], entry["above"]
    assert len(below) == len(above) == NEAR_PER_SIDE
    assert all(p["value"] < 0.4 == p["threshold"] and p["reject"] == "clip_low_score" for p in below)
    assert all(p["value"] >= 0.4 == p["threshold"] and p["reject"] is None for p in above)
    assert [p["value"] for p in below + above] == sorted(p["value"] for p in below + above)
    # the closest: no pair the filter saw lies between a side's gallery and the threshold
    kept_scores = {r["uid"]: dict(r["scores"])["clip"] for r in kept_rows(out)}
    assert min(p["value"] for p in above) <= min(kept_scores.values()) + 1e-4
    assert all(p["width"] > 0 and p["height"] > 0 and p["caption"] for p in below + above)
    assert {"clip_filter.threshold", "min_side.min_side", "aspect_ratio.max_ratio"} <= set(
        stats["near_threshold"]
    )
    with open(os.path.join(out, "report.html"), encoding="utf-8") as fh:
        page = fh.read()
    near = _section(page, "Near the thresholds")
    clip = near[near.index("<h3>clip_filter.threshold ") :]
    clip = clip[: clip.index("</table>")]
    cells = clip.split("<td class='side'>")[1:]
    assert [cell.count("<figure") for cell in cells] == [NEAR_PER_SIDE, NEAR_PER_SIDE]
    assert [cell.count("<img ") for cell in cells] == [NEAR_PER_SIDE, NEAR_PER_SIDE]  # all decode
    assert (
        f"<b>clip {below[-1]['value']:g}</b>" in cells[0] and f"<b>clip {above[0]['value']:g}</b>" in cells[1]
    )


def test_the_kept_gallery_and_the_sample_scores(clip_run):
    out, stats = clip_run
    kept = stats["kept_samples"]["synth"]
    written = {r["uid"] for r in kept_rows(out)}
    assert len(kept) == KEPT_PER_SOURCE and {p["uid"] for p in kept} <= written
    assert all(p["scores"]["clip"] >= 0.4 for p in kept)
    with open(os.path.join(out, "report.html"), encoding="utf-8") as fh:
        page = fh.read()
    assert _section(page, "Kept pairs").count("<img ") == KEPT_PER_SOURCE
    low = stats["samples"]["clip_low_score"]
    assert low and all(s["scores"]["clip"] < 0.4 for s in low)
    assert all(s["duplicate_of"].startswith("synth/") for s in stats["samples"]["duplicate"])
    samples = _section(page, "Sample rejects")
    low_table = samples[samples.index("<h3>clip_low_score</h3>") :].split("</table>")[0]
    # the CLIP score first and in bold, then the others
    assert len(re.findall(r"<td class=\"l\"><b>clip -?[0-9.e-]+</b>, aspect_ratio ", low_table)) == len(low)
    small_table = samples[samples.index("<h3>too_small</h3>") :].split("</table>")[0]
    assert small_table.count('<td class="l"><b>min_side ') == len(stats["samples"]["too_small"])
    assert "<b>duplicate of synth/" in samples


def test_keep_fraction_galleries_use_the_computed_threshold(synth_dir, tmp_path):
    out = str(tmp_path / "out")
    config = synth_config(synth_dir, "webdataset", out, steps={"clip_filter": {"keep_fraction": 0.3}})
    stats = run_clean(config, progress=False)
    threshold = stats["thresholds"]["clip_filter"]["synth"]["default"]["value"]
    entry = stats["near_threshold"]["clip_filter.threshold"]["synth"]
    assert {p["threshold"] for p in entry["below"] + entry["above"]} == {float(f"{threshold:.4g}")}
    assert len(entry["below"]) == len(entry["above"]) == NEAR_PER_SIDE
    with open(os.path.join(out, "stats.json"), encoding="utf-8") as fh:
        assert json.load(fh)["near_threshold"] == stats["near_threshold"]


@pytest.mark.slow
def test_two_workers_write_the_same_galleries_and_files(synth_dir, clip_run, tmp_path):
    one, stats = clip_run
    two = str(tmp_path / "two")
    assert _run(synth_dir, two, workers=2)["near_threshold"] == stats["near_threshold"]
    first, second = output_files(one), output_files(two)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
