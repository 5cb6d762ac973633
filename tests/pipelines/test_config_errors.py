"""Bad configuration fails before any data is read: exit code 2 and one line on stderr naming the fix.

Every case goes through the real command line (`vlcurate.cli.main`), as a user would meet it.
"""

from __future__ import annotations

import importlib.util
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlcurate.cli import main
from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.pipelines import sft
from vlcurate.tests.pipelines.helpers import jpeg

CAPTION = "a red bicycle leaning on a brick wall"


def fails(capsys, argv: list[str], entry=main) -> str:
    """Runs the command; asserts exit code 2 and exactly one stderr line; returns the message."""
    assert entry(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vlcurate: error: "), err
    return err.removeprefix("vlcurate: error: ").rstrip("\n")


def write_wds(path, samples: list[dict]) -> str:
    """A WebDataset tar of samples {key, caption, image (JPEG bytes or None), json (extra .json fields)}."""
    with open(path, "wb") as fh, TarShardWriter(fh) as writer:
        for s in samples:
            files = {
                "txt": s.get("caption", CAPTION).encode(),
                "json": json.dumps(s.get("json", {})).encode(),
            }
            if s.get("image") is not None:
                files["jpg"] = s["image"]
            writer.add(s["key"], files)
    return str(path)


@pytest.fixture
def wds(tmp_path) -> str:
    return write_wds(tmp_path / "pairs.tar", [{"key": "a", "image": jpeg(300, 300)}])


def clean_config(tmp_path, wds: str, extra: str = "", source_extra: str = "") -> list[str]:
    """`clean --config FILE` args for one WebDataset source plus YAML `extra` (top level) and
    `source_extra` (inside the source mapping)."""
    path = tmp_path / "c.yaml"
    source = f"{{name: s, format: webdataset, paths: [{wds}]{', ' + source_extra if source_extra else ''}}}"
    path.write_text(f"sources: [{source}]\noutput: {{dir: {tmp_path / 'out'}}}\n{extra}\n")
    return ["clean", "--config", str(path), "--no-progress"]


def no_output(tmp_path) -> bool:
    return not (tmp_path / "out").exists()


# 1. Step parameters of the wrong type (each used to reject every pair as step_error_<step>, exit 0).
@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            'min_side: {min_side: "256"}',
            "config: steps.min_side.min_side must be an integer, got the string '256' (write 256 without quotes)",
        ),
        (
            'aspect_ratio: {max_ratio: "3.0"}',
            "config: steps.aspect_ratio.max_ratio must be a number, got the string '3.0' "
            "(write 3.0 without quotes)",
        ),
        (
            "clip_filter: {threshold: high}",
            "config: steps.clip_filter.threshold must be a number, a mapping of strings to numbers, or null, "
            "got the string 'high'",
        ),
        (
            "clip_filter: {threshold: {en: high, default: 0.26}}",
            "config: steps.clip_filter.threshold must be a number, a mapping of strings to numbers, or null, "
            "got the mapping {'en': 'high', 'default': 0.26}",
        ),
        (
            "max_pixels: {max_pixels: true}",
            "config: steps.max_pixels.max_pixels must be an integer, got true",
        ),
        (
            "emoji: {count_text_symbols: 1}",
            "config: steps.emoji.count_text_symbols must be true or false, got the number 1",
        ),
        (
            "language: {allowed: en}",
            "config: steps.language.allowed must be a list of strings or null, got the string 'en' "
            "(a list: write [en])",
        ),
    ],
)
def test_a_step_parameter_of_the_wrong_type(tmp_path, wds, capsys, steps, message):
    assert fails(capsys, clean_config(tmp_path, wds, f"steps: {{{steps}}}")) == message
    assert no_output(tmp_path)


def test_a_per_source_step_parameter_of_the_wrong_type_names_the_source(tmp_path, wds, capsys):
    argv = clean_config(tmp_path, wds, source_extra='steps: {min_side: {min_side: "256"}}')
    assert fails(capsys, argv) == (
        "config: source 's' steps.min_side.min_side must be an integer, got the string '256' "
        "(write 256 without quotes)"
    )


# 2. A scalar or list where a mapping (or a list) is needed (a traceback before).
@pytest.mark.parametrize(
    ("extra", "source_extra", "message"),
    [
        (
            "steps: {min_side: 256}",
            "",
            "config: steps.min_side must be a mapping of parameters, e.g. min_side: {min_side: 256}",
        ),
        (
            "",
            "steps: {min_side: 256}",
            "config: source 's' steps.min_side must be a mapping of parameters, e.g. min_side: {min_side: 256}",
        ),
        (
            "steps: {clean_html: 1}",
            "",
            "config: steps.clean_html must be a mapping of parameters, but clean_html takes none: leave it out",
        ),
        (
            "steps: [min_side]",
            "",
            "c.yaml.steps must be a mapping, got the list ['min_side'], e.g. steps: {min_side: {min_side: 256}}",
        ),
        ("disable: 5", "", "c.yaml.disable must be a list, got the number 5, e.g. disable: [decode_check]"),
    ],
)
def test_a_scalar_where_a_mapping_or_list_is_needed(tmp_path, wds, capsys, extra, source_extra, message):
    assert fails(capsys, clean_config(tmp_path, wds, extra, source_extra)) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sources: {name: s, format: webdataset, paths: [x.tar]}",
            "c.yaml.sources must be a list, got the mapping {'name': 's', 'format': 'webdataset', 'paths': "
            "['x.tar']}, e.g. sources: [{name: web, format: webdataset, paths: [shards/*.tar]}]",
        ),
        (
            "sources: [s]",
            "c.yaml.sources[0] must be a mapping, got the string 's', "
            "e.g. sources: [{name: web, format: webdataset, paths: [shards/*.tar]}]",
        ),
    ],
)
def test_sources_of_the_wrong_shape(tmp_path, capsys, text, message):
    (tmp_path / "c.yaml").write_text(text + "\n")
    assert fails(capsys, ["clean", "--config", str(tmp_path / "c.yaml")]) == message


# 3. A disabled step whose scores another step filters on (every pair was rejected as clip_no_score).
def test_disabling_clip_score_alone_is_refused(tmp_path, wds, capsys):
    argv = [*clean_config(tmp_path, wds), "--disable", "clip_score"]
    assert fails(capsys, argv) == (
        "--disable clip_score also needs clip_filter disabled (it filters on CLIP scores): "
        "use --disable clip_score,clip_filter"
    )
    assert no_output(tmp_path)


def test_disabling_clip_score_in_the_config_shows_the_config_form(tmp_path, wds, capsys):
    assert fails(capsys, clean_config(tmp_path, wds, "disable: [clip_score]")) == (
        "disable: [clip_score] also needs clip_filter disabled (it filters on CLIP scores): "
        "use disable: [clip_score, clip_filter]"
    )


def test_disabling_probe_image_names_every_size_filter(tmp_path, wds, capsys):
    argv = [*clean_config(tmp_path, wds), "--disable", "probe_image"]
    assert fails(capsys, argv) == (
        "--disable probe_image also needs max_pixels, min_side, aspect_ratio disabled (they filter on the "
        "image size): use --disable probe_image,max_pixels,min_side,aspect_ratio"
    )


def test_shards_that_carry_clip_scores_stand_in_for_clip_score(tmp_path, capsys):
    # Re-tuning the CLIP threshold on vlcurate's own shards (they keep every score) needs no GPU step.
    wds = write_wds(
        tmp_path / "scored.tar",
        [
            {"key": "a", "image": jpeg(300, 300), "json": {"scores": {"clip": 0.9}}},
            {"key": "b", "image": jpeg(300, 300), "json": {"scores": {"clip": 0.1}}},
        ],
    )
    argv = [*clean_config(tmp_path, wds, "steps: {clip_filter: {threshold: 0.5}}"), "--disable", "clip_score"]
    assert main(argv) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["totals"]["kept"] == 1
    assert stats["sources"]["s"]["rejected_by_reason"] == {"clip_low_score": 1}


# 4. Flags that neither vlcurate nor Beam knows (Beam dropped them with a log line).
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["clean", "--input", "x.tar", "--output", "o", "--worker", "2"],
            "unknown flag --worker (did you mean --workers?)",
        ),
        (["clean", "--output", "o", "--runer=FnApiRunner"], "unknown flag --runer (did you mean --runner?)"),
        (
            ["format", "--stage", "2", "--input", "x", "--output", "o", "--worker=2"],
            "unknown flag --worker (did you mean --workers?)",
        ),
        (["sft", "--config", "c.yaml", "--seeds", "3"], "unknown flag --seeds (did you mean --seed?)"),
        (["synth", "--out", "o", "--nn", "3"], "unknown flag --nn (did you mean --n?)"),
        (["clean", "--output", "o", "stray"], "unexpected argument 'stray'"),
        (
            ["clean", "--output", "o", "--direct_num_workers=two"],
            "argument --direct_num_workers: invalid int value: 'two'",
        ),
    ],
)
def test_unknown_flags_are_refused(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert fails(capsys, argv) == message
    assert not (tmp_path / "o").exists()


def test_python_m_sft_refuses_them_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fails(capsys, ["--config", "c.yaml", "--worker", "2"], entry=sft.main) == (
        "unknown flag --worker (did you mean --workers?)"
    )


@pytest.mark.parametrize(
    "flags",
    [["--direct_num_workers=1"], ["--runner", "FnApiRunner"], ["--runner=PortableRunner", "--not_beams=1"]],
)
def test_flags_beam_knows_and_any_flag_for_a_remote_runner_pass(capsys, flags):
    # The next check down the line fails: the flags themselves were accepted.
    assert (
        fails(capsys, ["clean", "--output", "o", *flags])
        == "give --config FILE, or --input PATHS and --output DIR."
    )


def test_flags_are_not_abbreviated(tmp_path, capsys):
    assert fails(capsys, ["clean", "--input", "x.tar", "--output", "o", "--overwr"]) == (
        "unknown flag --overwr (did you mean --overwrite?)"
    )


# 5. Remote paths or Dataflow without the Beam extra they need (a 30-line traceback before).
def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def without_gcp(monkeypatch):
    """The gcp extra as absent (the locked environment has it): its client modules do not import."""
    from vlcurate.pipelines import options

    missing = {"google.cloud.storage", options.DATAFLOW_CLIENT}
    importable = options._importable
    monkeypatch.setattr(options, "_importable", lambda module: module not in missing and importable(module))


gcp = pytest.mark.usefixtures("without_gcp")


@gcp
@pytest.mark.parametrize(
    "argv",
    [
        ["clean", "--input", "gs://bucket/pairs/*.tar", "--output", "out"],
        ["clean", "--input", "x.tar", "--output", "gs://bucket/out"],
        ["clean", "--input", "x.tar", "--output", "out", "--temp_location=gs://bucket/tmp"],
        ["format", "--stage", "1", "--input", "gs://bucket/clean", "--output", "out"],
    ],
)
def test_gs_paths_need_the_gcp_extra(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    assert fails(capsys, argv) == "gs:// paths need Beam's gcp extra: pip install 'vlcurate[gcp]'"


@gcp
def test_a_gs_image_root_in_the_config_needs_the_gcp_extra(tmp_path, wds, capsys):
    argv = clean_config(tmp_path, wds, source_extra="image_root: gs://bucket/images")
    assert fails(capsys, argv) == "gs:// paths need Beam's gcp extra: pip install 'vlcurate[gcp]'"


@gcp
@pytest.mark.parametrize("runner", ["--runner=DataflowRunner", "--runner=dataflow"])
def test_dataflow_needs_the_gcp_extra(tmp_path, wds, capsys, runner):
    name = runner.split("=")[1]
    assert fails(capsys, ["clean", "--input", wds, "--output", str(tmp_path / "out"), runner]) == (
        f"--runner={name} needs Beam's gcp extra: pip install 'vlcurate[gcp]'"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("s3://bucket/pairs.tar", "s3:// paths need Beam's aws extra: pip install 'apache-beam[aws]'"),
        (
            "azfs://account/container/pairs.tar",
            "azfs:// paths need Beam's azure extra: pip install 'apache-beam[azure]'",
        ),
    ],
)
def test_s3_and_azure_paths_name_their_extra(tmp_path, capsys, path, message):
    module = "boto3" if path.startswith("s3") else "azure.storage.blob"
    if _installed(module):
        pytest.skip(f"{module} is installed")
    assert fails(capsys, ["clean", "--input", path, "--output", str(tmp_path / "out")]) == message


# 6. Outputs and inputs that are not what they should be.
def test_an_output_that_is_a_file(tmp_path, wds, capsys):
    target = tmp_path / "out.txt"
    target.write_text("not a folder")
    argv = ["clean", "--input", wds, "--output", str(target), "--disable", "clip_score,clip_filter"]
    assert fails(capsys, argv) == f"--output {target} is a file; give a directory"
    assert target.read_text() == "not a folder"


def _parquet(path, rows: int = 2) -> None:
    table = pa.table(
        {"key": [f"k{i}" for i in range(rows)], "caption": [CAPTION] * rows, "image": [jpeg(300, 300)] * rows}
    )
    pq.write_table(table, path)


def test_an_empty_parquet_input(tmp_path, capsys):
    (tmp_path / "x.parquet").write_bytes(b"")
    argv = ["clean", "--input", str(tmp_path / "x.parquet"), "--output", str(tmp_path / "out")]
    assert fails(capsys, argv) == (
        f"source 'input': {tmp_path / 'x.parquet'} is not a Parquet file (0 bytes): Parquet file size is 0 "
        "bytes. Replace it, or check the source's `paths` and `format`."
    )


def test_no_readable_parquet_file_among_several(tmp_path, capsys):
    (tmp_path / "a.parquet").write_bytes(b"")
    _parquet(tmp_path / "b.parquet")
    (tmp_path / "b.parquet").write_bytes((tmp_path / "b.parquet").read_bytes()[:100])  # truncated
    argv = ["clean", "--input", str(tmp_path / "*.parquet"), "--output", str(tmp_path / "out")]
    message = fails(capsys, argv)
    assert message.startswith(f"source 'input': {tmp_path / 'a.parquet'} is not a Parquet file (0 bytes): ")
    assert message.endswith(
        "; none of its 2 files can be read. Replace them, or check the source's `paths` and `format`."
    )


def test_a_broken_first_parquet_file_is_a_reject_when_another_shows_the_columns(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"PAR1 not really")
    _parquet(tmp_path / "b.parquet")
    out = tmp_path / "out"
    argv = ["clean", "--input", str(tmp_path / "*.parquet"), "--output", str(out), "--no-progress"]
    assert main([*argv, "--disable", "clip_score,clip_filter,dedup,near_dedup"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["totals"]["read"], stats["totals"]["kept"], stats["totals"]["rejected"]) == (3, 2, 1)
    assert stats["sources"]["input"]["rejected_by_reason"] == {"file_unreadable": 1}


def test_the_column_check_still_names_a_missing_column(tmp_path, capsys):
    _parquet(tmp_path / "b.parquet")
    argv = ["clean", "--config", str(tmp_path / "c.yaml")]
    (tmp_path / "c.yaml").write_text(
        f"sources: [{{name: s, format: parquet, paths: [{tmp_path / 'b.parquet'}], caption_column: TEXT}}]\n"
    )
    assert fails(capsys, argv) == (
        f"source 's': caption_column 'TEXT' is not in {tmp_path / 'b.parquet'} (columns: key, caption, image). "
        "Set `caption_column` in the source's config."
    )


def test_format_stage_2_given_a_directory(tmp_path, capsys):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "vqa.jsonl").write_text("{}\n")
    argv = ["format", "--stage", "2", "--input", f"{tasks}/", "--output", str(tmp_path / "out")]
    assert fails(capsys, argv) == (
        f"--input {tasks} is a directory; stage 2 reads JSONL files: pass '{tasks}/*.jsonl'"
    )
    assert no_output(tmp_path)


def test_a_multi_line_yaml_error_is_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("sources: [unclosed\n")
    message = fails(capsys, ["clean", "--config", str(tmp_path / "c.yaml")])
    assert message.startswith(f"config file '{tmp_path / 'c.yaml'}' is not valid YAML: ")
