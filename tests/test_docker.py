"""The Dataflow worker images (docker/): their versions are the lock's, they start Beam's SDK harness boot and
install vlcurate from the lock. Nothing here builds an image (no Docker daemon in CI): the Dockerfiles are
read as text, and their shell commands are only parsed (`sh -n`)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "docker_versions.py"
GPU, CPU = "docker/Dockerfile.gpu", "docker/Dockerfile.cpu"
FIX = "fix: python scripts/docker_versions.py --write"


def _script():
    spec = importlib.util.spec_from_file_location("docker_versions", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


versions = _script()


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each Dockerfile instruction: `\\` continuations joined as Docker joins them,
    comment lines dropped."""
    found, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "a Dockerfile ends inside a continued line"
    return found


def final_stage(text: str) -> list[tuple[str, str]]:
    """The instructions of the last stage: the image that is built."""
    steps = instructions(text)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def lock_pin(name: str) -> str:
    match = re.search(
        rf"^{re.escape(name)}==([^\s;]+)", (ROOT / "requirements/lock-py3.12.txt").read_text(), re.M
    )
    assert match, f"the lock pins no {name}"
    return match[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def copy_repo(tmp_path: Path) -> Path:
    """What the script reads, copied: pyproject.toml, the locks, the Dockerfiles."""
    for rel in (
        "pyproject.toml",
        GPU,
        CPU,
        *(p.relative_to(ROOT) for p in (ROOT / "requirements").glob("lock-*")),
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def test_committed_dockerfiles_hold_the_locked_versions():
    # Read here from the lock directly, not through the script: the script is what is tested.
    want = {
        "PYTHON_VERSION": "3.12",
        "BEAM_VERSION": lock_pin("apache-beam"),
        "TORCH_VERSION": lock_pin("torch"),
        "TORCHVISION_VERSION": lock_pin("torchvision"),
        "CUDA_VERSION": ".".join(lock_pin("cuda-toolkit").split(".")[:3]),
    }
    assert versions.expected_versions() == want
    assert versions.mismatches() == []
    for rel in (GPU, CPU):
        steps = instructions((ROOT / rel).read_text())
        head = steps[: [keyword for keyword, _ in steps].index("FROM")]  # global ARGs, usable in FROM
        names = [name for name in want if rel == GPU or name != "CUDA_VERSION"]
        assert head == [("ARG", f"{name}={want[name]}") for name in names]
    assert "CUDA_VERSION" not in (ROOT / CPU).read_text()
    result = run_script()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{name}={value}" for name, value in want.items()]


def test_locked_versions_of_a_universal_lock():
    lock = (
        "# header\n"
        "apache-beam==2.77.0 ; python_full_version < '3.11'\n"
        "apache-beam==2.78.0 ; python_full_version >= '3.11'\n"
        "    # via vlcurate\n"
        "torch==2.14.1\n"
        "Torch_Vision==0.29.1\n"
        "cuda-toolkit==13.0.3.0 ; sys_platform == 'linux'\n"
        "nvidia-cudnn-cu13==9.24.0.43 ; sys_platform == 'linux'\n"
        "colorama==0.4.6 ; sys_platform == 'win32'\n"
    )
    pins = versions.locked_pins(lock, "3.12")
    assert pins == {
        "apache-beam": "2.78.0",
        "torch": "2.14.1",
        "torch-vision": "0.29.1",
        "cuda-toolkit": "13.0.3.0",
        "nvidia-cudnn-cu13": "9.24.0.43",
    }
    assert versions.locked_pins(lock, "3.10")["apache-beam"] == "2.77.0"
    assert versions.cuda_version(pins) == "13.0.3"
    assert versions.newest_python(">=3.10,<3.13") == "3.12"
    assert versions.newest_python(">=3.10,<=3.11") == "3.11"


def test_cuda_version_needs_a_toolkit_that_agrees_with_the_cu_packages():
    with pytest.raises(versions.VersionError, match="disagrees with its nvidia-\\*-cuNN packages \\(cu12\\)"):
        versions.cuda_version({"cuda-toolkit": "13.0.3.0", "nvidia-nccl-cu12": "2.21.5"})
    with pytest.raises(versions.VersionError, match="pins no cuda-toolkit"):
        versions.cuda_version({"nvidia-nccl-cu12": "2.21.5"})


def test_check_names_a_changed_version_and_write_repairs_it(tmp_path):
    root = copy_repo(tmp_path)
    cpu = root / CPU
    original = cpu.read_text()
    torch = lock_pin("torch")
    cpu.write_text(original.replace(f"ARG TORCH_VERSION={torch}\n", "ARG TORCH_VERSION=2.13.0\n"))
    assert cpu.read_text() != original

    result = run_script("--check", "--root", str(root))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"docker_versions: {CPU} has ARG TORCH_VERSION=2.13.0, but requirements/lock-py3.12.txt gives "
        f"{torch}; {FIX}\n"
    )

    result = run_script("--write", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"docker_versions: rewrote {CPU}\n"
    assert cpu.read_text() == original
    assert (root / GPU).read_text() == (ROOT / GPU).read_text()
    assert run_script("--check", "--root", str(root)).returncode == 0


def test_check_names_both_dockerfiles_when_the_lock_moves(tmp_path):
    root = copy_repo(tmp_path)
    lock = root / "requirements/lock-py3.12.txt"
    beam = lock_pin("apache-beam")
    lock.write_text(lock.read_text().replace(f"\napache-beam=={beam}\n", "\napache-beam==2.79.1\n"))
    result = run_script("--check", "--root", str(root))
    assert result.returncode == 1
    assert result.stderr == (
        f"docker_versions: {GPU} has ARG BEAM_VERSION={beam}, but requirements/lock-py3.12.txt gives 2.79.1; "
        f"{CPU} has ARG BEAM_VERSION={beam}, but requirements/lock-py3.12.txt gives 2.79.1; {FIX}\n"
    )
    assert len(result.stderr.splitlines()) == 1


def test_a_missing_arg_line_or_lock_is_an_error(tmp_path):
    root = copy_repo(tmp_path)
    gpu = root / GPU
    gpu.write_text(re.sub(r"^ARG CUDA_VERSION=.*\n", "", gpu.read_text(), flags=re.M))
    result = run_script("--check", "--root", str(root))
    assert (result.returncode, result.stderr) == (
        1,
        f"docker_versions: {GPU} has 0 `ARG CUDA_VERSION=` lines, not one; {FIX}\n",
    )
    result = run_script("--write", "--root", str(root))
    assert (result.returncode, result.stderr) == (
        2,
        f"docker_versions: {GPU} has 0 `ARG CUDA_VERSION=` lines; it needs exactly one to rewrite\n",
    )

    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('requires-python = ">=3.10,<3.13"', 'requires-python = ">=3.10,<3.14"')
    )
    result = run_script("--check", "--root", str(root))
    assert (result.returncode, result.stderr) == (
        2,
        "docker_versions: requires-python allows Python 3.13, but requirements/lock-py3.13.txt does not exist\n",
    )


@pytest.mark.parametrize("rel", [GPU, CPU])
def test_the_image_starts_beams_boot_entrypoint(rel):
    text = (ROOT / rel).read_text()
    steps = instructions(text)
    froms = [args for keyword, args in steps if keyword == "FROM"]
    base = (
        "nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04" if rel == GPU else "python:${PYTHON_VERSION}-slim"
    )
    assert froms == ["apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam", base]
    stage = final_stage(text)
    assert ("COPY", "--from=beam /opt/apache/beam /opt/apache/beam") in stage
    entrypoints = [args for keyword, args in steps if keyword in ("ENTRYPOINT", "CMD")]
    assert entrypoints == ['["/opt/apache/beam/boot"]']
    assert stage[-1] == ("ENTRYPOINT", '["/opt/apache/beam/boot"]')
    env = " ".join(args for keyword, args in stage if keyword == "ENV").split()
    # boot runs the `python` on PATH, in that environment rather than a fresh virtualenv per worker.
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1" in env


@pytest.mark.parametrize("rel", [GPU, CPU])
def test_the_image_installs_vlcurate_from_the_lock(rel):
    stage = final_stage((ROOT / rel).read_text())
    runs = [re.sub(r"\s+", " ", args) for keyword, args in stage if keyword == "RUN"]
    assert ("COPY", "requirements/lock-py${PYTHON_VERSION}.txt lock.txt") in stage
    if rel == GPU:
        assert "python -m pip install --quiet -r lock.txt" in runs
    else:
        # The same CPU wheels and the same lock filter as scripts/setup.sh's VLCURATE_TORCH=cpu.
        setup = (ROOT / "scripts/setup.sh").read_text()
        lock_filter = re.search(r"grep -v -E ('[^']+')", setup)[1]
        (install,) = [r for r in runs if "lock-cpu.txt" in r]
        assert install == (
            'python -m pip install --quiet --no-deps --index-url "$TORCH_INDEX" '
            '"torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" '
            f"&& grep -v -E {lock_filter} lock.txt >lock-cpu.txt "
            "&& python -m pip install --quiet -r lock-cpu.txt"
        )
        assert ("ARG", "TORCH_INDEX=https://download.pytorch.org/whl/cpu") in stage
        assert "https://download.pytorch.org/whl/cpu" in setup
    # With the gcp extra, from what the lock installed only (no index), then pip's consistency check.
    assert (
        'python -m pip install --quiet --no-index --no-build-isolation "./src[gcp]" && python -m pip check'
    ) in runs
    assert "google-cloud-storage" in versions.locked_pins(versions.lock_path().read_text(), "3.12")
    # The wheel is built from every folder pyproject.toml maps into the package.
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    copies = [args.split() for keyword, args in stage if keyword == "COPY"]
    copied = {source for source, *rest in copies if rest == [f"src/{source}"]}
    assert copied == set(package_dir.values())
    assert ["pyproject.toml", "README.md", "src/"] in copies
    # Built in a folder of its own; the workers start at the root again.
    workdirs = [args for keyword, args in stage if keyword == "WORKDIR"]
    assert len(workdirs) == 2 and workdirs[-1] == "/"
    # The build compares what it installed with the ARGs.
    (check,) = [r for r in runs if "assert got == want" in r]
    for name in ("BEAM_VERSION", "TORCH_VERSION", "TORCHVISION_VERSION"):
        assert f"'${{{name}}}'" in check
    assert ("'${CUDA_VERSION%.*}'" if rel == GPU else "None)") in check


@pytest.mark.parametrize("rel", [GPU, CPU])
def test_every_run_command_is_valid_shell(rel):
    runs = [args for keyword, args in instructions((ROOT / rel).read_text()) if keyword == "RUN"]
    assert len(runs) == 4
    for command in runs:
        result = subprocess.run(["sh", "-n"], input=command, capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
