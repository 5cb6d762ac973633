"""Runs import-linter (`lint-imports`) on vlcurate as it installs: the contracts in pyproject.toml.

pyproject.toml maps top-level folders into the package (`vlcurate.filters` = filters/, ...), and import-linter
finds a package's modules by walking its one directory, where it would see only vlcurate/__init__.py and
cli.py. So this script builds the installed layout out of symlinks in a temporary directory (the folders
under vlcurate/, as a wheel has them) and runs import-linter there. Usage:
    python scripts/lint_imports.py [--verbose] [--config PYPROJECT]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # import-linter itself depends on tomli below Python 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def package_dirs(pyproject: Path = PYPROJECT) -> dict[str, Path]:
    """The package -> folder mapping of [tool.setuptools] package-dir, as absolute paths."""
    with pyproject.open("rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {name: (pyproject.parent / folder).resolve() for name, folder in mapping.items()}


def build_layout(dest: Path, mapping: dict[str, Path]) -> None:
    """Symlinks each package's folder to where it lands when installed (vlcurate.filters -> vlcurate/filters)."""
    # Parents before children: vlcurate/ must exist (as a real directory) before vlcurate/filters goes in it.
    for name in sorted(mapping, key=lambda n: n.count(".")):
        target = dest.joinpath(*name.split("."))
        if "." not in name:
            # The root package's folder holds only its own modules; its subpackages come from elsewhere.
            target.mkdir()
            for entry in mapping[name].iterdir():
                if entry.name != "__pycache__":
                    (target / entry.name).symlink_to(entry)
        else:
            target.symlink_to(mapping[name], target_is_directory=True)


def check(pyproject: Path = PYPROJECT, verbose: bool = False) -> int:
    """lint-imports with the contracts of `pyproject` on the layout its package-dir describes; its exit code."""
    # lint_imports() is the one entry point that import-linter 2.15 (Python 3.10's lock) and 2.17 share.
    from importlinter.cli import lint_imports

    with tempfile.TemporaryDirectory(prefix="vlcurate-layout-") as tmp:
        build_layout(Path(tmp), package_dirs(pyproject))
        # import-linter puts the working directory first on sys.path: there `vlcurate` is the built layout,
        # not the editable install (whose subpackages it could not walk).
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            return lint_imports(config_filename=str(pyproject), no_cache=True, verbose=verbose)
        finally:
            os.chdir(cwd)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", type=Path, default=PYPROJECT, help="pyproject.toml (default: this repository's)"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    return check(args.config.resolve(), args.verbose)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
