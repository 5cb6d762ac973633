"""End-of-run warnings and --max-reject-share (pipelines/outcome.py), on tiny inputs made here."""

from __future__ import annotations

import json
import os

import pytest

from vlcurate.cli import main
from vlcurate.pipelines.clean import finalize
from vlcurate.pipelines.outcome import assess
from vlcurate.pipelines.output import COMPLETED
from vlcurate.schemas.errors import RunFailedError
from vlcurate.schemas.record import Pair
from vlcurate.schemas.stats import RunStats
from vlcurate.tests.pipelines.helpers import jpeg, write_tar

NO_CLIP = ["--disable", "clip_score,clip_filter", "--no-progress"]
GOOD = "A blue square on a white wall"
BAR = "!" * 100


def clean(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["clean", *args, *NO_CLIP])
    return code, capsys.readouterr().err.splitlines()


def block(lines: list[str]) -> list[str]:
    """The warning block's findings, checking its frame."""
    start = lines.index(BAR)
    assert lines[start + 1] == "!! WARNING: the run finished, but its output is probably not what you meant:"
    end = lines.index(BAR, start + 1)
    assert lines[end - 1].startswith("!! Counts per step and reason: ") and lines[end - 1].endswith(
        "report.html"
    )
    return [line.removeprefix("!!   - ") for line in lines[start + 2 : end - 1]]


def test_zero_pairs_read_warns_and_still_completes(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "b.jsonl").write_text("\n\n")  # blank lines are not records
    out = tmp_path / "out"
    code, lines = clean(capsys, "--input", str(tmp_path / "*.jsonl"), "--output", str(out))
    assert code == 0
    assert block(lines) == [
        "0 pairs were read: the files that `paths` matched hold no records (empty files? the wrong format?)"
    ]
    assert (out / COMPLETED).exists()


def test_a_step_that_rejects_every_pair_is_named_with_its_reason(tmp_path, capsys):
    write_tar(tmp_path / "a.tar", [(f"{i:03d}", GOOD, jpeg(100, 90)) for i in range(3)])
    write_tar(tmp_path / "b.tar", [("100", "tiny", jpeg(100, 90))])  # too_short: min_side never sees it
    out = tmp_path / "out"
    code, lines = clean(capsys, "--input", str(tmp_path / "*.tar"), "--output", str(out))
    assert code == 0
    nothing_kept = "0 of 4 pairs were kept: every pair read was rejected"
    assert block(lines) == [nothing_kept, "min_side rejected 3 of 3 pairs that reached it (too_small)"]
    assert lines[-1] == BAR  # the block is the last thing the run prints
    assert (out / COMPLETED).exists()
    with open(out / "info.json") as fh:
        info = json.load(fh)
    assert info["warnings"] == [nothing_kept, "min_side rejected 3 of 3 pairs that reached it (too_small)"]
    assert info["failure"] is None
    assert "min_side rejected 3 of 3 pairs" in (out / "report.html").read_text()


def test_missing_images_blame_the_paths_for_files_and_tars(tmp_path, capsys):
    rows = [{"key": f"k{i}", "caption": GOOD, "image": f"images/k{i}.jpg"} for i in range(3)]
    # A line that does not parse never had its image looked for: it does not hide the finding.
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n")
    code, lines = clean(capsys, "--input", str(tmp_path / "rows.jsonl"), "--output", str(tmp_path / "o1"))
    assert code == 0
    assert block(lines) == [
        "0 of 4 pairs were kept: every pair read was rejected",
        "source 'input': every image is missing (image_missing for all 3 pairs whose image was looked "
        "for, at step read): the source's image_root or its image paths are probably wrong",
    ]
    with open(tmp_path / "o1" / "stats.json") as fh:
        read = json.load(fh)["steps"]["read"]
    assert (read["seen"], read["dropped"]) == (4, {"image_missing": 3, "row_unparseable": 1})

    write_tar(tmp_path / "a.tar", [(f"{i:03d}", GOOD, None) for i in range(4)] + [("009", "tiny", None)])
    code, lines = clean(capsys, "--input", str(tmp_path / "a.tar"), "--output", str(tmp_path / "o2"))
    assert code == 0
    # probe_image rejected all it saw, but the likely cause is told once, not as a second finding.
    assert block(lines) == [
        "0 of 5 pairs were kept: every pair read was rejected",
        "source 'input': every image is missing (image_missing for all 4 pairs whose image was looked "
        "for, at step probe_image): the source's image_root or its image paths are probably wrong",
    ]


def test_max_reject_share_fails_the_run_without_completed(tmp_path, capsys):
    write_tar(
        tmp_path / "a.tar",
        [("000", GOOD, jpeg(100, 90))] + [(f"00{i}", f"{GOOD} {i}", jpeg(300 + i, 300)) for i in (1, 2, 3)],
    )
    out = tmp_path / "out"
    base = ["--input", str(tmp_path / "a.tar"), "--output", str(out)]
    code, lines = clean(capsys, *base, "--max-reject-share", "0.2")
    assert code == 1
    message = (
        "step min_side rejected 25.0% of the pairs that reached it (1 of 4: too_small), more than "
        f"--max-reject-share 0.2 allows; {out} has no COMPLETED marker (see its report.html)"
    )
    assert lines[-1] == f"vlcurate: error: {message}"
    assert BAR not in lines  # nothing else was wrong
    assert not (out / COMPLETED).exists()
    with open(out / "info.json") as fh:
        info = json.load(fh)
    assert info["failure"] == message.split("; ")[0]
    assert f"FAILED: {info['failure']}" in (out / "report.html").read_text()

    code, _ = clean(capsys, *base, "--max-reject-share", "0.25")  # not more than the limit
    assert code == 0 and (out / COMPLETED).exists()

    config = tmp_path / "clean.yaml"  # the config key does the same; the flag overrides it
    config.write_text(
        f"sources: [{{name: s, format: webdataset, paths: ['{tmp_path}/a.tar']}}]\n"
        f"output: {{dir: '{tmp_path}/out2'}}\nmax_reject_share: 0.1\n"
    )
    code, lines = clean(capsys, "--config", str(config))
    assert code == 1 and "more than --max-reject-share 0.1 allows" in lines[-1]
    assert not (tmp_path / "out2" / COMPLETED).exists()
    code, _ = clean(capsys, "--config", str(config), "--max-reject-share", "1")
    assert code == 0 and (tmp_path / "out2" / COMPLETED).exists()


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", "nan", "half"])
def test_a_bad_max_reject_share_is_refused_at_start(tmp_path, capsys, value):
    write_tar(tmp_path / "a.tar", [("000", GOOD, jpeg(300, 300))])
    out = tmp_path / "out"
    code, lines = clean(
        capsys, "--input", str(tmp_path / "a.tar"), "--output", str(out), "--max-reject-share", value
    )
    shown = repr(value) if value == "half" else str(float(value))
    assert code == 2
    assert lines == [
        f"vlcurate: error: max_reject_share (--max-reject-share) must be a number F with 0 < F <= 1, got {shown}."
    ]
    assert not out.exists()


def stats_of(
    seen: dict[str, int], dropped: dict[tuple[str, str], int], read: int = 10, kept: int = 1
) -> RunStats:
    stats = RunStats()
    stats.read["s"] = read
    stats.kept["s"] = kept
    for step, n in seen.items():
        stats.step_seen[(step, "s")] = n
    for (step, reason), n in dropped.items():
        stats.step_dropped[(step, "s", reason)] = n
    return stats


def test_assess_reports_the_first_step_over_the_limit_in_run_order():
    stats = stats_of(
        {"read": 10, "emoji": 10, "min_side": 8, "aspect_ratio": 5},
        {("emoji", "emoji"): 2, ("min_side", "too_small"): 3, ("aspect_ratio", "aspect_ratio"): 5},
    )
    order = ["emoji", "min_side", "aspect_ratio"]
    outcome = assess(stats.to_json(), order, max_reject_share=0.3)
    assert outcome.failure == (
        "step min_side rejected 37.5% of the pairs that reached it (3 of 8: too_small), more than "
        "--max-reject-share 0.3 allows (also over it: aspect_ratio)"
    )
    assert outcome.warnings == ["aspect_ratio rejected 5 of 5 pairs that reached it (aspect_ratio)"]
    nothing_kept = assess(stats_of({"emoji": 10}, {("emoji", "emoji"): 10}, kept=0).to_json())
    assert nothing_kept.warnings[0] == "0 of 10 pairs were kept: every pair read was rejected"
    assert assess(stats.to_json(), order).failure is None  # no limit, no failure


def test_a_step_that_raised_is_a_warning_naming_it():
    stats = stats_of({"read": 10, "emoji": 10}, {("emoji", "step_error_emoji"): 2})
    assert assess(stats.to_json(), ["emoji"]).warnings == [
        "step emoji raised on 2 pairs (step_error_emoji; the error is in each reject's meta.step_error): "
        "please report it"
    ]


def test_several_reasons_are_listed_most_first():
    stats = stats_of(
        {"probe_image": 4}, {("probe_image", "image_undecodable"): 3, ("probe_image", "image_missing"): 1}
    )
    assert assess(stats.to_json()).warnings == [
        "probe_image rejected 4 of 4 pairs that reached it (image_undecodable 3, image_missing 1)"
    ]


def test_finalize_on_a_remote_runner_fails_the_job_and_writes_no_completed(tmp_path):
    stats = RunStats()
    stats.observe_read("s", [Pair(uid="s/1", source="s"), Pair(uid="s/2", source="s")])
    stats.step_seen[("min_side", "s")] = 2
    stats.step_dropped[("min_side", "s", "too_small")] = 1
    for pair in (Pair(uid="s/1", source="s"), Pair(uid="s/2", source="s", reject="too_small")):
        stats.observe_final(pair)
    shards = [{"shard": "shards/00000.tar", "metadata": "shards/00000.parquet", "pairs": 1}]
    rejects = [{"file": "rejects/rejects-00000.parquet", "pairs": 1}]
    args = (None, shards, rejects, stats, {}, str(tmp_path), {"steps": ["min_side"]})
    with pytest.raises(RunFailedError, match=r"step min_side rejected 50\.0% .* has no COMPLETED marker"):
        finalize(*args, max_reject_share=0.4, raise_on_failure=True)
    assert (tmp_path / "info.json").exists() and not (tmp_path / COMPLETED).exists()
    finalize(*args, max_reject_share=0.4)  # local: run_clean says it; the marker is still not written
    assert not os.path.exists(tmp_path / COMPLETED)
    finalize(*args, max_reject_share=0.5)
    assert (tmp_path / COMPLETED).exists()


def test_images_all_outside_the_root_blame_the_paths():
    stats = stats_of({"read": 4}, {("read", "image_outside_root"): 3, ("read", "row_unparseable"): 1}, read=4)
    assert assess(stats.to_json()).warnings == [
        "source 's': every image is missing (image_outside_root for all 3 pairs whose image was looked for, "
        "at step read): the source's image_root or its image paths are probably wrong"
    ]
