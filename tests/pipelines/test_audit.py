"""--audit: every per-pair filter runs on every pair, so stats show each filter's own effect and overlaps."""

import json

from vlcurate.pipelines.clean import run_clean
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.tests.pipelines.helpers import jpeg, reject_rows, write_tar


def test_audit_records_every_reason_and_the_overlaps(tmp_path):
    write_tar(
        tmp_path / "a.tar",
        [
            ("000", "A blue square on a white wall", jpeg(300, 300)),  # clean
            ("001", "A blue square on a wall 🙂", jpeg(100, 100)),  # emoji and too small
            ("002", "tiny", jpeg(900, 200)),  # too short and aspect ratio
            ("003", "A blue square on a white wall, again", jpeg(120, 300)),  # too small only
        ],
    )

    def run(audit, name):
        config = CleanConfig(
            sources=[SourceConfig(name="s", format="webdataset", paths=[str(tmp_path / "a.tar")])],
            output=OutputConfig(dir=str(tmp_path / name)),
            audit=audit,
            disable=["clip_score", "clip_filter"],
        )
        return run_clean(config, progress=False)

    normal, audit = run(False, "normal"), run(True, "audit")
    # Either way a pair's reject is its first reason, so the outputs agree.
    assert normal["sources"] == audit["sources"]
    assert normal["sources"]["s"]["rejected_by_reason"] == {"emoji": 1, "too_short": 1, "too_small": 1}
    # Normal mode stops at the first failing filter; audit mode lets every filter see every pair.
    assert normal["steps"]["min_side"]["dropped"] == {"too_small": 1}
    assert audit["steps"]["min_side"]["dropped"] == {"too_small": 2}
    assert audit["steps"]["aspect_ratio"]["dropped"] == {"aspect_ratio": 1}
    assert audit["steps"]["min_side"]["seen"] == 4 and normal["steps"]["min_side"]["seen"] == 2
    assert audit["overlaps"] == {"aspect_ratio+too_short": 1, "emoji+too_small": 1}
    rows = {r["uid"]: json.loads(r["meta"]) for r in reject_rows(str(tmp_path / "audit"))}
    assert rows["s/001"]["audit_reasons"] == ["too_small"]
