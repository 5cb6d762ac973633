"""The `vlcurate` command line: one module per subcommand in vlcurate/cli/, and `vlcurate steps`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vlcurate.cli import COMMANDS, main
from vlcurate.filters.steps_table import render_steps_markdown, render_steps_text

WEB_CAPTIONS = Path(__file__).resolve().parent / "data" / "web_captions_10k.parquet"


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


def test_the_command_line_loads_neither_torch_nor_scipy_until_a_model_runs(tmp_path):
    """A caption-only `clean` (and every command's start) must not pay for torch and scipy: ~300 MB and a
    second per process. Beam's RunInference module imports both, so it is imported where a model runs."""
    config = tmp_path / "clean.yaml"
    config.write_text(
        "sources:\n"
        f"  - {{name: web, format: parquet, paths: ['{WEB_CAPTIONS}'], caption_column: TEXT, image_column: null}}\n"
        f"output: {{dir: '{tmp_path / 'out'}'}}\n"
    )
    script = (
        "import sys\n"
        "import vlcurate.cli\n"
        "at_start = sorted(m for m in ('torch', 'scipy') if m in sys.modules)\n"
        f"rc = vlcurate.cli.main(['clean', '--config', {str(config)!r}, '--no-progress'])\n"
        "print(rc, at_start, sorted(m for m in ('torch', 'scipy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0 [] []"
