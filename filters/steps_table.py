"""The table of steps, read from the step classes: what `vlcurate steps` prints and what the README's step
table is generated from (scripts/steps_table.py; tests/filters/test_steps_table.py checks they agree).

Per step, in the order the steps run: its name, kind, one-line description (the first line of the class
docstring), reject reasons, and its parameters with their defaults and where each default comes from
(`Step.default_sources`; a parameter not named there is a vlcurate default). `python -m
vlcurate.filters.steps_table` prints the Markdown table.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any

from vlcurate.filters.base import Step
from vlcurate.filters.registry import off_by_default, parameters, step_class, step_names

VLCURATE_DEFAULT = "vlcurate default"
REQUIRED = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class ParameterRow:
    name: str
    default: Any  # REQUIRED when the parameter has none
    source: str  # where the default comes from; VLCURATE_DEFAULT when no source is documented


@dataclasses.dataclass(frozen=True)
class StepRow:
    name: str
    kind: str  # "text", "image", "model" (runs on survivors) or "group" (compares pairs)
    description: str
    reasons: tuple[str, ...]
    parameters: tuple[ParameterRow, ...]
    off_by_default: bool = False  # runs only where a config's `enable:` names it


def described(row: StepRow) -> str:
    """The row's description, with how to turn it on when it is off by default."""
    return (
        f"{row.description} Off by default: `enable: [{row.name}]`."
        if row.off_by_default
        else row.description
    )


def step_kind(cls: type[Step]) -> str:
    if cls.groups_records:
        return "group"
    if cls.runs_on_survivors:
        return "model"
    return "image" if cls.needs_image else "text"


def step_row(name: str) -> StepRow:
    """One step's row, from its class."""
    cls = step_class(name)
    doc = inspect.getdoc(cls) or ""
    params = tuple(
        ParameterRow(key, param.default, cls.default_sources.get(key, VLCURATE_DEFAULT))
        for key, param in parameters(name).items()
    )
    description = doc.split("\n", 1)[0].strip()
    return StepRow(name, step_kind(cls), description, tuple(cls.reasons), params, off_by_default(name))


def steps_table(names: Sequence[str] | None = None) -> list[StepRow]:
    """The rows of `names` (default: every step of the table, in the order the steps run)."""
    return [step_row(name) for name in (step_names() if names is None else names)]


def yaml_value(value: Any) -> str:
    """A default as a config file would write it: null, true/false, [a, b]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _parameter(param: ParameterRow) -> str:
    if param.default is REQUIRED:
        return f"{param.name} (required)"
    return f"{param.name}: {yaml_value(param.default)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the Markdown cell


def render_steps_markdown(rows: Sequence[StepRow] | None = None) -> str:
    """The steps as a Markdown table (the README's), one row per step, ending in a newline."""
    lines = [
        "| step | what it does | reject reasons | parameters: default (where it comes from) |",
        "|---|---|---|---|",
    ]
    for row in steps_table() if rows is None else rows:
        reasons = ", ".join(f"`{r}`" for r in row.reasons)
        params = "<br>".join(f"`{_parameter(p)}` ({p.source})" for p in row.parameters)
        cells = [f"`{row.name}`", described(row), reasons or "none", params or "none"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_steps_text(rows: Sequence[StepRow] | None = None) -> str:
    """The steps as plain text for a terminal: a block per step, in the order the steps run."""
    blocks = []
    for row in steps_table() if rows is None else rows:
        lines = [f"{row.name} ({row.kind}): {described(row)}"]
        if row.reasons:
            lines.append(f"  rejects: {', '.join(row.reasons)}")
        lines.extend(f"  {_parameter(p)}  ({p.source})" for p in row.parameters)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


if __name__ == "__main__":
    print(render_steps_markdown(), end="")
