"""Regenerates the README's table of steps from the step classes (filters/steps_table.py).

The table sits between two marker comments in README.md; everything else in the file is left as it is.
tests/filters/test_steps_table.py fails while the committed table differs from the generated one. Usage:
    python scripts/steps_table.py          # rewrites the table in README.md
    python scripts/steps_table.py --check  # exit 1, with a note, when README.md's table is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlcurate.filters.steps_table import render_steps_markdown

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START = "<!-- steps table: generated from the step classes by `python scripts/steps_table.py` -->"
END = "<!-- end of the generated steps table -->"


def with_table(text: str, table: str) -> str:
    """`text` with what lies between the markers replaced by `table`; raises ValueError without them."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {START!r} ... {END!r} are missing")
    return text[: start + len(START)] + "\n" + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that README.md's table is current")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    updated = with_table(text, render_steps_markdown())
    if args.check:
        if updated != text:
            print("README.md's steps table is stale: run python scripts/steps_table.py", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
