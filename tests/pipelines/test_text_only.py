"""`clean` on caption-only data (image_column: null): the text chain through Beam, image steps left out."""

import json

import pytest

from vlcurate.filters.chain import build_chain
from vlcurate.pipelines.clean import run_clean
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.schemas.errors import ConfigError
from vlcurate.tests.filters.test_text_chain_10k import EXPECTED_KEPT, EXPECTED_REJECTS, WEB_CAPTIONS
from vlcurate.tests.pipelines.helpers import kept_rows


def text_source(name="web"):
    return SourceConfig(
        name=name, format="parquet", paths=[str(WEB_CAPTIONS)], caption_column="TEXT", image_column=None
    )


@pytest.mark.slow
def test_text_only_pipeline_matches_the_plain_python_text_chain(tmp_path):
    out = str(tmp_path / "out")
    stats = run_clean(
        CleanConfig(sources=[text_source()], output=OutputConfig(dir=out), disable=["dedup"]), progress=False
    )
    assert stats["sources"]["web"]["rejected_by_reason"] == EXPECTED_REJECTS
    assert stats["sources"]["web"]["kept"] == EXPECTED_KEPT
    rows = kept_rows(out)
    assert len(rows) == EXPECTED_KEPT and all(r["image_format"] is None for r in rows)
    assert "probe_image" not in stats["steps"] and "clip_filter" not in stats["steps"]


def test_mixing_text_only_and_image_sources_is_refused():
    image_source = SourceConfig(name="img", format="webdataset", paths=["x.tar"])
    with pytest.raises(ConfigError, match=r"have no images .* clean them in separate runs"):
        build_chain(CleanConfig(sources=[text_source(), image_source]))


def test_progress_lines_count_duplicates_as_rejected(tmp_path, capsys):
    # 30 captions, each written three times: 10 distinct, 20 duplicates (written by the dedup stage).
    captions = [f"a photo of a red bicycle number {i % 10} near the river" for i in range(30)]
    data = tmp_path / "captions.jsonl"
    data.write_text("".join(json.dumps({"text": c}) + "\n" for c in captions))
    source = SourceConfig(
        name="web", format="jsonl", paths=[str(data)], caption_column="text", image_column=None
    )
    stats = run_clean(CleanConfig(sources=[source], output=OutputConfig(dir=str(tmp_path / "out"))))
    assert stats["sources"]["web"]["kept"] == 10
    assert stats["sources"]["web"]["rejected_by_reason"] == {"duplicate": 20}
    last_progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[clean]")][-1]
    assert "kept 10 (33.3%)  rejected 20 (66.7%)" in last_progress and "read 30 " in last_progress
    assert sorted(p.name for p in (tmp_path / "out" / "rejects").iterdir()) == ["duplicates-00000.parquet"]
