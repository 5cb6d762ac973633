"""The rule that turns per-sample model losses into findings of `vlcurate check` (plain Python, no torch).

Input: one row per sample, a mapping or an object with `id`, `task`, `loss` (mean next-token loss over
the supervised tokens with the sample's own images), `swap_loss` (the same with another sample's
images; None when the sample has no image) and optionally `box_loss` and `flip_loss` (the mean loss
over the answer's box-coordinate tokens with its own images and with them mirrored left to right; None
where not scored: answers without boxes, or with boxes a mirror does not move). Reasons, at most one
finding per (sample, reason):
- `loss_not_finite`: the loss is NaN or infinite (nothing else is judged for that sample);
- `loss_outlier`: loss > median + max(k * 1.4826 * MAD, min_excess) of the finite losses of its task (a
  robust z-score: 1.4826 * MAD estimates the standard deviation of normal data), judged only for tasks
  with at least `min_task_samples` finite losses and a MAD above zero. `min_excess` (nats per token)
  keeps a task the model nearly always gets right (short VQA answers: median loss 0.01, MAD 0.01) from
  flagging every sample that is merely less certain;
- `image_does_not_help`: the gain swap_loss - loss is at most max(min_gain, gain_share x the task's
  median gain): the own image lowers the loss much less than it does for the task's other samples (or
  not at all), so the text does not describe its image (swapped images, exchanged captions, wrong
  boxes). With a stranger's image in place of its own, a sample's "gain" is the difference of two
  strangers' losses, about 0, so a plain `gain <= 0` would catch only half of them; the task's median
  says how much a fitting image helps with this model. Judged where both losses are finite; the share
  only in tasks with at least `min_task_samples` gains and a positive median.
- `boxes_fit_mirrored_image`: box_loss - flip_loss > min_mirror_gain: the answer's boxes fit the image
  mirrored better than the image itself (boxes mirrored, or measured on an image before it was turned).
  A mirror keeps everything but the positions, so unlike the swap it isolates them; only the coordinate
  tokens are compared, so the rest of a long answer does not dilute them.
Findings are sorted by (task, id, reason order above), so the output never depends on input order.

Defaults: OUTLIER_K = 3.5 is the classic modified z-score cut (Iglewicz & Hoaglin); MIN_GAIN (nats per
supervised token) is 0: a sample whose own image does not lower its loss at all is always flagged;
MIN_MIRROR_GAIN 0: boxes that fit the mirrored image better at all. GAIN_SHARE (0.1) and
MIN_OUTLIER_EXCESS (0.3) were chosen on the held-out eval of the previous bundled weights; what they
catch with the current ones is `flags` in model/weights/compact-qwenvl/eval.json (`flags_by_threshold`:
other values), and its README gives a second seed.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

OUTLIER_K = 3.5
MIN_OUTLIER_EXCESS = 0.3
MIN_GAIN = 0.0
GAIN_SHARE = 0.1
MIN_MIRROR_GAIN = 0.0
MIN_TASK_SAMPLES = 20
MAD_TO_SIGMA = 1.4826

REASONS = ("loss_not_finite", "loss_outlier", "image_does_not_help", "boxes_fit_mirrored_image")


@dataclasses.dataclass(frozen=True)
class Finding:
    id: str
    task: str
    reason: str
    detail: str


def _get(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def outlier_thresholds(
    rows: Iterable[Any],
    k: float = OUTLIER_K,
    min_task_samples: int = MIN_TASK_SAMPLES,
    min_excess: float = MIN_OUTLIER_EXCESS,
) -> dict[str, float | None]:
    """Per task: the loss above which a sample is an outlier, or None where the task is not judged."""
    losses: dict[str, list[float]] = {}
    for row in rows:
        loss = _get(row, "loss")
        losses.setdefault(str(_get(row, "task")), [])
        if _finite(loss):
            losses[str(_get(row, "task"))].append(float(loss))
    out: dict[str, float | None] = {}
    for task, values in losses.items():
        if len(values) < min_task_samples:
            out[task] = None
            continue
        median = statistics.median(values)
        mad = statistics.median(abs(v - median) for v in values)
        out[task] = median + max(k * MAD_TO_SIGMA * mad, min_excess) if mad > 0 else None
    return out


def gain_thresholds(
    rows: Iterable[Any],
    min_gain: float = MIN_GAIN,
    gain_share: float = GAIN_SHARE,
    min_task_samples: int = MIN_TASK_SAMPLES,
) -> dict[str, float]:
    """Per task: the image gain (swap_loss - loss) at or below which a sample is flagged."""
    gains: dict[str, list[float]] = {}
    for row in rows:
        loss, swap = _get(row, "loss"), _get(row, "swap_loss")
        task = gains.setdefault(str(_get(row, "task")), [])
        if _finite(loss) and _finite(swap):
            task.append(float(swap) - float(loss))
    return {
        task: max(min_gain, gain_share * statistics.median(values))
        if len(values) >= min_task_samples
        else min_gain
        for task, values in gains.items()
    }


def loss_findings(
    rows: Iterable[Any],
    k: float = OUTLIER_K,
    min_gain: float = MIN_GAIN,
    min_task_samples: int = MIN_TASK_SAMPLES,
    min_mirror_gain: float = MIN_MIRROR_GAIN,
    gain_share: float = GAIN_SHARE,
    min_excess: float = MIN_OUTLIER_EXCESS,
) -> list[Finding]:
    """The findings of `rows` (see the module docstring), sorted by task, id and reason."""
    rows = list(rows)
    limits = outlier_thresholds(rows, k, min_task_samples, min_excess)
    least_gain = gain_thresholds(rows, min_gain, gain_share, min_task_samples)
    found = []
    for row in rows:
        sample, task = str(_get(row, "id")), str(_get(row, "task"))
        loss, swap = _get(row, "loss"), _get(row, "swap_loss")
        if not _finite(loss):
            found.append(Finding(sample, task, "loss_not_finite", f"loss is {loss}"))
            continue
        limit = limits.get(task)
        if limit is not None and loss > limit:
            found.append(
                Finding(
                    sample,
                    task,
                    "loss_outlier",
                    f"loss {loss:.3f} > {limit:.3f} (robust z > {k:g} in {task})",
                )
            )
        if _finite(swap) and swap - loss <= least_gain[task]:
            found.append(
                Finding(
                    sample,
                    task,
                    "image_does_not_help",
                    f"another image's loss {swap:.3f} - own {loss:.3f} = {swap - loss:.3f}"
                    f" <= {least_gain[task]:.3f}",
                )
            )
        box, flip = _get(row, "box_loss"), _get(row, "flip_loss")
        if _finite(box) and _finite(flip) and box - flip > min_mirror_gain:
            found.append(
                Finding(
                    sample,
                    task,
                    "boxes_fit_mirrored_image",
                    f"box tokens: own {box:.3f} - mirrored image's {flip:.3f} = {box - flip:.3f}"
                    f" > {min_mirror_gain:g}",
                )
            )
    return sorted(found, key=lambda f: (f.task, f.id, REASONS.index(f.reason), f.detail))


def flag_samples(rows: Iterable[Any], **thresholds: Any) -> list[tuple[str, str, str]]:
    """`loss_findings` as (id, reason, detail) tuples, in the same order."""
    return [(f.id, f.reason, f.detail) for f in loss_findings(rows, **thresholds)]
