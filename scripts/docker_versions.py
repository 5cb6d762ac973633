"""The versions the Dataflow worker images are built with, read from the lock file and pyproject.toml.

docker/Dockerfile.gpu and docker/Dockerfile.cpu hold them as ARG defaults (Python, Beam, torch, torchvision
and, for the GPU image, CUDA), so that an image installs what the tests passed with. The Python is the newest
that pyproject.toml's requires-python allows; the rest comes from requirements/lock-py<that Python>.txt.
Usage:
    python scripts/docker_versions.py            # NAME=VALUE lines (usable as --build-arg values)
    python scripts/docker_versions.py --check    # exit 1, naming the mismatch, when a Dockerfile disagrees
    python scripts/docker_versions.py --write    # rewrites the ARG default lines of both Dockerfiles
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.specifiers import SpecifierSet

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10's lock holds tomli (import-linter depends on it there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FIX = "python scripts/docker_versions.py --write"
CPU_ARGS = ("PYTHON_VERSION", "BEAM_VERSION", "TORCH_VERSION", "TORCHVISION_VERSION")
# Dockerfile (relative to the repository root) -> the ARGs it must set; only the GPU image needs CUDA's.
DOCKERFILES = {
    "docker/Dockerfile.gpu": (*CPU_ARGS, "CUDA_VERSION"),
    "docker/Dockerfile.cpu": CPU_ARGS,
}
# Where each value comes from, for messages.
SOURCES = {"PYTHON_VERSION": "pyproject.toml's requires-python"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.*))?$")
CUDA_SUFFIX = re.compile(r"^nvidia-[a-z0-9-]+-cu(\d+)$")


class VersionError(Exception):
    """The lock or pyproject.toml cannot give a version, or a Dockerfile has no line to hold it."""


def newest_python(requires_python: str) -> str:
    """The newest Python 3 minor release `requires_python` allows: '>=3.10,<3.13' -> '3.12'."""
    spec = SpecifierSet(requires_python)
    allowed = [minor for minor in range(100) if spec.contains(f"3.{minor}.0")]
    if not allowed:
        raise VersionError(f"requires-python {requires_python!r} allows no Python 3 release")
    return f"3.{max(allowed)}"


def locked_pins(lock_text: str, python: str) -> dict[str, str]:
    """name -> version a universal lock installs for CPython `python` on Linux x86_64, the platform of
    Dataflow's workers (markers evaluated; names normalized as pip does)."""
    env = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "extra": "",
    }
    pins = {}
    for line in lock_text.splitlines():
        match = PIN.match(line)
        if match and (match[3] is None or Marker(match[3]).evaluate(env)):
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def cuda_version(pins: dict[str, str]) -> str:
    """The CUDA release torch's wheels are built for: the lock's cuda-toolkit (13.0.3.0 -> 13.0.3), which
    must agree with the CUDA major of the nvidia-*-cuNN packages next to it."""
    if "cuda-toolkit" not in pins:
        raise VersionError("the lock pins no cuda-toolkit, so the CUDA release of torch's build is unknown")
    version = ".".join(pins["cuda-toolkit"].split(".")[:3])
    majors = {m[1] for name in pins if (m := CUDA_SUFFIX.match(name))}
    if majors != {version.split(".")[0]}:
        suffixes = ", ".join(f"cu{m}" for m in sorted(majors)) or "none"
        raise VersionError(
            f"the lock's cuda-toolkit {version} disagrees with its nvidia-*-cuNN packages ({suffixes})"
        )
    return version


def target_python(root: Path = ROOT) -> str:
    """The Python the images run: the newest that `root`'s pyproject.toml allows."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    return newest_python(pyproject["project"]["requires-python"])


def lock_path(root: Path = ROOT) -> Path:
    """The lock file of that Python under `root`: requirements/lock-py3.12.txt."""
    return root / "requirements" / f"lock-py{target_python(root)}.txt"


def expected_versions(root: Path = ROOT) -> dict[str, str]:
    """Every ARG value the Dockerfiles must hold, from `root`'s pyproject.toml and lock file."""
    python, lock = target_python(root), lock_path(root)
    if not lock.is_file():
        raise VersionError(
            f"requires-python allows Python {python}, but {lock.relative_to(root)} does not exist"
        )
    pins = locked_pins(lock.read_text(), python)
    for name in ("apache-beam", "torch", "torchvision"):
        if name not in pins:
            raise VersionError(f"{lock.relative_to(root)} pins no {name}")
    return {
        "PYTHON_VERSION": python,
        "BEAM_VERSION": pins["apache-beam"],
        "TORCH_VERSION": pins["torch"],
        "TORCHVISION_VERSION": pins["torchvision"],
        "CUDA_VERSION": cuda_version(pins),
    }


def arg_line(name: str) -> re.Pattern[str]:
    """An `ARG NAME=default` line (Dockerfiles have no trailing comments, so the rest is the value)."""
    return re.compile(rf"^ARG {name}=(.*)$", re.MULTILINE)


def dockerfile_args(text: str, names: tuple[str, ...]) -> dict[str, list[str]]:
    """name -> the defaults a Dockerfile's `ARG NAME=...` lines give it (one, when the file is right)."""
    return {name: [value.strip() for value in arg_line(name).findall(text)] for name in names}


def mismatches(root: Path = ROOT) -> list[str]:
    """One message per ARG default of `root`'s Dockerfiles that is missing, repeated or not what the lock
    and pyproject.toml give; empty when both Dockerfiles agree."""
    want = expected_versions(root)
    source = str(lock_path(root).relative_to(root))
    found = []
    for rel, names in DOCKERFILES.items():
        path = root / rel
        if not path.is_file():
            found.append(f"{rel} is missing")
            continue
        for name, values in dockerfile_args(path.read_text(), names).items():
            if len(values) != 1:
                found.append(f"{rel} has {len(values)} `ARG {name}=` lines, not one")
            elif values[0] != want[name]:
                found.append(
                    f"{rel} has ARG {name}={values[0]}, but {SOURCES.get(name, source)} gives {want[name]}"
                )
    return found


def write(root: Path = ROOT) -> list[str]:
    """Rewrites the ARG default lines of `root`'s Dockerfiles to the expected versions; the files changed."""
    want = expected_versions(root)
    changed = []
    for rel, names in DOCKERFILES.items():
        path = root / rel
        text = path.read_text()
        new = text
        for name in names:
            new, count = arg_line(name).subn(f"ARG {name}={want[name]}", new)
            if count != 1:
                raise VersionError(f"{rel} has {count} `ARG {name}=` lines; it needs exactly one to rewrite")
        if new != text:
            path.write_text(new)
            changed.append(rel)
    return changed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when a Dockerfile's ARG defaults disagree")
    mode.add_argument(
        "--write", action="store_true", help="rewrite the ARG default lines of both Dockerfiles"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            found = mismatches(args.root)
            if found:
                print(f"docker_versions: {'; '.join(found)}; fix: {FIX}", file=sys.stderr)
                return 1
        elif args.write:
            for rel in write(args.root):
                print(f"docker_versions: rewrote {rel}")
        else:
            for name, value in expected_versions(args.root).items():
                print(f"{name}={value}")
    except VersionError as error:
        print(f"docker_versions: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
