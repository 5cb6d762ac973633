"""`vlcurate demo`: synthetic data -> clean -> every later stage, offline, on bundled defaults."""

from __future__ import annotations

import os
import shutil
import sys

from vlcurate.pipelines.clean import run_clean
from vlcurate.pipelines.synth import write_synthetic_dataset
from vlcurate.schemas.config import load_clean_config
from vlcurate.schemas.errors import ConfigError


def run_demo(out: str, n: int = 600, overwrite: bool = False, beam_args: list[str] | None = None) -> dict:
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise ConfigError(f"{out} is not empty; pass --overwrite or choose another --out.")
    synth = os.path.join(out, "synth")
    if os.path.exists(synth):
        shutil.rmtree(synth)
    print(f"[demo] 1/2 synthetic data: {n} pairs -> {synth}", file=sys.stderr)
    write_synthetic_dataset(synth, n=n, seed=0)
    config = load_clean_config(os.path.join(synth, "clean.yaml"))
    config.output.dir = os.path.join(out, "clean")
    config.output.overwrite = True
    print(f"[demo] 2/2 clean -> {config.output.dir}", file=sys.stderr)
    stats = run_clean(config, beam_args)
    print(
        f"\nDemo outputs in {out}/:\n"
        f"  synth/            input: WebDataset tars, Parquet, JSONL + images, ground_truth.jsonl\n"
        f"  clean/shards/     kept pairs (WebDataset tar + Parquet metadata per shard)\n"
        f"  clean/rejects/    every dropped pair with its reason\n"
        f"  clean/stats.json  counts per step and reason, histograms, sample rejects"
    )
    return stats
