"""semantic_dedup inside `vlcurate clean`, with the bundled tiny CLIP's image embeddings, on planted
re-encoded and resized copies of varied photo-like images (synth/near_duplicates.py): the step drops
exactly what a brute-force comparison of the stored embeddings says, the embedding store holds the kept
pairs' unit vectors, `vlcurate dedup --semantic` lists the same duplicates, workers change no byte, and a
config that asks for embeddings without CLIP fails at start-up."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vlcurate.cli import main as cli_main
from vlcurate.filters.chain import build_chain
from vlcurate.pipelines.clean_groups import embedding_sources
from vlcurate.pipelines.embeddings_store import read_embeddings
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.synth.near_duplicates import varied_images
from vlcurate.tests.pipelines.helpers import kept_rows, reject_rows, run, tree_files, write_planted_tar

pytest.importorskip("faiss")

ORIGINALS = 12
# Copies whose tiny-CLIP image embeddings lie at cosine >= 0.997 of their original's, while distinct
# originals stay below 0.975 (measured on these images): 0.99 separates them. Half-size copies and crops
# move some embeddings by more (down to 0.93), so they are left out of this ground truth.
COPIES = ("reencode_q50", "resize_0_75", "caption_reencoded")
THRESHOLD = 0.99
VOLATILE = {"info.json", "report.html", "stats.json"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """One tar: originals (keys a-NN) and their copies (keys b-NN-kind), each under a caption of its own."""
    folder = tmp_path_factory.mktemp("semantic")
    originals = varied_images(ORIGINALS, seed=11)
    write_planted_tar(folder / "pairs.tar", originals, COPIES)
    return folder


def _config(folder, out, semantic: bool = True, embeddings: bool = False, workers: int = 1) -> CleanConfig:
    source = SourceConfig(name="web", format="webdataset", paths=[str(folder / "pairs.tar")])
    steps: dict = {"min_side": {"min_side": 100}}  # the 0.75-size copies of 256 px originals are 192 px
    if semantic:
        steps["semantic_dedup"] = {"threshold": THRESHOLD}
    return CleanConfig(
        sources=[source],
        output=OutputConfig(dir=str(out), embeddings=embeddings, pairs_per_shard=5),
        # clip_filter off: the tiny CLIP scores these captions low; near_dedup off: it would take the copies
        disable=["clip_filter", "near_dedup"],
        enable=["semantic_dedup"] if semantic else [],
        steps=steps,
        workers=workers,
    )


def _store(out) -> tuple[list[str], np.ndarray]:
    """Every uid and vector of an output's embedding store, in shard order."""
    uids, vectors = [], []
    for _, shard_uids, matrix in read_embeddings(str(out)):
        uids += shard_uids
        vectors.append(matrix)
    return uids, np.concatenate(vectors)


def brute_force(uids: list[str], vectors: np.ndarray, threshold: float) -> dict[str, str]:
    """{loser: winner}: a pair loses to the smallest uid before it whose image lies at cosine >= threshold
    (near_dedup's rule with keep: smallest_uid), every pair compared with every other in float64."""
    order = sorted(range(len(uids)), key=lambda i: uids[i])
    units = vectors[order].astype(np.float64)
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    cosines = units @ units.T
    losers = {}
    for i in range(len(order)):
        earlier = np.nonzero(cosines[i, :i] >= threshold)[0]
        if len(earlier):
            losers[uids[order[i]]] = uids[order[earlier[0]]]
    return losers


@pytest.fixture(scope="module")
def every_embedding(planted, tmp_path_factory):
    """A run without semantic_dedup that stores every kept pair's embedding: the ground truth's input."""
    out = tmp_path_factory.mktemp("base") / "out"
    run(_config(planted, out, semantic=False, embeddings=True))
    return out


@pytest.fixture(scope="module")
def semantic_run(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("sem") / "out"
    stats = run(_config(planted, out, embeddings=True))
    return out, stats


def test_the_step_drops_what_the_stored_embeddings_say(every_embedding, semantic_run):
    uids, vectors = _store(every_embedding)
    assert sorted(uids) == sorted(r["uid"] for r in kept_rows(str(every_embedding)))  # nothing else dropped
    expected = brute_force(uids, vectors, THRESHOLD)
    # The threshold finds exactly the planted copies, each losing to its original.
    assert expected == {
        f"web/b-{i:02d}-{kind}": f"web/a-{i:02d}" for i in range(ORIGINALS) for kind in COPIES
    }
    out, stats = semantic_run
    rejects = reject_rows(str(out))
    assert {r["uid"]: (r["reason"], json.loads(r["meta"])["semantic_duplicate_of"]) for r in rejects} == {
        uid: ("semantic_duplicate", winner) for uid, winner in expected.items()
    }
    kept = sorted(r["uid"] for r in kept_rows(str(out)))
    assert kept == sorted(set(uids) - set(expected))
    totals = stats["totals"]
    assert totals["read"] == ORIGINALS * (1 + len(COPIES)) == totals["kept"] + totals["rejected"]
    assert (totals["kept"], totals["rejected"]) == (len(kept), len(rejects))
    assert stats["steps"]["semantic_dedup"]["dropped"] == {"semantic_duplicate": len(expected)}
    assert all(0.99 <= json.loads(r["meta"])["semantic_cosine"] <= 1.0 for r in rejects)


def test_the_store_holds_the_kept_pairs_unit_vectors_in_shard_order(semantic_run):
    out, _ = semantic_run
    uids, vectors = _store(out)
    shards = json.loads((out / "info.json").read_text())["shards"]
    assert len(shards) > 1  # several shards, each with its own files
    in_shards = [r["uid"] for r in kept_rows(str(out))]  # shard by shard, each in its rows' order
    assert uids == in_shards
    assert vectors.dtype == np.float16 and np.allclose(
        np.linalg.norm(vectors.astype(np.float32), axis=1), 1, atol=2e-3
    )
    for shard in shards:  # info.json lists the files; COMPLETED covers them (written before it)
        assert os.path.exists(out / shard["embeddings"]) and os.path.exists(
            out / shard["embeddings_metadata"]
        )
        assert shard["embedded"] == shard["pairs"]
    # The embedding stays out of the shards' metadata and the reject rows.
    assert not any("embedding" in row for row in kept_rows(str(out)) + reject_rows(str(out)))
    members = tree_files(str(out))
    assert not any(b"embedding" in data for name, data in members.items() if name.startswith("shards/"))


def test_dedup_semantic_lists_what_the_step_drops(every_embedding, semantic_run, tmp_path):
    """One piece of logic, two entry points: the command on the store of a run without the step lists
    the duplicates the step drops in a run with it."""
    import pyarrow.parquet as pq

    listed = tmp_path / "list"
    args = [
        "dedup",
        "--semantic",
        str(every_embedding),
        "--threshold",
        str(THRESHOLD),
        "--output",
        str(listed),
    ]
    assert cli_main([*args, "--no-progress"]) == 0
    rows = pq.read_table(listed / "duplicates.parquet").to_pylist()
    out, _ = semantic_run
    dropped = {r["uid"]: json.loads(r["meta"]) for r in reject_rows(str(out))}
    assert {r["uid"]: r["duplicate_of"] for r in rows} == {
        u: m["semantic_duplicate_of"] for u, m in dropped.items()
    }
    assert {r["uid"]: round(r["cosine"], 4) for r in rows} == {
        u: m["semantic_cosine"] for u, m in dropped.items()
    }


@pytest.mark.slow
def test_two_workers_write_the_same_bytes_and_no_store_when_not_asked(planted, semantic_run, tmp_path):
    """--workers 2 gives the shards and rejects of --workers 1 byte for byte; without output.embeddings
    the embeddings are dropped before the writer, which writes no store and the same shards."""
    out, _ = semantic_run
    run(_config(planted, tmp_path / "out2", embeddings=False, workers=2))
    one = {k: v for k, v in tree_files(str(out)).items() if k not in VOLATILE}
    two = {k: v for k, v in tree_files(str(tmp_path / "out2")).items() if k not in VOLATILE}
    assert {k: v for k, v in one.items() if not k.startswith("embeddings/")} == two
    assert any(k.startswith("embeddings/") for k in one)
    assert any(k.startswith("rejects/semantic-duplicates-") for k in two)


def test_embeddings_are_computed_only_when_needed(planted, tmp_path):
    """The cheap path: no step compares embeddings and no store is asked for, so no model batch
    computes one (tests/pipelines/test_clip_embeddings.py: none is then carried)."""
    default = _config(planted, tmp_path / "out", semantic=False)
    chain = build_chain(default)
    assert "semantic_dedup" not in chain.group_steps and embedding_sources(default, chain) == []
    assert embedding_sources(
        _config(planted, tmp_path / "o", semantic=True), build_chain(_config(planted, tmp_path / "o"))
    ) == ["web"]
    stored = _config(planted, tmp_path / "o", semantic=False, embeddings=True)
    assert embedding_sources(stored, build_chain(stored)) == ["web"]


def _exit_and_error(config: CleanConfig, tmp_path, capsys, *flags: str) -> tuple[int, str]:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    code = cli_main(["clean", "--config", str(path), "--no-progress", *flags])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "semantic, embeddings, flags, message",
    [
        (
            True,
            False,
            (),
            "semantic_dedup compares the image embeddings clip_score computes, but clip_score is disabled: "
            "remove clip_score from disable, or take semantic_dedup out of enable",
        ),
        (
            False,
            True,
            ("--disable", "clip_score"),
            "output.embeddings stores the image embeddings clip_score computes, but clip_score is disabled: "
            "remove clip_score from --disable, or set output.embeddings: false",
        ),
    ],
)
def test_embeddings_without_clip_fail_at_start_up(
    planted, tmp_path, capsys, semantic, embeddings, flags, message
):
    config = _config(planted, tmp_path / "out", semantic=semantic, embeddings=embeddings)
    if not flags:
        config.disable = ["clip_score", *config.disable]
    code, err = _exit_and_error(config, tmp_path, capsys, *flags)
    assert (code, err) == (2, f"vlcurate: error: {message}")
    assert not os.path.exists(tmp_path / "out")


def test_parameters_of_a_step_left_off_fail_at_start_up(planted, tmp_path, capsys):
    config = _config(planted, tmp_path / "out")
    config.enable = []
    code, err = _exit_and_error(config, tmp_path, capsys)
    assert (code, err) == (
        2,
        "vlcurate: error: steps.semantic_dedup is set, but semantic_dedup is off by default: add "
        "`enable: [semantic_dedup]` to the config (or --enable semantic_dedup), or remove its parameters",
    )
    # The command line's switch turns it on.
    code, err = _exit_and_error(
        config, tmp_path, capsys, "--enable", "semantic_dedup", "--disable", "clip_score"
    )
    assert code == 2 and "semantic_dedup compares the image embeddings" in err


def test_retune_cannot_rerun_what_needs_embeddings(planted, tmp_path):
    """Stored scores hold no embeddings: a retune of a run with semantic_dedup stops at start-up."""
    from vlcurate.pipelines.clean_groups import check_embeddings_computed
    from vlcurate.schemas.errors import ConfigError

    config = _config(planted, tmp_path / "out")
    with pytest.raises(ConfigError, match="retune reuses stored CLIP scores, which hold no image embeddings"):
        check_embeddings_computed(config, build_chain(config), scores_from=str(tmp_path / "first"))
    plain = _config(planted, tmp_path / "out", semantic=False)
    check_embeddings_computed(plain, build_chain(plain), scores_from=str(tmp_path / "first"))


@pytest.mark.parametrize("semantic, wanted", [(True, "semantic_dedup"), (False, "output.embeddings")])
def test_embeddings_of_two_clip_models_fail_at_start_up(planted, tmp_path, capsys, semantic, wanted):
    """English and Chinese captions may be scored by different CLIP models, but their image embeddings
    share no space: comparing or storing them together is refused before any data is read."""
    config = _config(planted, tmp_path / "out", semantic=semantic, embeddings=True)
    config.steps["clip_score"] = {"models": {"default": "bundled:tiny-synth-clip", "zh": "ViT-B-32@openai"}}
    code, err = _exit_and_error(config, tmp_path, capsys)
    assert (code, err) == (
        2,
        f"vlcurate: error: {wanted} needs the image embeddings of one CLIP model, but clip_score uses "
        "ViT-B-32@openai, bundled:tiny-synth-clip: name one model in steps.clip_score.models for every "
        f"language and source, or turn {wanted} off",
    )
    assert not os.path.exists(tmp_path / "out")
