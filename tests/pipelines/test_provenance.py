"""info.json's reproduction fields (pipelines/provenance.py): versions, git commit, CLIP weights' sha256."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess

import pytest

import vlcurate
from vlcurate.model.clip_models import WEIGHTS_DIR
from vlcurate.pipelines import provenance

BUNDLED_WEIGHTS = os.path.join(WEIGHTS_DIR, "tiny-synth-clip", "open_clip_model.safetensors")


def sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_versions_come_from_the_installed_distributions():
    found = provenance.versions()
    assert found["vlcurate"] == vlcurate.__version__
    assert found["python"] == platform.python_version()
    assert found["numpy"] == importlib.metadata.version("numpy")
    assert found["apache_beam"] == importlib.metadata.version("apache-beam")
    assert found["open_clip"] == importlib.metadata.version("open_clip_torch")
    assert set(found) == {
        "vlcurate",
        "python",
        "torch",
        "open_clip",
        "apache_beam",
        "pyarrow",
        "pillow",
        "numpy",
    }


def test_an_absent_distribution_is_null(monkeypatch):
    monkeypatch.setitem(provenance.DISTRIBUTIONS, "torch", "no-such-distribution-vlcurate")
    assert provenance.versions()["torch"] is None


def test_model_weights_hash_the_file_the_weights_load_from(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not really weights")
    found = provenance.model_weights(["bundled:tiny-synth-clip", f"ViT-B-32@{checkpoint}", "ViT-B-32@random"])
    assert found == {
        "bundled:tiny-synth-clip": {"file": BUNDLED_WEIGHTS, "sha256": sha256(BUNDLED_WEIGHTS)},
        f"ViT-B-32@{checkpoint}": {"file": str(checkpoint), "sha256": sha256(str(checkpoint))},
        "ViT-B-32@random": {"file": None, "sha256": None},
    }


def git(root, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_of_a_checkout_clean_dirty_or_none(tmp_path):
    assert provenance.git_commit(str(tmp_path)) is None  # not a checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    assert provenance.git_commit(str(tmp_path)) == head.strip()
    (tmp_path / "new.txt").write_text("untracked files are not changes to the code")
    assert provenance.git_commit(str(tmp_path)) == head.strip()
    (tmp_path / "a.py").write_text("x = 2\n")
    assert provenance.git_commit(str(tmp_path)) == f"{head.strip()}-dirty"
    (tmp_path / "sub").mkdir()  # a package installed inside some other repository is not its checkout
    assert provenance.git_commit(str(tmp_path / "sub")) is None


def test_git_commit_without_git_is_null_and_silent(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert provenance.git_commit() is None
    assert capfd.readouterr() == ("", "")


def test_run_times_are_utc_iso_and_wall_seconds_match_them():
    info = provenance.finished({"run": {"started": "2026-01-02T03:04:05.000Z"}, "kept": 1})
    assert info["kept"] == 1 and info["run"]["started"] == "2026-01-02T03:04:05.000Z"
    assert info["run"]["finished"].endswith("Z") and info["run"]["finished"] > info["run"]["started"]
    assert info["run"]["wall_seconds"] > 0
    assert provenance.utc_iso(0) == "1970-01-01T00:00:00.000Z"
