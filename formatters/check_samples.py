"""`vlcurate check` of stage-1/2 sample rows (samples/*.jsonl) and packs (packed/*.jsonl), rebuilt with the
exact tokenizer (model/trainer_view.py) and compared with what is stored.

A sample row `{id, task, images, prefix, target, prefix_tokens, target_tokens, num_tokens}`:
- `bad_sample`: fields missing or of the wrong type, no id (nothing else is checked);
- `unknown_task`: a task formatters/stage2.py does not write (its markup is then judged leniently);
- text (NFC, as the tokenizer reads it): the prefix starts with the `<img>..</img>` spans and nothing
  else holds image markup (`bad_image_markup`); each path passes sft_validate.check_image_path
  (`image_path_too_long`, `image_path_invalid`); the rest holds only the markup the task's template
  writes (`special_tokens`, `bad_box`, `bad_quad`), and `<|endoftext|>` only at the target's end;
- `no_supervised_tokens`: the target does not end with `<|endoftext|>` or has no content before it
  (check_findings.py: whitespace and `<|endoftext|>` are no content);
- `token_count_mismatch`: prefix_tokens, target_tokens, num_tokens differ from a recount;
- `images_field_mismatch`: `images` is not the list of paths read back from the `<img>` spans;
- `image_span_invalid`: a span the model cannot use; `too_long`: over `max_tokens`.

A pack `{task, ids, images, num_samples, num_tokens, boundaries, loss_mask, input_ids}` against its
samples (id -> row): `bad_pack` (malformed row), `pack_sample_missing` (an id without a row),
`pack_mismatch` (the first disagreement of counts, boundaries, loss mask, task, ids, images with the
pack itself and with its samples rebuilt in `ids` order), `image_span_invalid` (in the stored ids),
`too_long` (over `max_tokens`). `input_ids` may be null (packed without a tokenizer): then only the
boundaries, mask and counts are compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from vlcurate.formatters.check_findings import Problem, first_per_reason, has_supervised_content
from vlcurate.formatters.sft_validate import check_image_path, check_markup
from vlcurate.formatters.stage2 import TASKS
from vlcurate.model.qwen_tokenizer import (
    BOX_START,
    ENDOFTEXT,
    IGNORE_INDEX,
    QUAD_START,
    REF_START,
    ImagePathError,
    QwenTokenizer,
    get_tokenizer,
    nfc,
)
from vlcurate.model.trainer_view import TrainerView, image_spans, stage_sample_view

_GROUNDED = frozenset({REF_START, BOX_START})
# The markup each task's template writes into prefix and target besides the leading <img> spans.
TASK_MARKUP: dict[str, frozenset[str]] = {
    "captioning": frozenset(),
    "vqa": frozenset(),
    "pure_text": frozenset(),
    "caption_with_grounding": _GROUNDED,
    "referring_grounding": _GROUNDED,
    "grounded_captioning": _GROUNDED,
    "ocr": frozenset({REF_START, QUAD_START}),
}
assert set(TASK_MARKUP) == set(TASKS), "a stage-2 task without its markup rule"
_ANY_MARKUP = frozenset({REF_START, BOX_START, QUAD_START})
_LEADING_IMAGE = re.compile(r"<img>(.*?)</img>", re.DOTALL)
_SAMPLE_FIELDS = {"task": str, "images": list, "prefix": str, "target": str}
_COUNTS = ("prefix_tokens", "target_tokens", "num_tokens")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(row: object) -> Problem | None:
    if not isinstance(row, Mapping):
        return Problem("bad_sample", "a sample row is an object")
    if not isinstance(row.get("id"), str) or not row["id"]:
        return Problem("bad_sample", "id must be a non-empty string (packs name samples by it)")
    for name, kind in _SAMPLE_FIELDS.items():
        if not isinstance(row.get(name), kind):
            return Problem("bad_sample", f"{name} must be a {kind.__name__}")
    if not all(isinstance(path, str) for path in row["images"]):
        return Problem("bad_sample", "images must be a list of strings")
    if not all(_is_int(row.get(name)) for name in _COUNTS):
        return Problem("bad_sample", f"{', '.join(_COUNTS)} must be integers")
    try:
        (row["prefix"] + row["target"]).encode("utf-8")
    except UnicodeEncodeError:
        return Problem("bad_sample", "prefix or target is not valid Unicode (lone surrogate)")
    return None


def _text_problems(row: Mapping[str, Any]) -> tuple[list[Problem], list[str]]:
    """Markup problems of prefix and target, and the paths of the prefix's leading `<img>` spans."""
    task = row["task"]
    allowed = TASK_MARKUP.get(task, _ANY_MARKUP)
    problems = [] if task in TASK_MARKUP else [Problem("unknown_task", repr(task))]
    prefix, target = row["prefix"], nfc(row["target"])
    paths, pos = [], 0
    while (span := _LEADING_IMAGE.match(prefix, pos)) is not None:
        paths.append(span.group(1))
        problems.append(check_image_path(span.group(1), None))  # as stored: the loader opens it so
        pos = span.end()
    problems.append(check_markup(nfc(prefix[pos:]), "prefix", allowed))
    ends = target.endswith(ENDOFTEXT)
    problems.append(check_markup(target[: -len(ENDOFTEXT)] if ends else target, "target", allowed))
    if not ends:
        problems.append(Problem("no_supervised_tokens", "the target does not end with <|endoftext|>"))
    return first_per_reason(problems), paths


def check_stage_sample(
    row: Mapping, max_tokens: int, tokenizer: QwenTokenizer | None = None
) -> tuple[list[Problem], TrainerView | None]:
    """(problems, what the trainer sees). The view comes only with no problem at all."""
    problem = _shape(row)
    if problem is not None:
        return [problem], None
    tok = tokenizer or get_tokenizer()
    problems, paths = _text_problems(row)
    try:
        view = stage_sample_view(row["prefix"], row["target"], tok)
    except ImagePathError as exc:  # a span the tokenizer cannot build: nothing to count
        problems.append(Problem(exc.reason, str(exc)))
        if row["images"] != paths:
            problems.append(Problem("images_field_mismatch", f"{row['images']} != {paths} in the prefix"))
        if row["num_tokens"] > max_tokens:
            problems.append(Problem("too_long", f"{row['num_tokens']} stored tokens > {max_tokens}"))
        return first_per_reason(problems), None
    spans = image_spans(view.input_ids)
    problems += [Problem("image_span_invalid", span.problem) for span in spans if span.problem]
    if row["images"] != view.images:
        problems.append(Problem("images_field_mismatch", f"{row['images']} != {view.images} in the spans"))
    target_len = len(view.input_ids) - view.labels.count(IGNORE_INDEX)  # the target has no -100 label
    counted = (len(view.input_ids) - target_len, target_len, len(view.input_ids))
    stored = tuple(row[name] for name in _COUNTS)
    if counted != stored:
        wrong = [f"{n} {s} (recount {c})" for n, s, c in zip(_COUNTS, stored, counted) if s != c]
        problems.append(Problem("token_count_mismatch", ", ".join(wrong)))
    if len(view.input_ids) > max_tokens:
        problems.append(Problem("too_long", f"{len(view.input_ids)} tokens > {max_tokens}"))
    if not has_supervised_content(view.labels, tok):
        problems.append(Problem("no_supervised_tokens", "no target token is content"))
    problems = first_per_reason(problems)
    return problems, (None if problems else view)


# --- packs ----------------------------------------------------------------------------------------


def _int_list(value: object, size: int | None = None) -> bool:
    return isinstance(value, list) and (size is None or len(value) == size) and all(map(_is_int, value))


def _pack_shape(pack: object) -> Problem | None:
    if not isinstance(pack, Mapping):
        return Problem("bad_pack", "a pack row is an object")
    if not isinstance(pack.get("task"), str):
        return Problem("bad_pack", "task must be a string")
    for name in ("ids", "images"):
        value = pack.get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return Problem("bad_pack", f"{name} must be a list of strings")
    if not pack["ids"]:
        return Problem("bad_pack", "a pack holds at least one sample")
    if not (_is_int(pack.get("num_samples")) and _is_int(pack.get("num_tokens"))):
        return Problem("bad_pack", "num_samples and num_tokens must be integers")
    bounds = pack.get("boundaries")
    if not isinstance(bounds, list) or not all(_int_list(b, 3) for b in bounds):
        return Problem("bad_pack", "boundaries must be a list of [start, target_start, end]")
    if not _int_list(pack.get("loss_mask")):
        return Problem("bad_pack", "loss_mask must be a list of integers")
    if pack.get("input_ids") is not None and not _int_list(pack["input_ids"]):
        return Problem("bad_pack", "input_ids must be a list of integers or null")
    return None


def _first_difference(stored: Sequence, expected: Sequence) -> int:
    return next(
        (i for i, (a, b) in enumerate(zip(stored, expected)) if a != b), min(len(stored), len(expected))
    )


def _mask(bounds: Sequence[Sequence[int]]) -> list[int]:
    mask: list[int] = []
    for start, target_start, end in bounds:
        mask += [0] * (target_start - start) + [1] * (end - target_start)
    return mask


def _self_disagreements(pack: Mapping[str, Any]) -> list[str]:
    """How the pack's own fields disagree with each other."""
    out = []
    ids, bounds, mask, input_ids = pack["ids"], pack["boundaries"], pack["loss_mask"], pack["input_ids"]
    if pack["num_samples"] != len(ids) or len(bounds) != len(ids):
        out.append(f"num_samples {pack['num_samples']}, {len(ids)} ids, {len(bounds)} boundaries")
    offset = 0
    for i, (start, target_start, end) in enumerate(bounds):
        if start != offset or not start <= target_start <= end:
            out.append(f"boundaries[{i}] {bounds[i]} is not [start, target_start, end) from {offset}")
            break
        offset = end
    else:
        if mask != _mask(bounds):
            out.append(f"loss_mask differs from the boundaries at {_first_difference(mask, _mask(bounds))}")
    if pack["num_tokens"] != offset:
        out.append(f"num_tokens {pack['num_tokens']} but the boundaries end at {offset}")
    if input_ids is not None and len(input_ids) != pack["num_tokens"]:
        out.append(f"{len(input_ids)} input_ids but num_tokens {pack['num_tokens']}")
    return out


def _sample_disagreements(pack: Mapping[str, Any], rows: list[Mapping], tok: QwenTokenizer) -> list[str]:
    """How the pack disagrees with its samples rebuilt in `ids` order."""
    out, ids, bounds, images, offset = [], [], [], [], 0
    for sample_id, row in zip(pack["ids"], rows):
        try:
            if row.get("task") != pack["task"]:
                out.append(f"sample {sample_id!r} is task {row.get('task')!r}, the pack {pack['task']!r}")
            prefix, target = tok.encode(row["prefix"]), tok.encode(row["target"])
            images += row["images"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # its own check reports it
            return [*out, f"sample {sample_id!r} cannot be rebuilt ({type(exc).__name__}: {exc})"]
        bounds.append([offset, offset + len(prefix), offset + len(prefix) + len(target)])
        ids += prefix + target
        offset = bounds[-1][2]
    if pack["boundaries"] != bounds:
        i = _first_difference(pack["boundaries"], bounds)
        out.append(f"boundaries[{i}] differ from sample {pack['ids'][min(i, len(rows) - 1)]!r} rebuilt")
    stored = pack["input_ids"]
    if stored is not None and stored != ids:
        at = _first_difference(stored, ids)
        owner = next((n for n, b in enumerate(bounds) if at < b[2]), len(bounds) - 1)
        got = stored[at] if at < len(stored) else "end"
        want = ids[at] if at < len(ids) else "end"
        out.append(f"input_ids[{at}] is {got}, sample {pack['ids'][owner]!r} rebuilt gives {want}")
    if pack["images"] != images:
        out.append(f"images {pack['images']} but the samples name {images}")
    return out


def check_pack(
    pack: Mapping, samples: Mapping[str, Mapping], max_tokens: int, tokenizer: QwenTokenizer | None = None
) -> list[Problem]:
    """Problems of one pack row against its samples (id -> sample row); see the module docstring."""
    problem = _pack_shape(pack)
    if problem is not None:
        return [problem]
    tok = tokenizer or get_tokenizer()
    problems = []
    disagreements = _self_disagreements(pack)
    missing = [sample_id for sample_id in pack["ids"] if sample_id not in samples]
    if missing:
        problems.append(
            Problem("pack_sample_missing", f"{len(missing)} ids without a sample: {missing[0]!r}")
        )
    else:
        disagreements += _sample_disagreements(pack, [samples[i] for i in pack["ids"]], tok)
    if pack["input_ids"] is not None:
        spans = image_spans(pack["input_ids"])
        problems += [Problem("image_span_invalid", span.problem) for span in spans if span.problem]
        paths = [span.path for span in spans]
        if pack["images"] != paths:
            disagreements.append(f"images {pack['images']} but the <img> spans name {paths}")
    if disagreements:
        more = f" (and {len(disagreements) - 1} more)" if len(disagreements) > 1 else ""
        problems.insert(0, Problem("pack_mismatch", disagreements[0] + more))
    length = max(pack["num_tokens"], len(pack["input_ids"] or ()))
    if length > max_tokens:
        problems.append(Problem("too_long", f"{length} tokens > {max_tokens}"))
    return first_per_reason(problems)
