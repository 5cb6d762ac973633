"""The lock files agree with pyproject.toml, so scripts/setup.sh installs what the ranges promise."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pathlib
import re

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SUPPORTED = ("3.10", "3.11", "3.12")


def _newer_than_lock():
    return _script("newer_than_lock")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins(version: str) -> dict[str, str]:
    """name -> version locked for this Python on Linux x86_64 (markers evaluated): the reading the worker
    images' versions come from (scripts/docker_versions.py)."""
    lock = (ROOT / "requirements" / f"lock-py{version}.txt").read_text()
    return _script("docker_versions").locked_pins(lock, version)


def test_a_lock_file_per_supported_python():
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]) == SpecifierSet(">=3.10,<3.13")
    for version in SUPPORTED:
        assert (ROOT / "requirements" / f"lock-py{version}.txt").is_file()


@pytest.mark.parametrize("version", SUPPORTED)
def test_lock_satisfies_every_range(version):
    pins = _pins(version)
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    requirements = project["dependencies"] + extras["dev"] + extras["semantic"]
    requirements += PYPROJECT["build-system"]["requires"]
    for text in requirements:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{name} is missing from lock-py{version}.txt: run scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"lock-py{version}.txt pins {name}=={pins[name]} outside {req.specifier}: run scripts/lock.sh"
        )


def test_every_range_has_a_tested_upper_bound():
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        assert any(s.operator in ("<", "<=") for s in req.specifier), f"{req.name} has no upper bound"


def test_newer_than_lock_names_packages_whose_version_moved():
    module = _newer_than_lock()
    pins = module.locked_versions(
        "# header\napache-beam==2.77.0 ; python_full_version < '3.11'\napache-beam==2.78.0 ; "
        "python_full_version >= '3.11'\n    # via vlcurate\nPyYAML==6.0.4\nnot-installed-pkg==1.0\n"
    )
    assert pins == {"apache-beam": {"2.77.0", "2.78.0"}, "pyyaml": {"6.0.4"}, "not-installed-pkg": {"1.0"}}
    pyyaml, pytest_version = importlib.metadata.version("pyyaml"), importlib.metadata.version("pytest")
    assert module.differences({"pyyaml": {"0.0.1"}, "pytest": {pytest_version}}) == [
        f"pyyaml {pyyaml} (locked 0.0.1)"
    ]
