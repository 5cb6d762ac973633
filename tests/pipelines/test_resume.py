"""`clean --resume` (pipelines/resume.py): a run killed half way and resumed writes what an uninterrupted
run writes, byte for byte; a resume folder made for other inputs or another config is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from vlcurate.cli import main
from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.pipelines.output import COMPLETED
from vlcurate.pipelines.resume import MANIFEST, _open_plan, resume_dir
from vlcurate.schemas.errors import ConfigError
from vlcurate.synth.dataset import write_synthetic_dataset
from vlcurate.tests.pipelines.helpers import output_files

PAIRS, TARS = 240, 6
KILL_TIMEOUT = 600


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> str:
    """The synthetic set (planted defects, duplicates across the whole set) cut into TARS tars, so that
    `--chunk-files 1` makes TARS chunks, and its clean.yaml reading them."""
    root = tmp_path_factory.mktemp("resume-input")
    write_synthetic_dataset(str(root), n=PAIRS, seed=7)
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(root / "wds" / "synth-00000.tar") as tar:
        for member in tar.getmembers():
            key, ext = member.name.rsplit(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    os.makedirs(root / "tars")
    keys = list(samples)
    per_tar = -(-len(keys) // TARS)
    for t in range(TARS):
        with open(root / "tars" / f"part-{t:02d}.tar", "wb") as fh, TarShardWriter(fh) as writer:
            for key in keys[t * per_tar : (t + 1) * per_tar]:
                writer.add(key, samples[key])
    text = (root / "clean.yaml").read_text()
    assert "wds/*.tar" in text
    (root / "clean.yaml").write_text(text.replace("wds/*.tar", "tars/*.tar"))
    return str(root / "clean.yaml")


def _done_chunks(out: str) -> int:
    chunks = os.path.join(resume_dir(out), "chunks")
    if not os.path.isdir(chunks):
        return 0
    return sum(os.path.exists(os.path.join(chunks, c, MANIFEST)) for c in os.listdir(chunks))


@pytest.mark.slow
def test_a_run_killed_half_way_resumes_to_the_uninterrupted_output(config_path, tmp_path, capsys):
    whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
    assert main(["clean", "--config", config_path, "--output", whole, "--no-progress"]) == 0

    command = [sys.executable, "-m", "vlcurate.cli", "clean", "--config", config_path, "--output", resumed]
    command += ["--no-progress", "--resume", "--chunk-files", "1"]
    run = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KILL_TIMEOUT
    while _done_chunks(resumed) < TARS // 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before half of its chunks were done"
    os.killpg(run.pid, signal.SIGKILL)  # the launcher and any worker it started
    run.wait()
    done = _done_chunks(resumed)
    assert TARS // 2 <= done < TARS
    assert not os.path.exists(os.path.join(resumed, COMPLETED))
    capsys.readouterr()

    # Resumed with two workers: chunks and the final merge stay deterministic across worker counts.
    argv = ["clean", "--config", config_path, "--output", resumed, "--no-progress", "--resume"]
    assert main([*argv, "--chunk-files", "1", "--workers", "2"]) == 0
    assert f"resuming: {done} of {TARS} chunks already done" in capsys.readouterr().err
    one, other = output_files(whole), output_files(resumed)
    assert sorted(one) == sorted(other)
    assert [name for name in one if one[name] != other[name]] == []
    assert not os.path.exists(resume_dir(resumed))  # gone once the output is complete


def test_a_resume_folder_of_another_config_or_other_files_is_refused(tmp_path):
    folder = str(tmp_path / ".out.resume")
    plan = {"config_sha256": "a" * 64, "files": [["s", "/in/0.tar", 10]], "chunks": [[[0, "/in/0.tar"]]]}
    _open_plan(folder, plan)
    _open_plan(folder, dict(plan))  # the same plan: goes on
    with pytest.raises(ConfigError, match=r"with different config; remove that folder to start over"):
        _open_plan(folder, {**plan, "config_sha256": "b" * 64})
    with pytest.raises(ConfigError, match=r"with different input files or chunks"):
        _open_plan(folder, {**plan, "files": [["s", "/in/0.tar", 11]]})


def test_chunk_files_needs_resume(config_path, tmp_path, capsys):
    argv = ["clean", "--config", config_path, "--output", str(tmp_path / "o"), "--chunk-files", "2"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "vlcurate: error: --chunk-files takes a number >= 1, and only with --resume."
    )
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.slow
def test_a_resumable_run_shows_progress_per_chunk_and_for_the_merge(config_path, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["clean", "--config", config_path, "--output", out, "--resume", "--chunk-files", "3"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[clean")]
    # Each part prints lines of its own: the two chunks (passed: every step up to the scores), then the
    # final pipeline, which counts every pair the chunks stored as read.
    parts = list(dict.fromkeys(line.split("]")[0] + "]" for line in lines if "read" in line))
    assert parts == ["[clean chunk 1/2]", "[clean chunk 2/2]", "[clean]"]
    assert f"read {PAIRS:,} of " in lines[-1]
    assert "chunk 2 of 2 done" in err
