"""`vlcurate dedup --semantic` through the command line on a fake finished clean output: the list equals
the planted duplicates, the same for 1 and 2 workers; bad configuration exits 2 with one line before any
data is read; an output without rows says so."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlcurate.cli import main
from vlcurate.pipelines.embeddings_store import read_embeddings, write_embeddings
from vlcurate.tests.pipelines.test_config_errors import fails
from vlcurate.tests.pipelines.test_semantic_groups import planted_vectors


def finished_output(path, vectors: np.ndarray, per_shard: int = 70) -> list[str]:
    """A clean output with COMPLETED and an embedding store of `vectors` (uid s/NNNN = row NNNN, shards
    in shuffled uid order, as a shard writer would see them); returns the uids."""
    uids = [f"s/{i:04d}" for i in range(len(vectors))]
    order = np.random.default_rng(0).permutation(len(vectors))
    for shard, start in enumerate(range(0, len(vectors), per_shard)):
        rows = order[start : start + per_shard]
        write_embeddings(str(path), f"{shard:05d}", [uids[i] for i in rows], vectors[rows])
    (path / "COMPLETED").write_text("")
    return uids


def test_the_list_is_the_planted_duplicates(tmp_path, capsys):
    vectors, truth = planted_vectors(300, 30, seed=11)
    finished_output(tmp_path / "out", vectors)
    assert main(["dedup", "--semantic", str(tmp_path / "out"), "--clusters", "4", "--no-progress"]) == 0
    folder = tmp_path / "out" / "semantic-dedup"
    assert sorted(p.name for p in folder.iterdir()) == [
        "COMPLETED",
        "centroids.npy",
        "duplicates.parquet",
        "info.json",
        "stats.json",
    ]
    table = pq.read_table(folder / "duplicates.parquet")
    assert table.column_names == ["uid", "duplicate_of", "cosine", "cluster"]
    rows = table.to_pylist()
    expected = {f"s/{c:04d}": f"s/{o:04d}" for c, o in truth.items()}
    assert [r["uid"] for r in rows] == sorted(expected)
    assert {r["uid"]: r["duplicate_of"] for r in rows} == expected
    assert all(0.95 <= r["cosine"] <= 1 and 0 <= r["cluster"] < 4 for r in rows)
    stats = json.loads((folder / "stats.json").read_text())
    assert (stats["embeddings"], stats["duplicates"], stats["kept"], stats["clusters"]) == (300, 30, 270, 4)
    assert stats["parameters"] == {
        "threshold": 0.95,
        "clusters": 4,
        "sample": 100_000,
        "keep": "smallest_uid",
        "seed": 0,
    }
    assert stats["duplicates_at_or_above"]["0.95"] == 30
    assert np.load(folder / "centroids.npy").shape == (4, 32)
    assert "30 semantic duplicates of 300 embeddings in 4 clusters" in capsys.readouterr().err
    # Two workers and another --output: the same list, byte for byte.
    argv = ["dedup", "--semantic", str(tmp_path / "out"), "--clusters", "4", "--no-progress"]
    assert main([*argv, "--workers", "2", "--output", str(tmp_path / "two")]) == 0
    assert (tmp_path / "two" / "duplicates.parquet").read_bytes() == (
        folder / "duplicates.parquet"
    ).read_bytes()
    assert (tmp_path / "two" / "centroids.npy").read_bytes() == (folder / "centroids.npy").read_bytes()


def test_the_store_reads_back_what_was_written(tmp_path):
    vectors, _ = planted_vectors(150, 10, seed=2)
    uids = finished_output(tmp_path, vectors)
    shards = list(read_embeddings(str(tmp_path)))
    assert [s for s, _, _ in shards] == ["00000", "00001", "00002"]
    got = {uid: row for _, names, matrix in shards for uid, row in zip(names, matrix)}
    assert sorted(got) == uids
    assert all(m.dtype == np.float16 and m.shape[1] == 32 for _, _, m in shards)
    assert np.array_equal(got["s/0007"], vectors[7].astype(np.float16))
    meta = pq.read_table(tmp_path / "embeddings" / "metadata" / "metadata_00001.parquet")
    assert meta.column_names == ["uid", "row"] and meta.column("row").to_pylist() == list(range(70))


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("none", [], "{d} does not exist: give the output directory of a finished vlcurate clean"),
        (
            "unfinished",
            [],
            "{d} is not a completed vlcurate output (no COMPLETED marker); its run failed or is still going. "
            "Rerun the step that writes it.",
        ),
        (
            "no_embeddings",
            [],
            "{d} was written without embeddings (no embeddings/img_emb/*.npy): rerun clean with "
            "output.embeddings: true",
        ),
        ("finished", ["--threshold", "1.5"], "--threshold must be a cosine in (0, 1], not 1.5."),
        ("finished", ["--clusters", "0"], "--clusters must be an integer >= 1, not 0."),
    ],
)
def test_bad_configuration_exits_2_before_reading(tmp_path, capsys, setup, extra, message):
    out = tmp_path / "out"
    if setup != "none":
        out.mkdir()
    if setup == "finished":
        finished_output(out, planted_vectors(50, 5, seed=1)[0])
    if setup == "no_embeddings":
        (out / "COMPLETED").write_text("")
    assert fails(capsys, ["dedup", "--semantic", str(out), *extra]) == message.format(d=out)
    assert not (out / "semantic-dedup").exists()


def test_without_semantic_and_without_rows(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert fails(capsys, ["dedup", str(out)]) == (
        "vlcurate dedup needs --semantic: exact and near duplicates are removed by `vlcurate clean` itself"
    )
    write_embeddings(str(out), "00000", [], np.zeros((0, 8)))
    (out / "COMPLETED").write_text("")
    assert main(["dedup", "--semantic", str(out), "--no-progress"]) == 0
    assert "WARNING: the embeddings of" in capsys.readouterr().err
    assert pq.read_table(out / "semantic-dedup" / "duplicates.parquet").num_rows == 0
