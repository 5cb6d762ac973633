import pytest

from vlcurate.filters.chain import build_chain
from vlcurate.schemas.config import CleanConfig, SourceConfig, load_clean_config
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.sft_config import load_sft_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_top_level_key_names_valid_keys_and_suggests(tmp_path):
    path = write(tmp_path, "sources: []\noutptu: {dir: x}\n")
    with pytest.raises(ConfigError) as err:
        load_clean_config(path)
    message = str(err.value)
    assert "unknown key 'outptu'" in message
    assert "Did you mean 'output'?" in message
    assert "Valid: audit, disable, enable, max_reject_share, output, sources, steps, workers." in message


def test_unknown_source_key_is_reported_with_its_place(tmp_path):
    path = write(tmp_path, "sources:\n  - {name: a, format: parquet, paths: [x.parquet], caption_col: t}\n")
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'caption_col' in c.yaml.sources\[0\]\. "
        r"Did you mean 'caption_column'\?",
    ):
        load_clean_config(path)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    path = write(
        tmp_path, "sources:\n  - {name: a, format: webdataset, paths: [wds/*.tar]}\noutput: {dir: out}\n"
    )
    config = load_clean_config(path)
    assert config.sources[0].paths == [str(tmp_path / "wds" / "*.tar")]
    assert config.output.dir == str(tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sources:\n  - {name: a, format: tar, paths: [x]}\n",
            r"unknown input format 'tar'.*Valid: csv, jsonl",
        ),
        ("sources:\n  - {name: a, format: csv}\n", r"missing the required key 'paths'"),
        (
            "sources:\n  - {name: a, format: csv, paths: [x]}\n  - {name: a, format: csv, paths: [y]}\n",
            r"source names must be unique; repeated: a",
        ),
        ("sources:\n  - {name: a, format: csv, paths: [x]}\nworkers: two\n", r"workers must be an integer"),
        ("sources:\n  - {name: a, format: csv, paths: [x]}\naudit: 1\n", r"audit must be true or false"),
        ("sources: []\n", r"no sources"),
    ],
)
def test_bad_values_fail_with_the_fix(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_clean_config(write(tmp_path, text))


def config_with(**kwargs):
    return CleanConfig(sources=[SourceConfig(name="a", format="csv", paths=["x"])], **kwargs)


def test_unknown_step_name_suggests_the_close_one():
    with pytest.raises(
        ConfigError, match=r"unknown step 'probe_imag' in steps\. Did you mean 'probe_image'\?"
    ):
        build_chain(config_with(steps={"probe_imag": {}}))


def test_unknown_step_parameter_lists_valid_ones():
    with pytest.raises(
        ConfigError, match=r"unknown parameter of step 'decode_check' 'draft' .*Valid: draft_size"
    ):
        build_chain(config_with(steps={"decode_check": {"draft": 3}}))


def test_disable_removes_the_step_and_rejects_unknown_names():
    chain = build_chain(config_with(disable=["decode_check", "dedup", "near_dedup"]))
    assert "decode_check" not in chain.names and chain.group_steps == ["keep_longest", "decontaminate"]
    # near_dedup compares the hash decode_check takes: turning that off alone is refused with the fix
    with pytest.raises(ConfigError, match=r"disable: \[decode_check\] also needs near_dedup disabled"):
        build_chain(config_with(disable=["decode_check"]))
    with pytest.raises(ConfigError, match="unknown step to disable 'nope'"):
        build_chain(config_with(disable=["nope"]))


def test_per_source_parameters_override_global_ones():
    config = CleanConfig(
        sources=[
            SourceConfig(name="a", format="csv", paths=["x"]),
            SourceConfig(name="b", format="csv", paths=["y"], steps={"decode_check": {"draft_size": 128}}),
        ],
        steps={"decode_check": {"draft_size": 32}},
    )
    params = build_chain(config).params()
    assert params["a"]["decode_check"] == {"draft_size": 32, "image_hash": True, "threads": 2}
    assert params["b"]["decode_check"] == {"draft_size": 128, "image_hash": True, "threads": 2}


def test_clip_decode_threads_must_be_positive():
    with pytest.raises(ConfigError, match="decode_threads must be >= 1"):
        build_chain(config_with(steps={"clip_score": {"decode_threads": 0}}))
    chain = build_chain(config_with(steps={"clip_score": {"decode_threads": 3}}))
    assert chain.params()["a"]["clip_score"]["decode_threads"] == 3


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"batch_size": 0}, r"clip_score.batch_size must be >= 1"),
        ({"precision": "fp16"}, r"clip_score.precision must be bf16 or fp8, not 'fp16'"),
        # Checked against the constructor's annotations (filters/registry.py) before it runs.
        ({"overlap": "no"}, r"clip_score.overlap must be true or false, got the string 'no' \(write false"),
        ({"share_model": 1}, r"clip_score.share_model must be true or false, got the number 1"),
    ],
)
def test_bad_clip_score_parameters_name_the_valid_values(params, expected):
    with pytest.raises(ConfigError, match=expected):
        build_chain(config_with(steps={"clip_score": params}))


@pytest.mark.parametrize("load", [load_clean_config, load_sft_config], ids=["clean", "sft"])
def test_a_missing_or_malformed_config_file_is_a_config_error_naming_it(tmp_path, load):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist\."):
        load(missing)
    broken = write(tmp_path, "sources: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config file '.*c\.yaml' is not valid YAML: "):
        load(broken)
