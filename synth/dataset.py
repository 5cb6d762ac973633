"""The synthetic web image-text dataset `vlcurate clean` reads in the demo and the tests, carrying every
defect the Qwen-VL cleaning steps target.

`write_synthetic_dataset(out_dir, n, seed)` draws n pairs from the shapes domain (model/scenes.py) and
plants exactly one defect in each, in fixed proportions (defects.py, which lists them), then writes the
SAME records three ways:

    wds/synth-00000.tar ...        WebDataset as img2dataset writes it (<key>.jpg|png|webp, .txt, .json)
    parquet/synth-00000.parquet    columns key, caption, image (bytes; null when missing), url
    jsonl/synth.jsonl + images/    {"key", "caption", "image": "images/<key>.<ext>", "url"}
    ground_truth.jsonl             {"key", "defect", "expected_reason", "expected_reason_with_clip", "lang",
                                    "image_format", "width", "height", "duplicate_of"} (written last)
    clean.yaml                     a `vlcurate clean` config reading wds/*.tar as source `synth`

Keys are 9-digit zero-padded indexes, as img2dataset writes them; shards hold 500 samples.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.schemas.errors import ConfigError
from vlcurate.synth.defects import DEFECT_BY_NAME, DEFECTS
from vlcurate.synth.progress import CountReporter
from vlcurate.synth.records import SOURCE_NAME, SynthRecord, default_workers, make_records

SAMPLES_PER_SHARD = 500

# Everything the generator writes at the top of out_dir; ground_truth.jsonl is written last.
OWNED = ("wds", "parquet", "jsonl", "clean.yaml", "ground_truth.jsonl")
_CLEAN_YAML = """\
# `vlcurate clean --config clean.yaml`: cleans the synthetic WebDataset copy written beside this file.
# Paths are relative to this file. ground_truth.jsonl says which pairs must be kept or rejected, and why.
sources:
  - name: synth
    format: webdataset
    paths:
      - wds/*.tar
steps:
  clip_score:
    models: bundled:tiny-synth-clip   # trained on this synthetic domain (model/train_tiny_clip.py)
  clip_filter:
    # LAION's 0.28 fits OpenAI ViT-B/32, not this model: its matched pairs average 0.86 and mismatched
    # ones 0.0; 0.4 catches 95-98% of planted mismatches at 97-100% precision on held-out synthetic data.
    threshold: 0.4
output:
  dir: clean-out
"""
_PARQUET_SCHEMA = pa.schema(
    [("key", pa.string()), ("caption", pa.string()), ("image", pa.binary()), ("url", pa.string())]
)


def _prepare(out_dir: str, overwrite: bool) -> None:
    if os.path.exists(os.path.join(out_dir, "ground_truth.jsonl")) and not overwrite:
        raise ConfigError(
            f"{out_dir} already holds a synthetic dataset (it has ground_truth.jsonl). "
            "Pass --overwrite to replace it, or choose another --out."
        )
    for name in OWNED:  # leftovers of an interrupted run, or the dataset being replaced
        path = os.path.join(out_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    for folder in ("wds", "parquet", os.path.join("jsonl", "images")):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _write_tar(out_dir: str, shard: int, records: list[SynthRecord]) -> str:
    tar_path = os.path.join(out_dir, "wds", f"{SOURCE_NAME}-{shard:05d}.tar")
    with open(tar_path, "wb") as fh, TarShardWriter(fh) as writer:
        for r in records:
            meta = {
                "key": r.key,
                "url": r.url,
                "caption": r.caption,
                "status": "success",
                "width": r.width,
                "height": r.height,
            }
            files = {r.ext: r.image} if r.image is not None else {}
            files.update({"txt": r.caption.encode("utf-8"), "json": _dumps(meta).encode("utf-8")})
            writer.add(r.key, files)
    return tar_path


def _write_parquet(out_dir: str, shard: int, records: list[SynthRecord]) -> str:
    parquet_path = os.path.join(out_dir, "parquet", f"{SOURCE_NAME}-{shard:05d}.parquet")
    table = pa.table(
        {
            "key": [r.key for r in records],
            "caption": [r.caption for r in records],
            "image": [r.image for r in records],
            "url": [r.url for r in records],
        },
        schema=_PARQUET_SCHEMA,
    )
    pq.write_table(table, parquet_path)
    return parquet_path


def _write_jsonl(out_dir: str, records: list[SynthRecord], wrote: CountReporter) -> str:
    folder = os.path.join(out_dir, "jsonl")
    path = os.path.join(folder, f"{SOURCE_NAME}.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for r in records:
            relative = f"images/{r.key}.{r.ext}"
            if r.image is not None:  # image_missing: the line names a file that is never written
                with open(os.path.join(folder, relative), "wb") as img:
                    img.write(r.image)
            fh.write(_dumps({"key": r.key, "caption": r.caption, "image": relative, "url": r.url}) + "\n")
            wrote.add()
    return path


def write_synthetic_dataset(
    out_dir: str,
    n: int,
    seed: int,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    progress: TextIO | None = None,
    interval: float = 2.0,
) -> dict[str, Any]:
    """Writes n synthetic pairs in three formats plus ground truth and a clean config; returns a summary.

    Refuses a directory that already holds a dataset unless `overwrite` (then only the generator's own
    files are replaced; anything else in the directory, such as a `clean-out/`, is left alone).
    `workers` (default: `default_workers(n)`) never changes the output, only the speed. With a
    `progress` stream, how many pairs are made, then written in each format, is printed there every
    `interval` seconds and at the end of each phase.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}.")
    started = time.monotonic()
    _prepare(out_dir, overwrite)

    def reporter(what: str) -> CountReporter:
        return CountReporter(SOURCE_NAME, what, n, stream=progress, interval=interval, start=started)

    records = make_records(n, seed, default_workers(n) if workers is None else workers, reporter("made"))
    shards = [records[start : start + SAMPLES_PER_SHARD] for start in range(0, n, SAMPLES_PER_SHARD)]
    files: list[str] = []
    for fmt, write in (("webdataset", _write_tar), ("parquet", _write_parquet)):
        wrote = reporter(f"wrote {fmt}")
        for shard, part in enumerate(shards):
            files.append(write(out_dir, shard, part))
            wrote.add(len(part))
        wrote.done()
    wrote = reporter("wrote jsonl")
    files.append(_write_jsonl(out_dir, records, wrote))
    wrote.done()
    config_path = os.path.join(out_dir, "clean.yaml")
    with open(config_path, "w", encoding="utf-8") as fh:
        fh.write(_CLEAN_YAML)
    files.append(config_path)
    truth_path = os.path.join(out_dir, "ground_truth.jsonl")
    with open(truth_path, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(_dumps(r.ground_truth()) + "\n" for r in records)
    files.append(truth_path)

    reasons = Counter(DEFECT_BY_NAME[r.defect].expected_reason for r in records)
    reasons_with_clip = Counter(DEFECT_BY_NAME[r.defect].expected_reason_with_clip for r in records)
    return {
        "out_dir": out_dir,
        "n": n,
        "seed": seed,
        "defects": {d.name: sum(r.defect == d.name for r in records) for d in DEFECTS},
        "langs": dict(Counter(r.lang for r in records)),
        "formats": dict(Counter(r.image_format for r in records if r.image_format)),
        "expected_kept": reasons.pop(None, 0),
        "expected_rejected": dict(sorted(reasons.items())),
        "expected_kept_with_clip": reasons_with_clip[None],
        "files": [os.path.relpath(f, out_dir) for f in files],
        "seconds": round(time.monotonic() - started, 3),
    }
