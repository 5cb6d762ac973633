"""Small helpers for pipeline tests: run `clean` on a config and read what it wrote."""

from __future__ import annotations

import glob
import io
import json
import os
import random

import pyarrow.parquet as pq
from PIL import Image

from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.pipelines.clean import run_clean
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig

FORMAT_PATHS = {"webdataset": "wds/*.tar", "parquet": "parquet/*.parquet", "jsonl": "jsonl/*.jsonl"}


def synth_config(synth_dir, fmt: str, out: str, **kwargs) -> CleanConfig:
    source = SourceConfig(name="synth", format=fmt, paths=[os.path.join(str(synth_dir), FORMAT_PATHS[fmt])])
    return CleanConfig(sources=[source], output=OutputConfig(dir=out), **kwargs)


def jpeg(width: int, height: int) -> bytes:
    """A JPEG of coarse random colour cells drawn from its size: images of different sizes are distinct
    pictures (near_dedup keeps them apart), images of one size are the same picture."""
    cells = random.Random(f"{width}x{height}").randbytes(6 * 6 * 3)
    image = Image.frombytes("RGB", (6, 6), cells).resize((width, height), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def write_planted_tar(path, originals: list, kinds: tuple[str, ...]) -> None:
    """A tar of `originals` (keys a-NN, each under a caption of its own) and their planted copies of
    `kinds` (keys b-NN-kind, synth/near_duplicates.py), sorted by key."""
    from vlcurate.synth.near_duplicates import original_bytes, plant_near_duplicates

    samples = [(f"a-{i:02d}", f"a quiet landscape {i}", original_bytes(im)) for i, im in enumerate(originals)]
    for copy in plant_near_duplicates(originals, seed=5, kinds=list(kinds)):
        key = f"b-{copy.original_index:02d}-{copy.kind}"
        samples.append((key, f"the same place again, {key}", copy.image))
    write_tar(path, sorted(samples))


def write_tar(path, samples: list[tuple[str, str, bytes | None]]) -> None:
    """A WebDataset tar of (key, caption, JPEG bytes or None for a sample without an image)."""
    with open(path, "wb") as fh, TarShardWriter(fh) as writer:
        for key, caption, image in samples:
            files = {"txt": caption.encode(), "json": json.dumps({"key": key}).encode()}
            writer.add(key, {"jpg": image, **files} if image is not None else files)


def run(config: CleanConfig) -> dict:
    return run_clean(config, progress=False)


def kept_rows(out: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "shards", "*.parquet"))):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def reject_rows(out: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "rejects", "*.parquet"))):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def tree_files(directory: str) -> dict[str, bytes]:
    """Every file under `directory`, by relative path."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                files[os.path.relpath(path, directory)] = fh.read()
    return files


def output_files(out: str) -> dict[str, bytes]:
    """Every file a run wrote, by relative path (info.json aside: it records the output path)."""
    return {rel: data for rel, data in tree_files(out).items() if rel != "info.json"}
