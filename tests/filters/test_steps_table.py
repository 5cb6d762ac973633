"""The table of steps read from the classes (filters/steps_table.py), and the README's copy of it."""

import importlib.util
from pathlib import Path

from vlcurate.filters.chain import DEFAULT_CHAIN
from vlcurate.filters.steps_table import (
    VLCURATE_DEFAULT,
    render_steps_markdown,
    render_steps_text,
    steps_table,
    yaml_value,
)

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("steps_table_script", ROOT / "scripts" / "steps_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_table_is_the_generated_one():
    script = _script()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert script.with_table(text, render_steps_markdown()) == text, (
        "README.md's steps table differs from the step classes: run python scripts/steps_table.py"
    )


def test_rows_come_from_the_classes_in_table_order():
    rows = {row.name: row for row in steps_table()}
    assert list(rows) == list(DEFAULT_CHAIN)
    min_side = rows["min_side"]
    assert min_side.kind == "image" and min_side.reasons == ("too_small",)
    assert min_side.description == "Rejects images whose shorter side is below `min_side` pixels."
    [param] = min_side.parameters
    assert (param.name, param.default, param.source) == (
        "min_side",
        200,
        "DataComp's basic filter, Gadre et al. 2023",
    )
    assert [(p.name, p.source) for p in rows["normalize_caption"].parameters] == [
        ("fix_unicode", VLCURATE_DEFAULT),
        ("fix_width", VLCURATE_DEFAULT),
    ]
    assert [rows[n].kind for n in ("length", "clip_score", "clip_filter", "dedup")] == [
        "text",
        "model",
        "image",
        "group",
    ]


def test_markdown_and_text_renderings():
    markdown = render_steps_markdown(steps_table(["min_side", "clean_html"])).splitlines()
    assert markdown[2] == (
        "| `min_side` | Rejects images whose shorter side is below `min_side` pixels. | `too_small` | "
        "`min_side: 200` (DataComp's basic filter, Gadre et al. 2023) |"
    )
    assert markdown[3].endswith("| none | none |")
    text = render_steps_text(steps_table(["language"]))
    assert text.startswith("language (text): Tags `lang`")
    assert "  candidates: [en, zh]  (vlcurate default: what the `script` step lets through)\n" in text


def test_defaults_are_written_as_in_a_config_file():
    assert [yaml_value(v) for v in (None, True, 3.0, ("en", "zh"), {"en": 0.28})] == [
        "null",
        "true",
        "3.0",
        "[en, zh]",
        "{en: 0.28}",
    ]
