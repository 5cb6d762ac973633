"""The compact Qwen-VL trainer (model/train_compact_qwenvl.py) on a tiny run: training goes on from saved
weights, whose config wins and whose embedding rows all survive, and short runs do not crash."""

import json
import os

import pytest
from safetensors import safe_open

from vlcurate.model.qwenvl_config import QwenVLConfig
from vlcurate.model.train_compact_qwenvl import train, warmup_share

pytestmark = pytest.mark.slow


def _ids(folder: str) -> set[int]:
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as fh:
        return set(fh.get_tensor("wte.ids").tolist())


def test_training_goes_on_from_saved_weights(tmp_path):
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    made = train(first, QwenVLConfig(), n_groups=3, steps=20, lr=1e-3, seed=0, scenes=2)
    assert made["steps"] == 20 and made["init"] is None and _ids(first)
    wider = QwenVLConfig.from_dict({"decoder": {"hidden_size": 96, "heads": 4}})  # ignored: init wins
    again = train(second, wider, n_groups=1, steps=3, lr=1e-3, seed=1, scenes=1, init=first)
    with open(os.path.join(first, "config.json")) as a, open(os.path.join(second, "config.json")) as b:
        assert json.load(a) == json.load(b)
    # One scene of new data names fewer ids than the first run knew: none of those are dropped.
    assert _ids(first) <= _ids(second) and again["domain_ids"] >= made["domain_ids"]


def test_the_warm_up_is_never_exactly_one_step():
    assert [warmup_share(n) for n in (1, 3, 20, 39, 40, 4900)] == [0.3, 0.3, 0.1, 2 / 39, 0.05, 0.05]
    assert all(warmup_share(n) * n != 1 for n in range(1, 200))
