"""`clean` on caption-only data (image_column: null): the text chain through Beam, image steps left out."""

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
