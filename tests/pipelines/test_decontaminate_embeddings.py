"""decontaminate.cosine inside `vlcurate clean`, with the bundled tiny CLIP: evaluation images matched by
image embedding, including mirrored copies that the perceptual hash cannot see (their hashes lie 70+ bits
from the original's, twice the radius). Each run drops exactly what a float64 brute-force comparison of
the stored embeddings with the evaluation embeddings says; a hash match wins over an embedding match of the
same image; `vlcurate hashes --embeddings` gives the same output as a folder; workers and --resume
change no byte; and wrong settings fail at start-up."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import ImageOps

from vlcurate.cli import main as cli_main
from vlcurate.pipelines.embeddings_store import read_embeddings
from vlcurate.pipelines.eval_sets import EVAL_EMBEDDINGS_FILE, read_embeddings_file, write_embeddings_file
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.synth.near_duplicates import original_bytes, varied_images
from vlcurate.tests.pipelines.helpers import kept_rows, reject_rows, run, tree_files, write_planted_tar

ORIGINALS = 12
COPIES = ("reencode_q50", "resize_0_75", "caption_reencoded")
# Mirrored originals 4 and 8 lie at tiny-CLIP cosine 0.988 and 0.995 of their originals, mirrored 0 at
# 0.950, and distinct originals at most 0.974 apart (measured on these images): 0.985 matches the first two.
COSINE = 0.985
MIRRORED = (0, 4, 8)
PLAIN = 2  # an evaluation image that is an original itself: the hash matches it
MODEL = "bundled:tiny-synth-clip"
VOLATILE = {"info.json", "report.html", "stats.json"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A tar of originals (a-NN) and their copies (b-NN-kind), and a folder of evaluation images."""
    folder = tmp_path_factory.mktemp("decon")
    originals = varied_images(ORIGINALS, seed=11)
    write_planted_tar(folder / "pairs.tar", originals, COPIES)
    evals = folder / "evals"
    evals.mkdir()
    (evals / f"a-plain-{PLAIN:02d}.jpg").write_bytes(original_bytes(originals[PLAIN]))
    for i in MIRRORED:
        (evals / f"m-mirror-{i:02d}.jpg").write_bytes(original_bytes(ImageOps.mirror(originals[i])))
    return folder


def _config(folder, out, workers: int = 1, embeddings: bool = False, **decontaminate) -> CleanConfig:
    steps: dict = {"min_side": {"min_side": 100}}  # the 0.75-size copies of 256 px originals are 192 px
    if decontaminate:
        steps["decontaminate"] = decontaminate
    return CleanConfig(
        sources=[SourceConfig(name="web", format="webdataset", paths=[str(folder / "pairs.tar")])],
        output=OutputConfig(dir=str(out), embeddings=embeddings, pairs_per_shard=5),
        # clip_filter off: the tiny CLIP scores these captions low; near_dedup off: it would take the copies
        disable=["clip_filter", "near_dedup"],
        steps=steps,
        workers=workers,
    )


@pytest.fixture(scope="module")
def stored(planted, tmp_path_factory):
    """{uid: float16 embedding} of every pair, from a run without decontaminate that stores them."""
    out = tmp_path_factory.mktemp("base") / "out"
    run(_config(planted, out, embeddings=True))
    vectors = {}
    for _, uids, matrix in read_embeddings(str(out)):
        vectors.update(zip(uids, matrix))
    assert len(vectors) == ORIGINALS * (1 + len(COPIES))  # nothing else dropped
    return vectors


def brute_force(stored: dict, ids: list[str], evals: np.ndarray) -> dict[str, tuple[str, float]]:
    """{uid: (evaluation id, cosine)}: the closest evaluation image at cosine >= COSINE (ties to the
    smallest id), every pair against every evaluation image in float64."""
    units = evals.astype(np.float64)
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    out = {}
    for uid, vector in stored.items():
        v = vector.astype(np.float64)
        cosines = units @ (v / np.linalg.norm(v))
        best = min(range(len(ids)), key=lambda i: (-cosines[i], ids[i]))
        if cosines[best] >= COSINE:
            out[uid] = (ids[best], round(float(cosines[best]), 4))
    return out


def _matches(out) -> dict[str, tuple]:
    rows = reject_rows(str(out))
    assert {r["reason"] for r in rows} <= {"eval_overlap"}
    return {
        r["uid"]: (json.loads(r["meta"])["eval_match"], json.loads(r["meta"]).get("eval_cosine"))
        for r in rows
    }


@pytest.fixture(scope="module")
def folder_run(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("folder") / "out"
    stats = run(_config(planted, out, sets=[str(planted / "evals")], cosine=COSINE))
    return out, stats


def test_a_folder_set_matches_by_hash_and_by_embedding(planted, stored, folder_run):
    out, stats = folder_run
    ids, evals, model = read_embeddings_file(str(out / EVAL_EMBEDDINGS_FILE))  # what the workers compared
    assert (ids, model) == (
        ["evals/a-plain-02.jpg", *[f"evals/m-mirror-{i:02d}.jpg" for i in MIRRORED]],
        MODEL,
    )
    by_embedding = brute_force(stored, ids, evals)
    family = {f"web/a-{PLAIN:02d}", *[f"web/b-{PLAIN:02d}-{kind}" for kind in COPIES]}
    # The mirrored 4 and 8 and their copies are found by embedding alone, mirrored 0 by neither.
    assert {uid[6:8] for uid in set(by_embedding) - family} == {"04", "08"}
    # The hash finds the plain image's family, and its match (no cosine) wins over the same image's
    # embedding match.
    expected = {**by_embedding, **{uid: ("evals/a-plain-02.jpg", None) for uid in family}}
    assert _matches(out) == expected
    totals = stats["totals"]
    assert (totals["read"], totals["rejected"]) == (ORIGINALS * (1 + len(COPIES)), len(expected))
    assert totals["read"] == totals["kept"] + totals["rejected"]
    assert stats["steps"]["decontaminate"]["dropped"] == {"eval_overlap": len(expected)}
    assert all("embedding" not in row for row in kept_rows(str(out)))  # embeddings were not asked to stay
    assert not os.path.exists(out / "embeddings")


def test_hashes_embeddings_file_gives_the_same_matches(planted, stored, folder_run, tmp_path):
    evals = planted / "evals"
    npz, tsv = tmp_path / "evals.npz", tmp_path / "evals.tsv"
    assert cli_main(["hashes", str(evals), "--out", str(tsv), "--embeddings", str(npz)]) == 0
    ids, vectors, model = read_embeddings_file(str(npz))
    folder_ids, folder_vectors, _ = read_embeddings_file(str(folder_run[0] / EVAL_EMBEDDINGS_FILE))
    assert (ids, model) == (folder_ids, MODEL) and np.array_equal(vectors, folder_vectors)
    # An .npz alone matches by embedding only: the plain image's family now carries its cosine.
    run(_config(planted, tmp_path / "npz", sets=[str(npz)], cosine=COSINE))
    assert _matches(tmp_path / "npz") == brute_force(stored, ids, vectors)
    # The hash file and the .npz together are the folder.
    run(_config(planted, tmp_path / "both", sets=[str(tsv), str(npz)], cosine=COSINE))
    assert _matches(tmp_path / "both") == _matches(folder_run[0])


@pytest.mark.slow
def test_two_workers_write_the_same_bytes(planted, folder_run, tmp_path):
    run(_config(planted, tmp_path / "two", workers=2, sets=[str(planted / "evals")], cosine=COSINE))
    one, two = tree_files(str(folder_run[0])), tree_files(str(tmp_path / "two"))
    assert {k: v for k, v in one.items() if k not in VOLATILE} == {
        k: v for k, v in two.items() if k not in VOLATILE
    }
    assert EVAL_EMBEDDINGS_FILE in one and any(k.startswith("rejects/eval-overlap-") for k in one)


def test_a_resumed_run_writes_the_same_bytes(planted, folder_run, tmp_path):
    """--resume stores the scored pairs, embeddings included, between its phases."""
    from vlcurate.pipelines.clean import run_clean

    config = _config(planted, tmp_path / "resumed", sets=[str(planted / "evals")], cosine=COSINE)
    run_clean(config, progress=False, resume=True, chunk_files=1)
    one, resumed = tree_files(str(folder_run[0])), tree_files(str(tmp_path / "resumed"))
    assert {k: v for k, v in one.items() if k not in VOLATILE} == {
        k: v for k, v in resumed.items() if k not in VOLATILE
    }


def _exit_and_error(config: CleanConfig, tmp_path, capsys) -> tuple[int, str]:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    code = cli_main(["clean", "--config", str(path), "--no-progress"])
    return code, capsys.readouterr().err.strip()


def test_bad_settings_fail_at_start_up(planted, tmp_path, capsys):
    out = tmp_path / "out"
    other = tmp_path / "other.npz"
    write_embeddings_file(str(other), ["x/1.jpg"], np.ones((1, 8), dtype=np.float16), "ViT-B-32@openai")
    tsv = tmp_path / "evals.tsv"
    assert cli_main(["hashes", str(planted / "evals"), "--out", str(tsv)]) == 0
    capsys.readouterr()
    no_clip = _config(planted, out, sets=[str(tsv)], cosine=COSINE)
    no_clip.disable = ["clip_score", *no_clip.disable]
    cases = [
        (
            _config(planted, out, sets=[str(other)], cosine=COSINE),
            f"decontaminate.sets: {other} holds embeddings of ViT-B-32@openai, but this run's CLIP model is "
            f"{MODEL}: write them again with `vlcurate hashes DIR --embeddings other.npz --clip-model {MODEL}`",
        ),
        (
            _config(planted, out, sets=[str(tsv)], cosine=COSINE),
            "decontaminate.cosine compares CLIP embeddings, but every set in decontaminate.sets is a hash "
            "file: name the folder of evaluation images, or an .npz that `vlcurate hashes DIR --embeddings "
            "FILE` writes, or set decontaminate.cosine: null",
        ),
        (
            no_clip,
            "decontaminate compares the image embeddings clip_score computes, but clip_score is disabled: "
            "remove clip_score from disable, or set decontaminate.cosine: null",
        ),
        (
            _config(planted, out, sets=[str(other)]),
            f"step 'decontaminate' in source 'web': decontaminate.sets names {other}, embeddings that only "
            "decontaminate.cosine compares: set decontaminate.cosine (e.g. 0.95), or name the set's folder or "
            "hash file instead",
        ),
        (
            _config(planted, out, sets=[str(tsv)], cosine=1.5),
            "step 'decontaminate' in source 'web': decontaminate.cosine must be a cosine in (0, 1] or null, not 1.5.",
        ),
    ]
    for config, message in cases:
        code, err = _exit_and_error(config, tmp_path, capsys)
        assert (code, err) == (2, f"vlcurate: error: {message}")
        assert not os.path.exists(out)


def test_retune_cannot_rerun_embedding_matches(planted, tmp_path):
    """Stored scores hold no embeddings: a retune of a run with decontaminate.cosine stops at start-up."""
    from vlcurate.filters.chain import build_chain
    from vlcurate.pipelines.clean_groups import check_embeddings_computed
    from vlcurate.schemas.errors import ConfigError

    config = _config(planted, tmp_path / "out", sets=[str(planted / "evals")], cosine=COSINE)
    with pytest.raises(ConfigError) as error:
        check_embeddings_computed(config, build_chain(config), scores_from=str(tmp_path / "first"))
    assert str(error.value) == (
        "vlcurate retune reuses stored CLIP scores, which hold no image embeddings, so it cannot run "
        "decontaminate.cosine: rerun vlcurate clean with the new thresholds instead"
    )


def test_an_evaluation_image_that_does_not_decode_is_named(planted, tmp_path, capsys):
    evals = tmp_path / "evals"
    evals.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (evals / name).write_bytes((planted / "evals" / "m-mirror-00.jpg").read_bytes())
    (evals / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    code = cli_main(["hashes", str(evals), "--embeddings", str(tmp_path / "e.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(
        f"vlcurate: error: decontaminate.sets: evaluation image {evals / 'broken.jpg'} does not decode ("
    )
    assert err[-1].endswith(f"); remove it from {evals}")
    assert not (tmp_path / "e.npz").exists()
