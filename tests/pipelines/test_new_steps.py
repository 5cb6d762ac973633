"""A new step is one module plus one line: the step CONTRIBUTING.md shows, written as a module of its own
and added with one call of the public registration API (the line a built-in step adds to BUILTIN_STEPS),
runs in the Beam-free step engine and in a clean job, with exact counts, and is checked at start-up."""

import json
import re
from pathlib import Path

import pytest

from vlcurate.filters.chain import build_chain
from vlcurate.filters.registry import register_step, step_names, unregister_step
from vlcurate.filters.runner import StepRunner
from vlcurate.filters.steps_table import steps_table
from vlcurate.pipelines.clean import run_clean
from vlcurate.schemas.batch import batched
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair
from vlcurate.tests.pipelines.helpers import reject_rows

CONTRIBUTING = Path(__file__).resolve().parents[2] / "CONTRIBUTING.md"
# 4 captions with more than 2 digits, 1 with exactly 2, 3 with none; all pass the built-in text steps.
CAPTIONS = [
    "a red bicycle leaning on a brick wall",
    "spare part number 4417 for a blue tractor",
    "a call us now at 555 0199 poster",
    "two cats 12 asleep on a green sofa",
    "a wooden boat on a calm lake at dawn",
    "route 66 sign 1926 painted on a barn",
    "an old map of the harbour from 1802",
    "a bowl of ripe lemons on a kitchen table",
]


@pytest.fixture
def max_digits(tmp_path, monkeypatch):
    """The step of CONTRIBUTING.md as module `toy_digits` (one new module), in the table after `length`."""
    code = re.search(r"```python\n(.*?)```", CONTRIBUTING.read_text(encoding="utf-8"), re.S).group(1)
    (tmp_path / "toy_digits.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_step("max_digits", "toy_digits:MaxDigits", after="length")  # the one line
    yield "max_digits"
    unregister_step("max_digits")


def _config(tmp_path, **kwargs) -> CleanConfig:
    data = tmp_path / "captions.jsonl"
    data.write_text(
        "".join(json.dumps({"key": f"{i:02d}", "text": c}) + "\n" for i, c in enumerate(CAPTIONS))
    )
    source = SourceConfig(
        name="web",
        format="jsonl",
        paths=[str(data)],
        caption_column="text",
        key_column="key",
        image_column=None,
    )
    return CleanConfig(sources=[source], output=OutputConfig(dir=str(tmp_path / "out")), **kwargs)


def test_the_new_step_runs_where_its_line_puts_it(max_digits, tmp_path):
    names = step_names()
    assert names[names.index("length") + 1] == max_digits
    [row] = [row for row in steps_table() if row.name == max_digits]
    assert row.kind == "text" and row.reasons == ("too_many_digits",)
    assert row.description.startswith("Drops captions with more than `max_digits` digits")
    chain = build_chain(_config(tmp_path, steps={max_digits: {"max_digits": 2}}))
    assert chain.names[chain.names.index("length") + 1] == max_digits
    assert chain.params()["web"][max_digits] == {"max_digits": 2}


def test_the_new_step_in_the_beam_free_engine(max_digits, tmp_path):
    chain = build_chain(_config(tmp_path, steps={max_digits: {"max_digits": 2}}))
    runner = StepRunner(chain.by_source)
    pairs = [Pair(uid=f"web/{i}", source="web", caption=c, caption_raw=c) for i, c in enumerate(CAPTIONS)]
    kept = [p for batch in batched(pairs) for p in runner.run(batch)]
    assert [p.caption for p in kept] == [CAPTIONS[i] for i in (0, 3, 4, 7)]
    assert runner.stats.step_seen[(max_digits, "web")] == 8
    assert dict(runner.stats.step_dropped) == {(max_digits, "web", "too_many_digits"): 4}
    assert [p.scores["n_digits"] for p in pairs] == [0, 4, 7, 2, 0, 6, 4, 0]


def test_the_new_step_in_a_clean_job(max_digits, tmp_path):
    config = _config(tmp_path, steps={max_digits: {"max_digits": 2}})
    stats = run_clean(config, progress=False)
    assert stats["sources"]["web"]["rejected_by_reason"] == {"too_many_digits": 4}
    assert stats["steps"][max_digits] == {
        "by_source": {"web": {"changed": 0, "dropped": {"too_many_digits": 4}, "seen": 8}},
        "changed": 0,
        "dropped": {"too_many_digits": 4},
        "seen": 8,
    }
    rejects = reject_rows(config.output.dir)
    assert sorted(r["uid"] for r in rejects) == ["web/01", "web/02", "web/05", "web/06"]
    assert {r["reason"] for r in rejects} == {"too_many_digits"}
    assert sorted(r["scores"]["n_digits"] for r in rejects) == [4, 4, 6, 7]


def test_a_wrong_parameter_type_fails_at_start_up_in_one_line(max_digits, tmp_path):
    config = _config(tmp_path, steps={max_digits: {"max_digits": "2"}})
    with pytest.raises(ConfigError) as err:
        run_clean(config, progress=False)
    message = str(err.value)
    assert message == (
        "config: steps.max_digits.max_digits must be an integer, got the string '2' (write 2 without quotes)"
    )
    assert "\n" not in message and not (tmp_path / "out").exists()
