"""The `vlcurate` command line: one module per subcommand in vlcurate/cli/, and `vlcurate steps`."""

from __future__ import annotations

import pytest

from vlcurate.cli import COMMANDS, main
from vlcurate.filters.steps_table import render_steps_markdown, render_steps_text


def test_every_subcommand_has_its_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    usage = capsys.readouterr().out
    assert "{" + ",".join(COMMANDS) + "}" in usage
    for name, module in COMMANDS.items():
        assert module.__name__ == f"vlcurate.cli.{name}"


def test_steps_prints_the_table_of_steps(capsys):
    assert main(["steps"]) == 0
    assert capsys.readouterr().out == render_steps_text()
    assert main(["steps", "--markdown"]) == 0
    assert capsys.readouterr().out == render_steps_markdown()


def test_steps_takes_no_beam_flags(capsys):
    assert main(["steps", "--runner=DirectRunner"]) == 2
    assert "unknown flag --runner" in capsys.readouterr().err
