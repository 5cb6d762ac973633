"""What a Qwen-VL trainer sees of one sample: token ids, labels and the images its `<img>` spans name.

One builder per output kind, all on the exact tokenizer (docs/qwenvl-format.md):
- stage-1/2 samples: `encode(prefix) + encode(target)`; labels are -100 on the prefix and the ids on the
  target (the target ends with `<|endoftext|>`), as in the paper's PREFIX (no loss) + TARGET (loss);
- packs: the stored ids with labels where the pack's loss mask is 1;
- SFT samples: finetune.py's `preprocess` (ChatML, its label mask), not padded.

Image paths are read back from the ids, as Qwen-VL's model does: the bytes between `<img>` and the first
`<imgpad>`. `image_spans` also reports spans the model cannot use, for the shard checker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from vlcurate.model.qwen_tokenizer import (
    IGNORE_INDEX,
    IMAGE_SLOTS,
    IMG_END_ID,
    IMG_PAD_ID,
    IMG_START_ID,
    QwenTokenizer,
    get_tokenizer,
    preprocess_chatml,
)


@dataclasses.dataclass(frozen=True)
class ImageSpan:
    """One `<img>...</img>` in the ids. `start` is the index of `<img>`; the model writes image features
    into ids[start + 1 : start + 1 + IMAGE_SLOTS]. `problem` is None for a span the model can use."""

    start: int
    path: str
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class TrainerView:
    input_ids: list[int]  # unpadded: the real length
    labels: list[int]  # IGNORE_INDEX (-100) where no loss is taken
    images: list[str]  # paths in `<img>` order

    @property
    def supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def image_spans(ids: Sequence[int]) -> list[ImageSpan]:
    """Every `<img>` in `ids` with the path it names. A span is usable when `</img>` follows after exactly
    IMAGE_SLOTS ids, the slots are path bytes (ids 0..255) then only `<imgpad>`, and a pad sits within the
    first IMAGE_SLOTS - 1 slots (Qwen-VL finds the path's end by the first pad)."""
    ids = ids if isinstance(ids, (list, tuple)) else list(ids)
    spans, start = [], -1
    while True:  # list.index scans in C: most ids are text, and this runs on every sample
        try:
            start = ids.index(IMG_START_ID, start + 1)
        except ValueError:
            return spans
        end = start + 1 + IMAGE_SLOTS
        slots = list(ids[start + 1 : end])
        try:
            first_pad = slots.index(IMG_PAD_ID)
        except ValueError:
            first_pad = len(slots)
        head = slots[:first_pad]
        try:
            path = bytes(head).decode("utf-8", errors="replace")
            path_bytes_only = True
        except ValueError:  # an id outside 0..255 among the path bytes
            path = bytes(t for t in head if 0 <= t < 256).decode("utf-8", errors="replace")
            path_bytes_only = False
        problem = None
        if len(slots) < IMAGE_SLOTS or end >= len(ids) or ids[end] != IMG_END_ID:
            problem = f"<img> at {start} is not closed by </img> after {IMAGE_SLOTS} slots"
        elif first_pad >= IMAGE_SLOTS - 1:
            problem = f"<img> at {start} has no <imgpad> within its first {IMAGE_SLOTS - 1} slots"
        elif not path_bytes_only or slots.count(IMG_PAD_ID) != len(slots) - first_pad:
            problem = f"<img> at {start} holds ids other than path bytes then <imgpad>"
        spans.append(ImageSpan(start, path, problem))


def _view(ids: list[int], labels: list[int]) -> TrainerView:
    return TrainerView(ids, labels, [span.path for span in image_spans(ids)])


def stage_sample_view(prefix: str, target: str, tokenizer: QwenTokenizer | None = None) -> TrainerView:
    """A stage-1/2 sample row's `prefix` and `target` (which already ends with `<|endoftext|>`)."""
    tok = tokenizer or get_tokenizer()
    prefix_ids, target_ids = tok.encode(prefix), tok.encode(target)
    return _view(prefix_ids + target_ids, [IGNORE_INDEX] * len(prefix_ids) + target_ids)


def pack_view(input_ids: Sequence[int], loss_mask: Sequence[int]) -> TrainerView:
    ids = list(input_ids)
    return _view(ids, [t if m else IGNORE_INDEX for t, m in zip(ids, loss_mask)])


def sft_view(
    conversations: Sequence[Mapping[str, str]], tokenizer: QwenTokenizer | None = None
) -> TrainerView:
    """finetune.py's sequence and labels at the sample's real length (no padding, no cut)."""
    encoding = preprocess_chatml(conversations, None, tokenizer=tokenizer)
    return _view(encoding.input_ids, encoding.labels)
