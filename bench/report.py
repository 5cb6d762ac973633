"""Shared by the benchmarks: where and how a run's rows are written."""

from __future__ import annotations

import json
import os
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_results(name: str, rows: list[dict], machine: str) -> str:
    """Writes bench/results/<name>.json with the machine and today's date; returns its path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as fh:
        json.dump({"machine": machine, "date": time.strftime("%Y-%m-%d"), "rows": rows}, fh, indent=1)
    return path
