"""`vlcurate demo`: synthetic data -> clean -> SFT dialogues, offline, on bundled defaults."""

from __future__ import annotations

import os
import shutil
import sys

from vlcurate.pipelines.clean import run_clean
from vlcurate.pipelines.sft import run_sft, write_demo_sft_inputs
from vlcurate.pipelines.synth import write_synthetic_dataset
from vlcurate.schemas.config import load_clean_config
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.sft_config import load_sft_config

STAGES = 3


def _say(step: int, text: str) -> None:
    print(f"[demo] {step}/{STAGES} {text}", file=sys.stderr, flush=True)


def run_demo(out: str, n: int = 600, overwrite: bool = False, beam_args: list[str] | None = None) -> None:
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise ConfigError(f"{out} is not empty; pass --overwrite or choose another --out.")
    synth = os.path.join(out, "synth")
    if os.path.exists(synth):
        shutil.rmtree(synth)
    _say(1, f"synthetic data: {n} pairs with planted defects -> {synth}")
    write_synthetic_dataset(synth, n, 0)

    config = load_clean_config(os.path.join(synth, "clean.yaml"))
    config.output.dir = os.path.join(out, "clean")
    config.output.overwrite = True
    _say(2, f"clean (every filter, bundled tiny CLIP, dedup) -> {config.output.dir}")
    run_clean(config, beam_args)

    sft_inputs = os.path.join(out, "sft-inputs")
    sft_yaml = write_demo_sft_inputs(sft_inputs, 0, pairs_dir=config.output.dir)
    sft = load_sft_config(sft_yaml)
    sft.output.dir = os.path.join(out, "sft")
    sft.output.overwrite = True
    _say(3, f"SFT dialogues (captions, VQA, grounding, multi-image, text) -> {sft.output.dir}")
    run_sft(sft, beam_args)

    print(
        f"\nDemo outputs in {out}/:\n"
        "  synth/              input: WebDataset tars, Parquet, JSONL + images, ground_truth.jsonl\n"
        "  clean/shards/       kept pairs: WebDataset tar + Parquet metadata per shard\n"
        "  clean/rejects/      every dropped pair with its reason\n"
        "  clean/stats.json    counts per step and reason, score histograms, sample rejects\n"
        "  sft/shards/         Qwen-VL finetune.py JSON arrays (+ JSONL twins), sft/images/\n"
        "  each stage also has info.json and COMPLETED"
    )
