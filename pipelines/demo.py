"""`vlcurate demo`: synthetic data -> clean -> stage-1/2 samples -> SFT dialogues, offline, on bundled
defaults."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from vlcurate.pipelines.check_job import CheckOptions, run_check, summary_line
from vlcurate.pipelines.clean import run_clean
from vlcurate.pipelines.format import run_format
from vlcurate.pipelines.output import join, read_json
from vlcurate.pipelines.sft import run_sft
from vlcurate.schemas.config import load_clean_config
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import make_uid
from vlcurate.schemas.sft_config import load_sft_config
from vlcurate.synth.dataset import write_synthetic_dataset
from vlcurate.synth.records import SOURCE_NAME
from vlcurate.synth.sft_inputs import write_demo_sft_inputs
from vlcurate.synth.stage2_inputs import write_demo_stage2_inputs

STAGES = 6
# Model checks in the demo score this many samples per output (the lowest id hashes; structural checks
# cover every record): the compact model's 151,936-way softmax costs ~0.1 s a sample on a 2-core CPU.
DEMO_MODEL_SAMPLE = 100


def _say(step: int, text: str) -> None:
    print(f"[demo] {step}/{STAGES} {text}", file=sys.stderr, flush=True)


def run_demo(out: str, n: int = 600, overwrite: bool = False, beam_args: list[str] | None = None) -> dict:
    """Runs every stage into `out` and returns the summary it prints (also written to
    `out`/summary.json): the clean run's kept and rejected pairs and their agreement with the ground
    truth the synthetic data was planted with."""
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise ConfigError(f"{out} is not empty; pass --overwrite or choose another --out.")
    synth = os.path.join(out, "synth")
    if os.path.exists(synth):
        shutil.rmtree(synth)
    _say(1, f"synthetic data: {n} pairs with planted defects -> {synth}")
    write_synthetic_dataset(synth, n, 0, progress=sys.stderr)

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

    _say(4, f"stage-1 captioning samples from the cleaned pairs, packed -> {out}/stage1")
    run_format(1, [config.output.dir], os.path.join(out, "stage1"), overwrite=True, beam_args=beam_args)
    stage2_input = write_demo_stage2_inputs(sft_inputs)
    _say(5, f"stage-2 multi-task samples from {stage2_input}, packed -> {out}/stage2")
    run_format(2, [stage2_input], os.path.join(out, "stage2"), overwrite=True, beam_args=beam_args)

    _say(
        6,
        f"check every output: every record's tokens and images, the bundled compact Qwen-VL's loss on "
        f"{DEMO_MODEL_SAMPLE} samples each -> <output>/check",
    )
    checks = {}
    for name in ("clean", "stage1", "stage2", "sft"):
        options = CheckOptions(sample=DEMO_MODEL_SAMPLE)
        check = run_check(
            os.path.join(out, name), options=options, overwrite=True, beam_args=beam_args, quiet=True
        )
        checks[name] = check

    print(
        f"\nDemo outputs in {out}/:\n"
        "  synth/              input: WebDataset tars, Parquet, JSONL + images, ground_truth.jsonl\n"
        "  clean/shards/       kept pairs: WebDataset tar + Parquet metadata per shard\n"
        "  clean/rejects/      every dropped pair with its reason\n"
        "  clean/stats.json    counts per step and reason, thresholds applied, histograms, what-if curves\n"
        "  clean/report.html   the same as one page, with galleries near each threshold (try `vlcurate\n"
        "                      retune --from demo-out/clean --set clip_filter.threshold=0.5 --output DIR`)\n"
        "  sft/shards/         Qwen-VL finetune.py JSON arrays (+ JSONL twins), sft/images/\n"
        "  stage1/, stage2/    samples/ (JSONL + Parquet), packed/ (2048-token sequences), images/\n"
        "  each stage also has info.json and COMPLETED, and check/ (check.json, findings.parquet, report.html)"
    )
    for name, check in checks.items():
        print(summary_line(check, os.path.join(out, name, "check")))
    summary = demo_summary(config.output.dir, os.path.join(synth, "ground_truth.jsonl"))
    summary["checks"] = {name: check_counts(check) for name, check in checks.items()}
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(summary_text(summary, os.path.join(out, "clean", "report.html")))
    return summary


def check_counts(check: dict[str, Any]) -> dict[str, Any]:
    """What summary.json keeps of one output's check."""
    return {
        "samples": check["samples"],
        "structural_findings": check["structural_findings"],
        "model_findings_by_reason": check["model_findings_by_reason"],
    }


def _uids(directory: str, files: list[str], columns: list[str]) -> list[dict]:
    return [row for f in files for row in pq.read_table(join(directory, f), columns=columns).to_pylist()]


def demo_summary(clean_dir: str, truth_path: str) -> dict[str, Any]:
    """What the clean run kept and rejected (stats.json) and how that agrees with the planted defects:
    each planted defect must be rejected for its planted reason, every other pair kept (synth/defects.py)."""
    stats = read_json(join(clean_dir, "stats.json"))
    info = read_json(join(clean_dir, "info.json"))
    kept = {r["uid"] for r in _uids(clean_dir, [s["metadata"] for s in info["shards"]], ["uid"])}
    reasons = {
        r["uid"]: r["reason"]
        for r in _uids(clean_dir, [f["file"] for f in info["rejects"]], ["uid", "reason"])
    }
    by_reason: Counter[str] = Counter()
    for source in stats["sources"].values():
        by_reason.update(source["rejected_by_reason"])
    with open(truth_path, encoding="utf-8") as fh:
        truth = [json.loads(line) for line in fh]
    # The demo cleans with CLIP on, so a mismatched caption must go as clip_low_score.
    planted = [(make_uid(SOURCE_NAME, t["key"]), t["expected_reason_with_clip"]) for t in truth]
    defects = [(uid, reason) for uid, reason in planted if reason is not None]
    clean = [uid for uid, reason in planted if reason is None]
    return {
        "read": stats["totals"]["read"],
        "kept": stats["totals"]["kept"],
        "rejected": stats["totals"]["rejected"],
        "rejected_by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "planted_defects": len(defects),
        "planted_defects_rejected_as_planted": sum(reasons.get(uid) == reason for uid, reason in defects),
        "clean_pairs": len(clean),
        "clean_pairs_kept": sum(uid in kept for uid in clean),
    }


def _share(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,} ({part / whole:.1%})" if whole else f"{part:,} of 0"


def summary_text(summary: dict[str, Any], report: str) -> str:
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in summary["rejected_by_reason"].items())
    return (
        f"\nDemo summary (clean step):\n"
        f"  kept      {_share(summary['kept'], summary['read'])}\n"
        f"  rejected  {_share(summary['rejected'], summary['read'])}: {reasons}\n"
        "  against the planted ground truth (synth/ground_truth.jsonl):\n"
        "    planted defects rejected for the planted reason: "
        f"{_share(summary['planted_defects_rejected_as_planted'], summary['planted_defects'])}\n"
        f"    clean pairs kept: {_share(summary['clean_pairs_kept'], summary['clean_pairs'])}\n"
        f"  open {report}"
    )
