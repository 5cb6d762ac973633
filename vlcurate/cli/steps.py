"""`vlcurate steps`: the cleaning steps, in the order they run, read from the step classes
(filters/steps_table.py): kind, what each does, its reject reasons, parameters and their defaults."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vlcurate.filters.steps_table import render_steps_markdown, render_steps_text


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "steps",
        help="list the cleaning steps: what each does, its reject reasons, parameters and defaults",
        description="The cleaning steps `vlcurate clean` runs, in their order, with the parameters a "
        "config's `steps:` section takes and where each default comes from.",
    )
    p.add_argument("--markdown", action="store_true", help="as the README's Markdown table")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    sys.stdout.write(render_steps_markdown() if args.markdown else render_steps_text())
    return 0
