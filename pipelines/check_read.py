"""What `vlcurate check` reads: the layout of a completed output (info.json says its kind) and its
records, each checked on the spot by the structural checks of formatters/check_*.py.

A record becomes a `Checked`: its id, task, token counts, the images it names and the problems found so
far. Images are checked later, once per distinct image (pipelines/check.py joins them back).
Tasks: stage-1/2 samples and packs carry theirs; an SFT sample's task is its id's first component (the
input's name, or `multi` for multi-image dialogues); a clean pair's is its source.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from vlcurate.formatters.check_clean import check_clean_sample
from vlcurate.formatters.check_samples import check_stage_sample
from vlcurate.formatters.check_sft import check_sft_sample
from vlcurate.formatters.packing import DEFAULT_MAX_TOKENS
from vlcurate.formatters.webdataset import iter_samples
from vlcurate.model.qwen_tokenizer import get_tokenizer
from vlcurate.model.trainer_view import TrainerView
from vlcurate.pipelines.output import join, read_json, require_completed
from vlcurate.schemas.errors import ConfigError

KINDS = {
    "vlcurate.clean": "clean",
    "vlcurate.format.stage1": "stage1",
    "vlcurate.format.stage2": "stage2",
    "vlcurate.sft": "sft",
}
# File roles: what a record file holds.
SFT_SHARD, SAMPLES, PACKS, CLEAN_SHARD = "sft_shard", "samples", "packs", "clean_shard"


@dataclasses.dataclass(frozen=True)
class Layout:
    """A completed output as the check sees it. `image_root`: where the paths its samples name resolve."""

    directory: str
    kind: str  # clean, stage1, stage2, sft
    image_root: str
    max_tokens: int
    files: list[tuple[str, str]]  # (role, path relative to `directory`), sorted
    info: dict[str, Any]


def read_layout(directory: str, image_root: str | None = None) -> Layout:
    """Raises ConfigError, naming the fix, for a directory that is not a completed vlcurate output."""
    require_completed(directory)
    info = read_json(join(directory, "info.json"))
    kind = KINDS.get(info.get("kind", ""))
    if kind is None:
        raise ConfigError(
            f"{directory}/info.json has kind {info.get('kind')!r}; `vlcurate check` reads the outputs of "
            f"clean, format and sft ({', '.join(sorted(KINDS))})."
        )
    if kind == "sft":
        files = [(SFT_SHARD, s["json"]) for s in info["shards"]]
        max_tokens = int(info["model_max_length"])
    elif kind == "clean":
        files = [(CLEAN_SHARD, s["shard"]) for s in info["shards"]]
        max_tokens = DEFAULT_MAX_TOKENS
    else:
        files = [(SAMPLES, f) for f in info["files"]["samples"]] + [
            (PACKS, f) for f in info["files"]["packed"]
        ]
        max_tokens = int(info.get("max_tokens", DEFAULT_MAX_TOKENS))
    if image_root is None:
        recorded = info.get("image_root", ".")
        if recorded in ("", "."):
            image_root = directory
        else:
            image_root = (
                recorded if "://" in recorded or os.path.isabs(recorded) else join(directory, recorded)
            )
    return Layout(directory, kind, image_root.rstrip("/") or "/", max_tokens, sorted(files), info)


@dataclasses.dataclass
class Checked:
    """One record after its structural checks. `view` (ids, labels) is kept only for records the model
    may check: those without problems."""

    id: str
    task: str
    tokens: int
    supervised: int
    images: tuple[str, ...]
    problems: list[tuple[str, str]]
    view: TrainerView | None = None


def sft_task(sample_id: str) -> str:
    return sample_id.split("/", 1)[0].split("#", 1)[0] or "sft"


def _text(directory: str, path: str) -> str:
    with FileSystems.open(join(directory, path)) as fh:
        return fh.read().decode("utf-8")


def _checked(sample_id: str, task: str, problems: list, view: TrainerView | None) -> Checked:
    tokens, supervised, images = 0, 0, ()
    if view is not None:
        tokens, supervised, images = len(view.input_ids), view.supervised, tuple(view.images)
    pairs = [(p.reason, p.detail) for p in problems]
    return Checked(sample_id, task, tokens, supervised, images, pairs, None if pairs else view)


def read_sft_shard(layout: Layout, path: str) -> Iterator[Checked]:
    """Every sample of a JSON-array shard; a twin (.jsonl) that differs is a problem of the shard."""
    tokenizer = get_tokenizer()
    try:
        array = json.loads(_text(layout.directory, path))
    except (OSError, ValueError) as exc:
        yield Checked(path, "shard", 0, 0, (), [("shard_unreadable", f"{path}: {exc}"[:300])])
        return
    twin = path[: -len(".json")] + ".jsonl"
    try:
        lines = [json.loads(line) for line in _text(layout.directory, twin).split("\n") if line]
    except (OSError, ValueError) as exc:
        lines = [f"unreadable: {exc}"]
    if lines != array:
        yield Checked(twin, "shard", 0, 0, (), [("twin_differs", f"{twin} does not hold {path}'s samples")])
    for i, sample in enumerate(array if isinstance(array, list) else [array]):
        raw_id = sample.get("id") if isinstance(sample, dict) else None
        sample_id = raw_id if isinstance(raw_id, str) and raw_id else f"{path}#{i}"
        problems, view = check_sft_sample(sample, layout.max_tokens, tokenizer)
        yield _checked(sample_id, sft_task(sample_id), problems, view)


def read_sample_rows(layout: Layout, path: str) -> Iterator[tuple[Checked, dict]]:
    """Every stage-1/2 sample row with its check; the row goes on to the packs' check."""
    tokenizer = get_tokenizer()
    for n, line in enumerate(_text(layout.directory, path).split("\n")):
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            yield Checked(f"{path}#{n}", "samples", 0, 0, (), [("bad_sample", str(exc)[:200])]), {}
            continue
        if not isinstance(row, dict):
            yield Checked(f"{path}#{n}", "samples", 0, 0, (), [("bad_sample", "not a JSON object")]), {}
            continue
        sample_id = row.get("id") if isinstance(row.get("id"), str) else f"{path}#{n}"
        task = row.get("task") if isinstance(row.get("task"), str) else "unknown"
        problems, view = check_stage_sample(row, layout.max_tokens, tokenizer)
        yield _checked(sample_id, task, problems, view), row


def read_pack_rows(layout: Layout, path: str) -> Iterator[tuple[str, dict]]:
    """(pack key, pack row) per line; the key `packed/packed-00000.jsonl#12` names the pack in findings."""
    for n, line in enumerate(_text(layout.directory, path).split("\n")):
        if line:
            try:
                row = json.loads(line)
            except ValueError as exc:
                row = {"unparseable": str(exc)[:200]}
            yield f"{path}#{n}", row if isinstance(row, dict) else {"unparseable": "not a JSON object"}


def read_clean_shard(layout: Layout, path: str) -> Iterator[Checked]:
    """Every pair of a WebDataset shard, checked against its Parquet twin (same order)."""
    twin_path = path[: -len(".tar")] + ".parquet"
    try:
        with FileSystems.open(join(layout.directory, twin_path)) as fh:
            twin = pq.read_table(io.BytesIO(fh.read())).to_pylist()
    except Exception as exc:  # any broken twin is a finding, not a crash
        twin = []
        yield Checked(twin_path, "shard", 0, 0, (), [("twin_differs", f"{twin_path}: {exc}"[:300])])
    tokenizer = get_tokenizer()
    with FileSystems.open(join(layout.directory, path)) as fh:
        for n, (key, members, _) in enumerate(iter_samples(fh)):
            row = twin[n] if n < len(twin) else None
            uid = row.get("uid") if row else None
            problems = check_clean_sample(key, members, row)
            caption = row.get("caption") if row else None
            tokens = tokenizer.count(caption, allow_special=False) if isinstance(caption, str) else 0
            source = row.get("source") if row else None
            yield Checked(uid or f"{path}#{key}", source or "unknown", tokens, tokens, (), _pairs(problems))


def _pairs(problems: list) -> list[tuple[str, str]]:
    return [(p.reason, p.detail) for p in problems]
