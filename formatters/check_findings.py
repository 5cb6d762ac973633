"""What `vlcurate check` can say about one record: the Problem type, every structural reason with its
meaning, and the helpers the per-record checks share (formatters/check_sft.py, check_samples.py,
check_clean.py, check_images.py).

A check returns every problem of a record it can find cheaply, at most one per reason (the first one's
detail). The reasons are stable names: the pipeline counts them and docs list them.

"Supervised content" (reason `no_supervised_tokens`) is defined on the labels the trainer uses: a label
that is not -100, is none of `<|im_start|>`, `<|im_end|>`, `<|endoftext|>` (the tokens ChatML or the end
of a stage-1/2 target always supervise) and is not a whitespace-only token (so the `\\n` ChatML
supervises after every `<|im_end|>` does not count, and neither does an answer of blanks). A record
without one trains the model on structure alone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from vlcurate.formatters.sft_validate import Problem
from vlcurate.model.qwen_tokenizer import (
    ENDOFTEXT_ID,
    IGNORE_INDEX,
    IM_END_ID,
    IM_START_ID,
    N_RANKS,
    QwenTokenizer,
    get_tokenizer,
)

__all__ = ["STRUCTURAL_REASONS", "Problem", "first_per_reason", "has_supervised_content"]

STRUCTURAL_REASONS: dict[str, str] = {
    # SFT samples (formatters/sft_validate.py validate_sample)
    "bad_sample": "not a record of its kind: missing or extra fields, wrong types, text that is not Unicode",
    "bad_roles": "SFT roles are not user/assistant alternating, starting with user, ending with assistant",
    "image_in_assistant": "an SFT assistant turn holds <img>, </img> or <imgpad>",
    "bad_image_markup": "image markup outside the place the format puts images (SFT: `Picture n: "
    "<img>..</img>\\n` in a user turn; stage 1/2: `<img>..</img>` at the start of the prefix)",
    "picture_numbering": "SFT picture announcements do not count 1..k across the conversation",
    "picture_ref_unknown": "SFT text names a `Picture n` (or 图n) not announced by then",
    "image_path_too_long": "an image path has over 254 UTF-8 bytes: no <imgpad> fits in its <img> span",
    "image_path_invalid": "an image path is not NFC, not relative, holds `..`, `\\`, a URL scheme or a "
    "special token",
    "special_tokens": "a special-token string in free text (caption, question, answer, OCR text) where "
    "the task's template puts none: the trainer would read a control token",
    "bad_box": "a <box> that is not `(x1,y1),(x2,y2)` with integers 0..999, x1<=x2, y1<=y2",
    "bad_quad": "a <quad> that is not 4 points `(x,y)` with integers 0..999",
    "too_long": "more tokens than the limit (SFT model_max_length, stage-1/2 --max-tokens): the trainer "
    "cuts it",
    # what the trainer sees (model/trainer_view.py)
    "image_span_invalid": "an <img> span the model cannot use: not closed by </img> after 256 slots, no "
    "<imgpad> in the first 255, or ids other than path bytes then pads",
    "no_supervised_tokens": "no supervised content token (see formatters/check_findings.py), or a stage "
    "target that does not end with <|endoftext|>",
    # stage-1/2 sample rows
    "unknown_task": "a stage-1/2 task vlcurate does not write, so its markup cannot be judged exactly",
    "token_count_mismatch": "stored prefix_tokens/target_tokens/num_tokens differ from a recount",
    "images_field_mismatch": "the `images` field is not the paths the <img> spans name, in order",
    # packs
    "bad_pack": "a pack row without the fields and types formatters/packing.py writes",
    "pack_sample_missing": "a pack names a sample id that no sample row has",
    "pack_mismatch": "a pack disagrees with its samples or itself (ids, boundaries, loss mask, counts, "
    "images, task)",
    # clean shards
    "bad_members": "a tar sample whose members are not one image, a .txt and a .json",
    "bad_json": "a tar sample's .json member is not a JSON object",
    "twin_differs": "a tar sample and the Parquet twin row at its position disagree (key, uid, caption, "
    "size), or there is no twin row",
    "txt_differs": "a tar sample's .txt is not the caption its .json holds",
    "image_size_mismatch": "the decoded image (after EXIF orientation) is not the stored width x height",
    # images (formatters/check_images.py)
    "image_missing": "the image is absent (no file, no tar member)",
    "image_undecodable": "the bytes are no image PIL can decode, or not convertible to RGB",
    "image_truncated": "the image file ends before its pixel data does",
    "too_many_pixels": "more pixels than the decompression-bomb guard allows: not decoded",
    # Given by the check job itself (pipelines/check.py, check_read.py) rather than a record's check:
    "image_outside_root": "the image path resolves (symlinks followed) outside the output's image root",
    "image_not_a_file": "the image path names a device, FIFO, socket or folder: never opened",
    "image_too_large": "the image file is over 64 MiB: not read",
    "duplicate_id": "several records share this id",
    "shard_unreadable": "a shard file that cannot be read or parsed as a whole",
}


def first_per_reason(problems: Iterable[Problem | None]) -> list[Problem]:
    """The problems in order, Nones dropped, keeping the first of each reason."""
    seen: set[str] = set()
    out = []
    for problem in problems:
        if problem is not None and problem.reason not in seen:
            seen.add(problem.reason)
            out.append(problem)
    return out


@functools.lru_cache(maxsize=4)
def _not_content_ids(tokenizer: QwenTokenizer) -> frozenset[int]:
    """Labels that are never supervised content: -100, the always-supervised control tokens and every
    ordinary token whose text is only whitespace (built once per tokenizer, ~0.1 s)."""
    decode = tokenizer.encoding.decode_single_token_bytes
    blank = (token for token in range(N_RANKS) if _blank_utf8(decode(token)))
    return frozenset({IGNORE_INDEX, IM_START_ID, IM_END_ID, ENDOFTEXT_ID, *blank})


def _blank_utf8(data: bytes) -> bool:
    try:
        return data.decode("utf-8").isspace()
    except UnicodeDecodeError:  # part of a multi-byte character: not whitespace on its own
        return False


def has_supervised_content(labels: Sequence[int], tokenizer: QwenTokenizer | None = None) -> bool:
    """Whether some label is supervised content (module docstring)."""
    # The set walks the labels in C: several times faster than a generator on 2,048 labels.
    return not _not_content_ids(tokenizer or get_tokenizer()).issuperset(labels)
