"""The Dataflow jobs of `clean`, `format`, `sft` and `check`, built by Beam's DataflowRunner from the
command line of docs/dataflow.md and never submitted; offline, against the GCS emulator of
tests/pipelines/gcs_emulator.py (no network, no credentials: how, in its docstring). Nothing of Beam is
stubbed: the runner's `run_pipeline` is wrapped (the original runs) only to keep the runner, which holds
the built job.

Beam has two ways not to submit, and each test uses one:

- `--dry_run=True` (TestOptions; apache_beam/runners/dataflow/dataflow_runner.py, run_pipeline): the
  pipeline is translated for Dataflow (its overrides, combiner packing, the Docker environment) into the
  pipeline proto and an `apiclient.Job`, and run_pipeline returns before it makes a Dataflow API client.
  Nothing is staged and the job has no worker environment yet: the dry run shows the graph only.
- `--template_location=gs://...` (a classic template): the whole submission path of
  apiclient.DataflowApplicationClient.create_job runs, staging the workers' files and the pipeline proto
  to --staging_location and building the job's environment (worker pool, machine type, service options,
  container image, staged packages); create_job then writes the job as JSON to the template location and
  returns before `submit_job_description`, the one call to the Dataflow API. The worker settings are read
  from that JSON and the staged files from the emulator.

What no offline test can show: the Dataflow service's own checks of a job (quotas, the GPU type in the
region, pulling the image) and a job's run on Dataflow workers.
"""

from __future__ import annotations

import json
import sys

import pytest
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow import dataflow_runner

from vlcurate.cli import main
from vlcurate.pipelines.clean import run_clean
from vlcurate.pipelines.format import run_format
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.tests.pipelines.gcs_emulator import running_emulator, use_emulator
from vlcurate.tests.test_lock import _pins

BUCKET = "vlcurate-test"  # Beam's validator wants 3+ characters, else it tries to make a default bucket
PROJECT = "vlcurate-test"
REGISTRY = f"us-central1-docker.pkg.dev/{PROJECT}/vlcurate"
GPU_IMAGE, CPU_IMAGE = f"{REGISTRY}/vlcurate-gpu:test", f"{REGISTRY}/vlcurate-cpu:test"
ACCELERATOR = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver;use_nvidia_mps"
# docs/dataflow.md's command lines (kept the same): clean on GPU workers, the other jobs on CPU workers.
GPU_FLAGS = [
    f"--sdk_container_image={GPU_IMAGE}",
    "--experiments=use_runner_v2",
    f"--dataflow_service_options={ACCELERATOR}",
    "--machine_type=g2-standard-8",
    "--disk_size_gb=50",
    "--max_num_workers=20",
]
CPU_FLAGS = [
    f"--sdk_container_image={CPU_IMAGE}",
    "--experiments=use_runner_v2",
    "--machine_type=n2-standard-8",
    "--max_num_workers=20",
]
JOBS = ("clean", "format", "sft", "check")
# Steps each job must have (top-level transform names).
REQUIRED_STEPS = {
    "clean": {
        "Read[input]",
        "Steps",
        "ClipScore",
        "StepsAfterClip",
        "Group[dedup]",
        "WriteShards",
        "WriteRejects",
        "MergeStats",
        "FinalizeRun",
    },
    "format": {"Read[clean]", "Stage1", "GroupTask", "Pack", "WriteSamples", "WritePacks", "WriteRejects"},
    "sft": {"Read", "Build", "WriteShards", "WriteImages", "WriteRejects", "MergeStats", "FinalizeRun"},
    "check": {"Read", "CheckPacks", "CheckImages", "Losses", "Flag", "AllFindings", "FinalizeRun"},
}
# FinalizeRun writes COMPLETED. Every other step feeds its side inputs, which a runner computes in full
# before it runs: on Dataflow too, COMPLETED comes after every file. These alone do not feed it: its own
# one-element input, and check's placeholders for a run without a model.
NOT_BEFORE_COMPLETED = {
    "clean": {"Finalize", "FinalizeRun"},
    "format": {"Finalize", "FinalizeRun"},
    "sft": {"Finalize", "FinalizeRun"},
    "check": {"Finalize", "FinalizeRun", "NoModel", "NoModelFindings"},
}


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The emulator with what the four jobs read: WebDataset tars (clean), a completed clean output (format,
    sft) and a completed stage-1 output (check, with its model), both made by local runs."""
    from vlcurate.synth.dataset import write_synthetic_dataset

    local = tmp_path_factory.mktemp("dataflow-inputs")
    write_synthetic_dataset(str(local / "synth"), n=24, seed=5)
    clean = CleanConfig(
        sources=[SourceConfig(name="synth", format="webdataset", paths=[str(local / "synth/wds/*.tar")])],
        output=OutputConfig(dir=str(local / "clean")),
        disable=["clip_score", "clip_filter"],
    )
    run_clean(clean, progress=False)
    run_format(1, [str(local / "clean")], str(local / "stage1"), progress=False)
    (local / "sft.yaml").write_text(
        f"inputs:\n  - {{name: cleaned, kind: pairs, paths: ['gs://{BUCKET}/inputs/clean']}}\n"
        f"output: {{dir: 'gs://{BUCKET}/unused'}}\n"
    )
    with running_emulator() as emulator, pytest.MonkeyPatch.context() as mp:
        emulator.offline = use_emulator(mp, emulator)
        emulator.create_bucket(BUCKET)
        for name in ("synth/wds", "clean", "stage1"):
            emulator.upload_tree(local / name, f"gs://{BUCKET}/inputs/{name}")
        emulator.sft_config = str(local / "sft.yaml")
        yield emulator


@pytest.fixture
def runners(gcs, monkeypatch):
    """Every DataflowRunner that ran a pipeline, in order (run_pipeline itself runs unchanged)."""
    built = []
    original = dataflow_runner.DataflowRunner.run_pipeline

    def keep_runner(self, pipeline, options, pipeline_proto=None):
        result = original(self, pipeline, options, pipeline_proto)
        built.append(self)
        return result

    monkeypatch.setattr(dataflow_runner.DataflowRunner, "run_pipeline", keep_runner)
    yield built
    assert gcs.offline.attempts == []


def command(job: str, folder: str, sft_config: str) -> list[str]:
    """The job's command line (docs/dataflow.md): output gs://BUCKET/<folder>/<job>, staging and temporary
    files beside it."""
    inputs, out = f"gs://{BUCKET}/inputs", f"gs://{BUCKET}/{folder}/{job}"
    args = {
        "clean": ["clean", "--input", f"{inputs}/synth/wds/*.tar", "--output", out, "--no-progress"],
        "format": ["format", "--stage", "1", "--input", f"{inputs}/clean", "--output", out, "--no-progress"],
        "sft": ["sft", "--config", sft_config, "--output", out, "--no-progress"],
        "check": ["check", "--input", f"{inputs}/stage1", "--output", out],
    }[job]
    return [
        *args,
        "--runner=DataflowRunner",
        f"--project={PROJECT}",
        "--region=us-central1",
        f"--job_name=vlcurate-{job}",
        f"--temp_location=gs://{BUCKET}/{folder}/tmp-{job}",
        f"--staging_location=gs://{BUCKET}/{folder}/staging-{job}",
        *(GPU_FLAGS if job == "clean" else CPU_FLAGS),
    ]


def top_level(pipeline: beam_runner_api_pb2.Pipeline) -> dict[str, str]:
    """{transform id: the name of the top-level step it belongs to} for every transform."""
    transforms = pipeline.components.transforms
    (root,) = pipeline.root_transform_ids
    owner: dict[str, str] = {}

    def mark(transform_id: str, name: str) -> None:
        owner[transform_id] = name
        for sub in transforms[transform_id].subtransforms:
            mark(sub, name)

    for step in transforms[root].subtransforms:
        mark(step, transforms[step].unique_name)
    return owner


def step_names(pipeline: beam_runner_api_pb2.Pipeline) -> list[str]:
    transforms = pipeline.components.transforms
    (root,) = pipeline.root_transform_ids
    return [transforms[step].unique_name for step in transforms[root].subtransforms]


def steps_feeding_side_inputs(pipeline: beam_runner_api_pb2.Pipeline, step: str) -> set[str]:
    """The top-level steps upstream of the side inputs of the transform named `step`."""
    transforms, owner = pipeline.components.transforms, top_level(pipeline)
    producer = {
        pcoll: tid for tid, t in transforms.items() if not t.subtransforms for pcoll in t.outputs.values()
    }
    (target,) = [tid for tid in owner if transforms[tid].unique_name == step]
    pardo = beam_runner_api_pb2.ParDoPayload.FromString(transforms[target].spec.payload)
    assert pardo.side_inputs, f"{step} has no side inputs"
    pending = [producer[transforms[target].inputs[tag]] for tag in pardo.side_inputs]
    seen: set[str] = set()
    while pending:
        tid = pending.pop()
        if tid not in seen:
            seen.add(tid)
            pending += [producer[p] for p in transforms[tid].inputs.values() if p in producer]
    return {owner[tid] for tid in seen}


def docker_images(pipeline: beam_runner_api_pb2.Pipeline) -> list[str]:
    images = []
    for environment in pipeline.components.environments.values():
        assert environment.urn == "beam:env:docker:v1"
        images.append(beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image)
    return images


@pytest.mark.slow
@pytest.mark.parametrize("job", JOBS)
def test_dry_run_builds_the_job_graph(gcs, runners, job):
    assert main([*command(job, "dry", gcs.sft_config), "--dry_run=True"]) == 0
    (runner,) = runners
    built = runner.job
    assert built.proto.name == f"vlcurate-{job}"
    assert built.proto.type_.name == "JOB_TYPE_BATCH"
    names = step_names(built.proto_pipeline)
    assert REQUIRED_STEPS[job] <= set(names), REQUIRED_STEPS[job] - set(names)
    assert (
        set(names) - steps_feeding_side_inputs(built.proto_pipeline, "FinalizeRun")
        == NOT_BEFORE_COMPLETED[job]
    )
    # Every step runs in the one worker image named, none in Beam's default image.
    assert docker_images(built.proto_pipeline) == [GPU_IMAGE if job == "clean" else CPU_IMAGE]
    assert gcs.blobs(f"gs://{BUCKET}/dry") == {}  # nothing staged, no output started


@pytest.mark.slow
@pytest.mark.parametrize("job", JOBS)
def test_template_holds_the_worker_settings_and_the_staged_files(gcs, runners, job):
    template = f"gs://{BUCKET}/templates/{job}.json"
    assert main([*command(job, "template", gcs.sft_config), f"--template_location={template}"]) == 0
    spec = json.loads(gcs.read(template))
    assert spec["name"] == f"vlcurate-{job}"
    assert spec["type"] == "JOB_TYPE_BATCH"
    environment = spec["environment"]
    assert "use_runner_v2" in environment["experiments"]
    (pool,) = environment["workerPools"]
    image = GPU_IMAGE if job == "clean" else CPU_IMAGE
    assert pool["workerHarnessContainerImage"] == image
    assert [c["containerImage"] for c in pool["sdkHarnessContainerImages"]] == [image]
    assert pool["autoscalingSettings"] == {"maxNumWorkers": 20}
    if job == "clean":
        assert environment["serviceOptions"] == [ACCELERATOR]
        assert (pool["machineType"], pool["diskSizeGb"]) == ("g2-standard-8", 50)
    else:
        assert "serviceOptions" not in environment
        assert (pool["machineType"], pool.get("diskSizeGb")) == ("n2-standard-8", None)
    # The image holds every requirement (docs/dataflow.md), so Beam stages no requirements.txt, no SDK
    # tarball and no package: only its list of the launcher's packages and the pickled main session.
    staging = f"storage.googleapis.com/{BUCKET}/template/staging-{job}/vlcurate-{job}."
    staged = {p["name"]: p["location"] for p in pool["packages"]}
    assert sorted(staged) == ["pickled_main_session", "submission_environment_dependencies.txt"]
    assert all(location.startswith(staging) for location in staged.values())
    launcher = gcs.read("gs://" + staged["submission_environment_dependencies.txt"].split("/", 1)[1])
    beam = _pins(f"{sys.version_info[0]}.{sys.version_info[1]}")["apache-beam"]
    assert f"apache-beam=={beam}" in launcher.decode()  # the launcher runs the lock's Beam
    # The staged pipeline has the job's steps, every one in the image.
    pipeline_url = environment["sdkPipelineOptions"]["options"]["pipelineUrl"]
    assert pipeline_url.startswith(f"gs://{BUCKET}/template/staging-{job}/vlcurate-{job}.")
    pipeline = beam_runner_api_pb2.Pipeline.FromString(gcs.read(pipeline_url))
    assert REQUIRED_STEPS[job] <= set(step_names(pipeline))
    assert docker_images(pipeline) == [image]
    folder = pipeline_url.rsplit("/", 1)[0]
    assert sorted(gcs.blobs(f"gs://{BUCKET}/template/staging-{job}")) == sorted(
        f"{folder.rsplit('/', 1)[1]}/{name}" for name in [*staged, "pipeline.pb"]
    )
    # No output was started, no temporary file written.
    assert gcs.blobs(f"gs://{BUCKET}/template/{job}") == gcs.blobs(f"gs://{BUCKET}/template/tmp-{job}") == {}
