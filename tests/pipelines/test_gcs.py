"""`clean` and `format` with gs:// inputs and outputs, through Beam's real GCS filesystem and client, against
a GCS emulator on 127.0.0.1 (tests/pipelines/gcs_emulator.py): no network, no credentials. What runs on
gs:// must give what runs on a local disk: the same kept and rejected pairs, the same bytes, COMPLETED
written last, a completed output refused without --overwrite."""

from __future__ import annotations

import collections
import io

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from vlcurate.pipelines.clean import run_clean
from vlcurate.pipelines.format import run_format
from vlcurate.pipelines.output import COMPLETED
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.schemas.errors import ConfigError
from vlcurate.tests.pipelines.gcs_emulator import running_emulator, use_emulator
from vlcurate.tests.pipelines.helpers import kept_rows, output_files, reject_rows, tree_files

BUCKET = "vlcurate-test"
NO_CLIP = ["clip_score", "clip_filter"]
# The clean output's files whose bytes hold the input's path: every reject's image_ref
# (`<input>.tar#<member>`) and info.json's config. Every other file is byte-identical.
PATH_FILES = {
    "info.json",
    "rejects/rejects-00000.parquet",
    "rejects/duplicates-00000.parquet",
    "rejects/near-duplicates-00000.parquet",
}


@pytest.fixture(scope="module")
def gcs(synth_dir):
    with running_emulator() as emulator, pytest.MonkeyPatch.context() as mp:
        emulator.offline = use_emulator(mp, emulator)
        emulator.create_bucket(BUCKET)
        emulator.upload_tree(synth_dir / "wds", f"gs://{BUCKET}/synth/wds")
        yield emulator


@pytest.fixture(autouse=True)
def nothing_left_the_machine(gcs):
    yield
    assert gcs.offline.attempts == []


def clean_config(paths: str, out: str) -> CleanConfig:
    """synth_config's source (tests/pipelines/helpers.py) on any path, CLIP off as in test_clean.py."""
    source = SourceConfig(name="synth", format="webdataset", paths=[paths])
    return CleanConfig(sources=[source], output=OutputConfig(dir=out), disable=NO_CLIP)


@pytest.fixture(scope="module")
def local_clean(synth_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("local") / "clean")
    stats = run_clean(clean_config(f"{synth_dir}/wds/*.tar", out), progress=False)
    return out, stats


@pytest.fixture(scope="module")
def gcs_clean(gcs):
    out = f"gs://{BUCKET}/runs/clean"
    stats = run_clean(clean_config(f"gs://{BUCKET}/synth/wds/*.tar", out), progress=False)
    return out, stats


def download(gcs, url: str, tmp_path) -> str:
    return gcs.download_tree(url, tmp_path / url.rsplit("/", 1)[-1])


def test_beam_reads_writes_copies_and_deletes_on_the_emulator_without_credentials(gcs):
    folder = f"gs://{BUCKET}/plumbing"
    with FileSystems.create(f"{folder}/a.bin") as fh:
        fh.write(b"\x00\x01" * 300_000)  # over one 256 KiB upload chunk
    FileSystems.copy([f"{folder}/a.bin"], [f"{folder}/sub/b.bin"])
    found = {m.path: m.size_in_bytes for m in FileSystems.match([f"{folder}/**"])[0].metadata_list}
    assert found == {f"{folder}/a.bin": 600_000, f"{folder}/sub/b.bin": 600_000}
    with FileSystems.open(f"{folder}/sub/b.bin") as fh:
        assert fh.read() == b"\x00\x01" * 300_000
    FileSystems.delete([f"{folder}/a.bin", f"{folder}/sub/b.bin"])
    assert gcs.blobs(folder) == {}


@pytest.mark.slow
def test_clean_on_gcs_keeps_and_rejects_what_the_local_run_does(
    gcs, synth_dir, local_clean, gcs_clean, tmp_path
):
    (local, local_stats), (remote, remote_stats) = local_clean, gcs_clean
    assert remote_stats == local_stats
    assert remote_stats["totals"] == {"read": 400, "kept": 236, "rejected": 164}
    fetched = download(gcs, remote, tmp_path)
    assert kept_rows(fetched) == kept_rows(local)
    local_prefix, remote_prefix = f"{synth_dir}/wds/", f"gs://{BUCKET}/synth/wds/"

    def on_gcs(ref):  # None: a pair without an image (image_missing)
        return ref and ref.replace(local_prefix, remote_prefix)

    expected = [{**r, "image_ref": on_gcs(r["image_ref"])} for r in reject_rows(local)]
    remote_rejects = reject_rows(fetched)
    assert remote_rejects == expected
    refs = collections.Counter(
        (r["reason"] == "image_missing", r["image_ref"] and r["image_ref"].startswith(remote_prefix))
        for r in remote_rejects
    )
    assert refs == {(False, True): 152, (True, None): 12}


@pytest.mark.slow
def test_clean_on_gcs_writes_the_local_run_s_bytes(gcs, local_clean, gcs_clean, tmp_path):
    (local, _), (remote, _) = local_clean, gcs_clean
    mine, theirs = tree_files(local), tree_files(download(gcs, remote, tmp_path))
    assert (
        sorted(theirs)
        == sorted(mine)
        == [
            COMPLETED,
            "info.json",
            "rejects/duplicates-00000.parquet",
            "rejects/near-duplicates-00000.parquet",
            "rejects/rejects-00000.parquet",
            "report.html",
            "shards/00000.parquet",
            "shards/00000.tar",
            "stats.json",
        ]
    )
    # Kept images of a remote input are carried through the writer's shuffle, local ones read back: the
    # shards are the same bytes either way.
    assert {name for name in mine if mine[name] != theirs[name]} == PATH_FILES
    for name in sorted(PATH_FILES - {"info.json"}):  # the same rows but for image_ref
        local_rows, remote_rows = (
            pq.read_table(io.BytesIO(files[name])).to_pylist() for files in (mine, theirs)
        )
        assert [{**r, "image_ref": None} for r in remote_rows] == [
            {**r, "image_ref": None} for r in local_rows
        ]


@pytest.mark.slow
def test_completed_is_the_last_object_written(gcs, gcs_clean):
    remote, _ = gcs_clean
    blobs = gcs.blobs(remote)
    assert COMPLETED in blobs and len(blobs) == 9
    # The emulator stamps each object with its creation time in ns as its generation (GCS: a
    # microsecond timestamp); publish copies the staged files in and COMPLETED after them.
    newest = max(blobs, key=lambda name: int(blobs[name].generation))
    assert newest == COMPLETED
    assert all(blobs[COMPLETED].updated >= blob.updated for blob in blobs.values())
    # Nothing of the staging directory is left beside the output.
    assert sorted(gcs.blobs(f"gs://{BUCKET}/runs")) == sorted(f"clean/{name}" for name in blobs)


@pytest.mark.slow
def test_a_completed_gcs_output_is_refused_unless_overwrite(gcs, gcs_clean):
    remote, stats = gcs_clean
    before = {name: int(blob.generation) for name, blob in gcs.blobs(remote).items()}
    with pytest.raises(ConfigError, match=r"already holds a completed run.*--overwrite"):
        run_clean(clean_config(f"gs://{BUCKET}/synth/wds/*.tar", remote), progress=False)
    assert {name: int(blob.generation) for name, blob in gcs.blobs(remote).items()} == before
    # --overwrite replaces what a run writes, with the same bytes, keeps a foreign file and leaves no
    # staging directory.
    contents = {name: gcs.read(f"{remote}/{name}") for name in before}
    gcs.write(f"{remote}/notes.txt", b"mine")
    config = clean_config(f"gs://{BUCKET}/synth/wds/*.tar", remote)
    config.output.overwrite = True
    assert run_clean(config, progress=False) == stats
    after = gcs.blobs(remote)
    assert sorted(after) == sorted([*before, "notes.txt"])
    assert gcs.read(f"{remote}/notes.txt") == b"mine"
    assert {n: gcs.read(f"{remote}/{n}") for n in before if n != "info.json"} == {
        n: data for n, data in contents.items() if n != "info.json"
    }
    assert all(int(after[name].generation) > before[name] for name in before)
    assert max(after, key=lambda name: int(after[name].generation)) == COMPLETED
    assert sorted(gcs.blobs(f"gs://{BUCKET}/runs")) == sorted(f"clean/{name}" for name in after)
    FileSystems.delete([f"{remote}/notes.txt"])  # the output as the other tests expect it


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    """Fewer pairs than synth_dir: format copies each kept image to its output one object at a time."""
    from vlcurate.synth.dataset import write_synthetic_dataset

    out = tmp_path_factory.mktemp("small-synth")
    write_synthetic_dataset(str(out), n=48, seed=3)
    return out


@pytest.mark.slow
def test_format_stage1_from_gcs_to_gcs_writes_the_local_run_s_bytes(gcs, small_synth, tmp_path):
    local_clean_dir, local_out = str(tmp_path / "clean"), str(tmp_path / "stage1")
    run_clean(clean_config(f"{small_synth}/wds/*.tar", local_clean_dir), progress=False)
    local_stats = run_format(1, [local_clean_dir], local_out, progress=False)
    gcs.upload_tree(small_synth / "wds", f"gs://{BUCKET}/small/wds")
    remote_clean, remote_out = f"gs://{BUCKET}/small/clean", f"gs://{BUCKET}/small/stage1"
    run_clean(clean_config(f"gs://{BUCKET}/small/wds/*.tar", remote_clean), progress=False)
    # The remote clean output's images travel in its shards; format reads them from gs:// and writes
    # each to gs://.../images/.
    assert run_format(1, [remote_clean], remote_out, progress=False) == local_stats
    kept = len(kept_rows(local_clean_dir))
    assert local_stats["samples"] == kept > 0
    mine, theirs = tree_files(local_out), tree_files(download(gcs, remote_out, tmp_path / "fetched"))
    assert sorted(theirs) == sorted(mine)
    assert sum(name.startswith("images/") for name in theirs) == kept
    assert {name for name in mine if mine[name] != theirs[name]} == {"info.json"}  # it names the input
    blobs = gcs.blobs(remote_out)
    assert max(blobs, key=lambda name: int(blobs[name].generation)) == COMPLETED


@pytest.mark.slow
def test_a_resumable_clean_on_gcs_writes_the_plain_run_s_bytes(gcs, gcs_clean, tmp_path):
    """`clean --resume` with its chunks on gs:// (pipelines/resume.py): the plain gs:// run's bytes, and
    its resume folder gone once the output is complete."""
    from vlcurate.pipelines.resume import resume_dir

    plain, _ = gcs_clean
    out = f"gs://{BUCKET}/runs/resumed"
    run_clean(clean_config(f"gs://{BUCKET}/synth/wds/*.tar", out), progress=False, resume=True)
    resumed, expected = (output_files(download(gcs, url, tmp_path)) for url in (out, plain))
    assert sorted(resumed) == sorted(expected)  # info.json aside: it names the output
    assert [name for name in expected if resumed[name] != expected[name]] == []
    assert gcs.blobs(resume_dir(out)) == {}
