"""The jobs on Beam's portable runner, with workers on two other "hosts" (tests/pipelines/worker_hosts.py:
network namespaces where they can be made, else processes on loopback), each in a working directory of
its own: `--runner=PortableRunner --job_endpoint=embed --environment_type=EXTERNAL`. The launcher passes
relative paths from its own working directory; the outputs must be byte-identical to the in-process
run's, and nothing may land in a worker's working directory."""

from __future__ import annotations

import os

import pytest

from vlcurate.cli import main
from vlcurate.synth.dataset import write_synthetic_dataset
from vlcurate.synth.sft_inputs import write_demo_sft_inputs
from vlcurate.tests.pipelines.helpers import output_files
from vlcurate.tests.pipelines.worker_hosts import WorkerHosts

PAIRS, SCENES = 80, 12


def _jobs(label: str, extra: list[str]) -> list[list[str]]:
    """clean, format stage 1 and sft, every path relative to the launcher's working directory."""
    quiet = ["--no-progress", *extra]
    return [
        ["clean", "--config", "synth/clean.yaml", "--output", f"{label}/clean", *quiet],
        ["format", "--stage", "1", "--input", f"{label}/clean", "--output", f"{label}/stage1", *quiet],
        ["sft", "--config", "sft-inputs/sft.yaml", "--output", f"{label}/sft", *quiet],
    ]


@pytest.mark.slow
def test_jobs_on_two_worker_hosts_match_the_in_process_run(tmp_path, monkeypatch):
    launch = tmp_path / "launch"
    write_synthetic_dataset(str(launch / "synth"), n=PAIRS, seed=7)
    sft_config = write_demo_sft_inputs(str(launch / "sft-inputs"), seed=0, n=SCENES)
    assert os.path.basename(sft_config) == "sft.yaml"
    monkeypatch.chdir(launch)
    for argv in _jobs("in-process", []):
        assert main(argv) == 0, argv

    with WorkerHosts(str(tmp_path / "hosts")) as hosts:
        portable = [
            "--runner=PortableRunner",
            "--job_endpoint=embed",
            "--environment_type=EXTERNAL",
            f"--environment_config={hosts.endpoint}",
            "--workers",
            "2",
        ]
        for argv in _jobs("portable", portable):
            assert main(argv) == 0, argv
        started = hosts.started

    assert sorted(set(started.values())) == [0, 1], started  # both hosts ran workers
    for job in ("clean", "stage1", "sft"):
        local, portable_files = output_files(f"in-process/{job}"), output_files(f"portable/{job}")
        assert sorted(portable_files) == sorted(local), job
        assert [name for name in local if local[name] != portable_files[name]] == [], job
    for workdir in hosts.workdirs:  # a relative path resolved on a worker would have landed here
        assert os.listdir(workdir) == [], workdir


def test_relative_paths_are_absolute_before_the_job_starts(tmp_path, monkeypatch):
    from vlcurate.pipelines.clean import default_config, make_paths_absolute
    from vlcurate.schemas.model_spec import absolute_model_spec

    monkeypatch.chdir(tmp_path)
    config = default_config(["in/*.tar"], "out", "webdataset")
    config.sources[0].image_root = "~/images"
    make_paths_absolute(config)
    assert config.sources[0].paths == [str(tmp_path / "in" / "*.tar")]
    assert config.sources[0].image_root == os.path.expanduser("~/images")
    assert config.output.dir == str(tmp_path / "out")
    remote = default_config(["gs://bucket/in/*.tar"], "gs://bucket/out", "webdataset")
    make_paths_absolute(remote)
    assert (remote.sources[0].paths, remote.output.dir) == (["gs://bucket/in/*.tar"], "gs://bucket/out")

    (tmp_path / "ckpt.pt").write_bytes(b"")
    assert absolute_model_spec("local-dir:weights/clip") == f"local-dir:{tmp_path}/weights/clip"
    assert absolute_model_spec("qwen-vl:ckpt") == f"qwen-vl:{tmp_path}/ckpt"
    assert absolute_model_spec("ViT-B-32@ckpt.pt") == f"ViT-B-32@{tmp_path}/ckpt.pt"
    assert absolute_model_spec("ViT-B-32@models/b32.pt") == f"ViT-B-32@{tmp_path}/models/b32.pt"
    for unchanged in ("ViT-L-14@openai", "bundled:tiny-synth-clip", "hf-hub:org/repo", "local-dir:/abs/x"):
        assert absolute_model_spec(unchanged) == unchanged
