"""Shared fixtures: one synthetic dataset per test session, made by the tests themselves."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SYNTH_N = 400
SYNTH_SEED = 7


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    from vlcurate.synth.dataset import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(str(out), n=SYNTH_N, seed=SYNTH_SEED)
    return out


@pytest.fixture(scope="session")
def ground_truth(synth_dir):
    with open(synth_dir / "ground_truth.jsonl") as fh:
        return [json.loads(line) for line in fh]
