"""near_dedup and decontaminate inside `vlcurate clean`, on planted near-duplicates of varied photo-like
images (synth/near_duplicates.py): each caption policy keeps exactly the ground truth's pairs, losers name
the pair they duplicate, evaluation images take out their copies, and workers change no byte."""

from __future__ import annotations

import json
import os

import pytest

from vlcurate.cli import main as cli_main
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.synth.near_duplicates import original_bytes, plant_near_duplicates, varied_images
from vlcurate.tests.pipelines.helpers import kept_rows, reject_rows, run, tree_files, write_tar

ORIGINALS = 12
# Copies that every radius from the measured default catches (bench/image_hash.py: 100% recall), each
# with the caption it is posted under: the original's, the same up to case and punctuation, or another.
COPIES = {
    "reencode_q50": "same",
    "resize_half": "restyled",
    "caption_reencoded": "other",
    "caption_same_bytes": "other",
}


def _caption(i: int, how: str) -> str:
    if how == "same":
        return f"a photograph of a quiet landscape number {i}"
    if how == "restyled":
        return f"A photograph of a quiet landscape, number {i}!"
    return f"another picture showing the same place, view {i}"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """One tar: ORIGINALS originals (keys a-NN) and their copies (keys b-NN-kind), shuffled by key."""
    folder = tmp_path_factory.mktemp("near")
    originals = varied_images(ORIGINALS, seed=11)
    samples = [
        (f"a-{i:02d}", _caption(i, "same"), original_bytes(image)) for i, image in enumerate(originals)
    ]
    for copy in plant_near_duplicates(originals, seed=5, kinds=list(COPIES)):
        caption = _caption(copy.original_index, COPIES[copy.kind])
        samples.append((f"b-{copy.original_index:02d}-{copy.kind}", caption, copy.image))
    write_tar(folder / "pairs.tar", sorted(samples))
    evals = folder / "evalset"
    evals.mkdir()
    for i in (3, 7):
        (evals / f"test-{i}.jpg").write_bytes(original_bytes(originals[i]))
    return folder


def _config(folder, out, **steps) -> CleanConfig:
    # Half-size copies of 256-512 px originals are 128-256 px: min_side lowered so near_dedup meets them.
    steps = {"min_side": {"min_side": 100}, **steps}
    source = SourceConfig(name="web", format="webdataset", paths=[str(folder / "pairs.tar")])
    return CleanConfig(
        sources=[source],
        output=OutputConfig(dir=str(out)),
        disable=["clip_score", "clip_filter"],
        steps=steps,
    )


def _rejects(out) -> dict[str, tuple[str, str]]:
    """{uid: (reason, the uid or eval id it names)}"""
    names = ("near_duplicate_of", "eval_match", "duplicate_of")
    rows = {}
    for row in reject_rows(str(out)):
        meta = json.loads(row["meta"])
        rows[row["uid"]] = (row["reason"], next((meta[n] for n in names if n in meta), None))
    return rows


def test_any_caption_keeps_only_the_originals(planted, tmp_path):
    stats = run(_config(planted, tmp_path / "out"))
    copies = {
        f"web/b-{i:02d}-{kind}": ("near_duplicate", f"web/a-{i:02d}")
        for i in range(ORIGINALS)
        for kind in COPIES
    }
    assert _rejects(tmp_path / "out") == copies
    assert sorted(r["uid"] for r in kept_rows(str(tmp_path / "out"))) == [
        f"web/a-{i:02d}" for i in range(ORIGINALS)
    ]
    assert (stats["totals"]["read"], stats["totals"]["kept"]) == (ORIGINALS * 5, ORIGINALS)
    assert stats["steps"]["near_dedup"]["dropped"] == {"near_duplicate": ORIGINALS * 4}
    hashes = [json.loads(r["meta"])["image_phash"] for r in kept_rows(str(tmp_path / "out"))]
    assert len(set(hashes)) == ORIGINALS and all(len(h) == 116 for h in hashes)  # in the shards' metadata


def test_same_caption_drops_only_copies_posted_with_the_same_words(planted, tmp_path):
    run(_config(planted, tmp_path / "out", near_dedup={"captions": "same_caption"}))
    same_words = ("reencode_q50", "resize_half")
    expected = {
        f"web/b-{i:02d}-{k}": ("near_duplicate", f"web/a-{i:02d}")
        for i in range(ORIGINALS)
        for k in same_words
    }
    # The two copies under another caption share that caption: the smaller key stays.
    expected |= {
        f"web/b-{i:02d}-caption_same_bytes": ("near_duplicate", f"web/b-{i:02d}-caption_reencoded")
        for i in range(ORIGINALS)
    }
    assert _rejects(tmp_path / "out") == expected


def test_merge_collects_the_other_captions_on_the_kept_pair(planted, tmp_path):
    run(_config(planted, tmp_path / "out", near_dedup={"captions": "merge"}))
    kept = {r["uid"]: json.loads(r["meta"]).get("captions") for r in kept_rows(str(tmp_path / "out"))}
    assert kept == {
        f"web/a-{i:02d}": [_caption(i, "same"), *sorted({_caption(i, "restyled"), _caption(i, "other")})]
        for i in range(ORIGINALS)
    }


def test_decontaminate_names_the_evaluation_image_and_the_hash_file_agrees(planted, tmp_path):
    evals = planted / "evalset"
    run(_config(planted, tmp_path / "out", decontaminate={"sets": [str(evals)]}))
    rejects = _rejects(tmp_path / "out")
    matched = {uid: why for uid, why in rejects.items() if why[0] == "eval_overlap"}
    assert matched == {
        uid: ("eval_overlap", f"evalset/test-{i}.jpg")
        for i in (3, 7)
        for uid in [f"web/a-{i:02d}", *[f"web/b-{i:02d}-{k}" for k in COPIES]]
    }
    assert len(rejects) - len(matched) == (ORIGINALS - 2) * len(COPIES)  # near_dedup takes the rest
    # The same set as a hash file (vlcurate hashes) gives the same output.
    assert cli_main(["hashes", str(evals), "--out", str(tmp_path / "eval.tsv")]) == 0
    lines = (tmp_path / "eval.tsv").read_text().splitlines()
    assert lines[0].startswith("# phash-ycc-464") and [line.split("\t")[0] for line in lines[1:]] == [
        "evalset/test-3.jpg",
        "evalset/test-7.jpg",
    ]
    run(_config(planted, tmp_path / "out2", decontaminate={"sets": [str(tmp_path / "eval.tsv")]}))
    assert _rejects(tmp_path / "out2") == rejects


@pytest.mark.slow
def test_two_workers_write_the_same_bytes(planted, tmp_path):
    for workers in (1, 2):
        config = _config(planted, tmp_path / f"out{workers}", near_dedup={"captions": "merge"})
        config.workers = workers
        run(config)
    one, two = tree_files(str(tmp_path / "out1")), tree_files(str(tmp_path / "out2"))
    volatile = {"info.json", "report.html", "stats.json"}
    assert {k: v for k, v in one.items() if k not in volatile} == {
        k: v for k, v in two.items() if k not in volatile
    }
    assert any(k.startswith("rejects/near-duplicates-") for k in one)


@pytest.mark.parametrize(
    "steps, message",
    [
        (
            {"decontaminate": {"sets": ["/no/such/evalset"]}},
            "decontaminate.sets: /no/such/evalset does not exist",
        ),
        ({"near_dedup": {"radius": 500}}, "radius must be an integer from 0 to 116"),
        (
            {"decode_check": {"image_hash": False}},
            "near_dedup compares the perceptual hash decode_check takes",
        ),
    ],
)
def test_bad_settings_fail_before_reading(planted, tmp_path, steps, message):
    config_path = tmp_path / "c.json"
    config = _config(planted, tmp_path / "out", **steps).to_dict()
    config_path.write_text(json.dumps(config))
    from vlcurate.pipelines.clean import run_clean
    from vlcurate.schemas.config import load_clean_config
    from vlcurate.schemas.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        run_clean(load_clean_config(str(config_path)), progress=False)
    assert not os.path.exists(tmp_path / "out")
