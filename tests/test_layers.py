"""The layer rules (docs/architecture.md, "Layers") hold: import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "lint_imports.py"


def package_dirs() -> dict[str, Path]:
    """scripts/lint_imports.py's reading of pyproject.toml's package-dir (a script, not an importable module)."""
    spec = importlib.util.spec_from_file_location("lint_imports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.package_dirs()


def lint(pyproject: Path) -> subprocess.CompletedProcess:
    # A process of its own: import-linter must find the layout the script builds, not the `vlcurate`
    # this process has imported.
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--config", str(pyproject)], capture_output=True, text=True, timeout=300
    )


def test_the_package_keeps_its_contracts():
    result = lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_violation_breaks_them(tmp_path):
    # The repository's folders, but filters/ holds one more module that breaks every rule it can.
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    folders = {os.path.relpath(path, ROOT) for path in package_dirs().values()}  # pyproject's package-dir
    for folder in sorted(folders - {"filters"}):
        (tmp_path / folder).symlink_to(ROOT / folder, target_is_directory=True)
    filters = tmp_path / "filters"
    filters.mkdir()
    for entry in (ROOT / "filters").glob("*.py"):
        (filters / entry.name).symlink_to(entry)
    (filters / "planted.py").write_text(
        "from vlcurate.formatters import stage1  # a sibling\n"
        "\n\ndef lazy():\n    import torch  # inside a function counts too\n\n    return torch, stage1\n"
    )
    result = lint(tmp_path / "pyproject.toml")
    assert result.returncode != 0
    assert "vlcurate.filters.planted -> vlcurate.formatters.stage1" in result.stdout
    assert "vlcurate.filters.planted -> torch" in result.stdout
    assert "2 broken" in result.stdout
