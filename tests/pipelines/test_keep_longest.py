"""keep_longest: a source whose images carry several captions keeps the longest one per image."""

import json
import os

import pyarrow.parquet as pq

from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.tests.pipelines.helpers import jpeg, kept_rows, run, write_tar

A, B, C = jpeg(300, 300), jpeg(320, 300), jpeg(340, 300)  # three different images
SAMPLES = [
    ("a1", "a red car parked on the street", A),
    ("a2", "a red car parked on a quiet street at night", A),  # the longest of A
    ("a3", "a red car on the street", A),
    ("b1", "a dog runs across the green", B),
    ("b2", "a dog runs across the grass", B),  # as long as b1 and before it alphabetically: it stays
    ("c1", "a small boat on a calm lake", C),
]


def test_the_longest_caption_of_each_image_stays_where_the_source_turns_it_on(tmp_path):
    write_tar(tmp_path / "academic.tar", SAMPLES)
    tar = str(tmp_path / "academic.tar")
    config = CleanConfig(
        sources=[
            SourceConfig(
                name="sbu", format="webdataset", paths=[tar], steps={"keep_longest": {"enabled": True}}
            ),
            SourceConfig(name="web", format="webdataset", paths=[tar]),  # off by default
        ],
        output=OutputConfig(dir=str(tmp_path / "out")),
        disable=["clip_score", "clip_filter", "dedup", "near_dedup"],  # the two sources read the same pairs
    )
    stats = run(config)
    kept = {r["uid"] for r in kept_rows(config.output.dir)}
    assert kept == {"sbu/a2", "sbu/b2", "sbu/c1"} | {f"web/{key}" for key, _, _ in SAMPLES}
    # The source that left it off passes it untouched (and unseen).
    assert stats["steps"]["keep_longest"]["by_source"] == {
        "sbu": {"seen": 6, "dropped": {"shorter_caption": 3}, "changed": 0}
    }
    files = sorted(os.listdir(os.path.join(config.output.dir, "rejects")))
    assert [f for f in files if f.startswith("shorter-captions-")] and all(
        f.startswith(("shorter-captions-", "rejects-")) for f in files
    )
    rows = pq.read_table(
        [os.path.join(config.output.dir, "rejects", f) for f in files if f.startswith("shorter")]
    )
    losers = {r["uid"]: json.loads(r["meta"])["longest_of"] for r in rows.to_pylist()}
    assert losers == {"sbu/a1": "sbu/a2", "sbu/a3": "sbu/a2", "sbu/b1": "sbu/b2"}
    with open(os.path.join(config.output.dir, "info.json"), encoding="utf-8") as fh:
        info = json.load(fh)
    assert info["step_params"]["sbu"]["keep_longest"] == {"enabled": True}
    assert info["step_params"]["web"]["keep_longest"] == {"enabled": False}
    assert info["steps"][-2:] == ["keep_longest", "decontaminate"]  # decontaminate: on, no sets named
