"""End-to-end `clean` runs on the synthetic dataset (CLIP off here: tests/pipelines/test_clip_step.py)."""

import collections
import json
import os
import subprocess
import sys

import pytest

from vlcurate.pipelines.output import COMPLETED
from vlcurate.schemas.errors import ConfigError
from vlcurate.tests.pipelines.helpers import kept_rows, output_files, reject_rows, run
from vlcurate.tests.pipelines.helpers import synth_config as synth_config_with_clip

NO_CLIP = ["clip_score", "clip_filter"]


def synth_config(*args, **kwargs):
    return synth_config_with_clip(*args, disable=NO_CLIP, **kwargs)


@pytest.fixture(scope="module")
def wds_run(synth_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("clean") / "out")
    stats = run(synth_config(synth_dir, "webdataset", out))
    return out, stats


def expected_reasons(ground_truth) -> collections.Counter:
    return collections.Counter(g["expected_reason"] for g in ground_truth if g["expected_reason"])


def test_every_input_pair_is_kept_or_rejected_with_its_planted_reason(wds_run, ground_truth):
    out, stats = wds_run
    source = stats["sources"]["synth"]
    assert source["read"] == len(ground_truth)
    assert source["read"] == source["kept"] + source["rejected"]
    assert source["rejected_by_reason"] == dict(expected_reasons(ground_truth))
    by_key = {g["key"]: g["expected_reason"] for g in ground_truth}
    assert {r["uid"]: r["reason"] for r in reject_rows(out)} == {
        f"synth/{k}": reason for k, reason in by_key.items() if reason
    }
    assert sorted(r["uid"] for r in kept_rows(out)) == sorted(
        f"synth/{k}" for k, r in by_key.items() if not r
    )
    # Each duplicate and near duplicate loses to the original ground truth names.
    lost_to = {
        r["uid"]: meta.get("duplicate_of") or meta.get("near_duplicate_of")
        for r in reject_rows(out)
        for meta in [json.loads(r["meta"])]
        if r["reason"] in ("duplicate", "near_duplicate")
    }
    assert lost_to == {
        f"synth/{g['key']}": f"synth/{g['duplicate_of']}"
        for g in ground_truth
        if g["defect"] in ("duplicate", "near_duplicate")
    }


def test_output_is_self_describing(wds_run, ground_truth):
    out, _ = wds_run
    assert os.path.exists(os.path.join(out, COMPLETED))
    with open(os.path.join(out, "info.json")) as fh:
        info = json.load(fh)
    kept = sum(1 for g in ground_truth if not g["expected_reason"])
    assert info["counts"] == {"read": len(ground_truth), "kept": kept, "rejected": len(ground_truth) - kept}
    assert sum(s["pairs"] for s in info["shards"]) == kept
    assert info["steps"][0] == "max_caption_bytes" and info["steps"][-1] == "near_dedup"
    assert "clip_score" not in info["steps"]


def test_the_three_input_formats_give_identical_results(synth_dir, wds_run, tmp_path):
    wds_out, _ = wds_run

    def summary(out):
        kept = sorted((r["uid"], r["caption"], r["width"], r["height"]) for r in kept_rows(out))
        rejected = sorted((r["uid"], r["reason"]) for r in reject_rows(out))
        return kept, rejected

    expected = summary(wds_out)
    for fmt in ("parquet", "jsonl"):
        out = str(tmp_path / fmt)
        run(synth_config(synth_dir, fmt, out))
        assert summary(out) == expected, fmt


@pytest.mark.slow
def test_two_workers_write_byte_identical_output(synth_dir, wds_run, tmp_path):
    wds_out, _ = wds_run
    out = str(tmp_path / "two")
    run(synth_config(synth_dir, "webdataset", out, workers=2))
    one, two = output_files(wds_out), output_files(out)
    assert sorted(one) == sorted(two)
    assert [name for name in one if one[name] != two[name]] == []


def test_a_completed_directory_is_refused_unless_overwrite(synth_dir, wds_run):
    out, _ = wds_run
    before = output_files(out)
    with pytest.raises(ConfigError, match=r"already holds a completed run.*--overwrite"):
        run(synth_config(synth_dir, "webdataset", out))
    assert output_files(out) == before
    config = synth_config(synth_dir, "webdataset", out)
    config.output.overwrite = True
    run(config)
    assert output_files(out) == before


def test_leftovers_of_a_failed_run_are_cleared_and_foreign_files_kept(synth_dir, tmp_path):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "99999.tar").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    run(synth_config(synth_dir, "webdataset", str(out)))
    assert not (out / "shards" / "99999.tar").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / COMPLETED).exists()


def test_bad_config_fails_before_reading_data(synth_dir, tmp_path, monkeypatch):
    config_path = tmp_path / "bad.yaml"
    config_path.write_text(
        f"sources:\n  - {{name: s, format: webdataset, paths: ['{synth_dir}/wds/*.tar']}}\n"
        "steps:\n  decode_check: {draft_sise: 3}\n"
        f"output: {{dir: '{tmp_path}/out'}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "vlcurate.cli", "clean", "--config", str(config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown parameter of step 'decode_check' 'draft_sise'" in result.stderr
    assert "Did you mean 'draft_size'?" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_glob_matching_nothing_is_a_config_error(tmp_path):
    from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig

    config = CleanConfig(
        sources=[SourceConfig(name="s", format="parquet", paths=[str(tmp_path / "none-*.parquet")])],
        output=OutputConfig(dir=str(tmp_path / "out")),
    )
    with pytest.raises(ConfigError, match="no file matches"):
        run(config)
    assert not (tmp_path / "out").exists()


def test_bad_rows_cost_one_record_each_not_the_file(tmp_path):
    """Invalid UTF-8 and broken JSON lines become rejects; every other line of the file is still read."""
    from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig

    lines = [
        b'{"key": "a", "caption": "A red circle on a grey wall"}',
        b'{"key": "b", "caption": "caf\xe9 bad"}',
        b'{"key": "c", "caption": oops}',
        b'{"key": "d", "caption": "A blue square on the left side"}',
    ]
    (tmp_path / "rows.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "rows.csv").write_bytes(
        # a bad caption is a reject; bad bytes in the key or a passthrough column only become U+FFFD
        b"key,caption,note\na,A red circle on a grey wall,x\nb,caf\xe9 bad,y\nd\xff,A blue square on the left side,n\xe9\n"
    )
    for fmt, expected in (
        ("jsonl", {"caption_bad_utf8": 1, "row_unparseable": 1}),
        ("csv", {"caption_bad_utf8": 1}),
    ):
        config = CleanConfig(
            sources=[
                SourceConfig(name="s", format=fmt, paths=[str(tmp_path / f"rows.{fmt}")], image_column=None)
            ],
            output=OutputConfig(dir=str(tmp_path / f"out-{fmt}")),
        )
        stats = run(config)
        assert stats["sources"]["s"]["rejected_by_reason"] == expected, fmt
        assert stats["sources"]["s"]["kept"] == 2, fmt
    kept = {r["uid"]: json.loads(r["meta"]) for r in kept_rows(str(tmp_path / "out-csv"))}
    assert kept == {"s/a": {"note": "x"}, "s/d\ufffd": {"note": "n\ufffd"}}


def test_a_run_that_lost_pairs_is_refused_without_completed(tmp_path):
    from vlcurate.pipelines.clean import PairsLostError, finalize
    from vlcurate.schemas.record import Pair
    from vlcurate.schemas.stats import RunStats

    stats = RunStats()
    stats.read["s"] = 3
    for pair in (Pair(uid="s/1", source="s"), Pair(uid="s/2", source="s", reject="too_short")):
        stats.observe_final(pair)
    shards = [{"shard": "shards/00000.tar", "metadata": "shards/00000.parquet", "pairs": 1}]
    rejects = [{"file": "rejects/rejects-00000.parquet", "pairs": 1}]
    with pytest.raises(PairsLostError, match="read 3, counted kept 1 \\+ rejected 1"):
        finalize(None, shards, rejects, stats, {}, str(tmp_path), {})
    assert (tmp_path / "stats.json").exists() and not (tmp_path / "COMPLETED").exists()
    stats.read["s"] = 2  # now every pair is accounted for
    finalize(None, shards, rejects, stats, {}, str(tmp_path), {})
    assert (tmp_path / "COMPLETED").exists()


def test_report_pictures_every_sample_reject_whose_image_decodes(wds_run):
    out, _ = wds_run
    with open(os.path.join(out, "report.html"), encoding="utf-8") as fh:
        page = fh.read()
    samples = page[page.index("<h2>Sample rejects") :].split("<h3>")[1:]
    pictured = {s[: s.index("</h3>")]: (s.count("<img "), s.count("no image")) for s in samples}
    with open(os.path.join(out, "stats.json"), encoding="utf-8") as fh:
        sampled = {reason: len(s) for reason, s in json.load(fh)["samples"].items()}
    no_image = {"image_missing", "image_undecodable", "image_truncated"}  # planted: nothing decodes
    assert pictured == {reason: (0, n) if reason in no_image else (n, 0) for reason, n in sampled.items()}
