"""`vlcurate check` of one SFT sample (finetune.py's `{"id", "conversations"}`), as the trainer sees it.

First formatters/sft_validate.py `validate_sample` (structure, roles, image markup and numbering, path
rules, special tokens in text, boxes, and `too_long` by the exact `preprocess`), without looking for the
image files (the pipeline checks each image once). It stops at the first structural problem, so a
structurally broken sample reports one of: `bad_sample`, `bad_roles`, `image_in_assistant`,
`bad_image_markup`, `picture_numbering`, `picture_ref_unknown`, `image_path_too_long`,
`image_path_invalid`, `special_tokens`, `bad_box`.

A sample that tokenizes is then checked on its whole sequence (not padded, not cut):
- `too_long`: longer than `max_len` (finetune.py would silently cut it);
- `image_span_invalid`: an `<img>` span the model cannot use (model/trainer_view.py image_spans);
- `no_supervised_tokens`: no supervised content label (defined in formatters/check_findings.py: ChatML's
  own `<|im_start|>`, `<|im_end|>` and `\\n` never count, nor whitespace-only tokens).
"""

from __future__ import annotations

from vlcurate.formatters.check_findings import Problem, first_per_reason, has_supervised_content
from vlcurate.formatters.sft_validate import validate_sample
from vlcurate.model.qwen_tokenizer import ImagePathError, QwenTokenizer, get_tokenizer
from vlcurate.model.trainer_view import TrainerView, image_spans


def check_sft_sample(
    sample: object, max_len: int, tokenizer: QwenTokenizer | None = None
) -> tuple[list[Problem], TrainerView | None]:
    """(problems, what the trainer sees). The view (unpadded, uncut) comes only with no problem at all,
    so the model side never gets a sequence the trainer would cut or could not load."""
    tok = tokenizer or get_tokenizer()
    try:
        validation = validate_sample(sample, max_len, path_exists=None, tokenizer=tok, pad=False)
    except ImagePathError as exc:  # validate_sample checks paths first; this is a safety net
        return [Problem(exc.reason, str(exc))], None
    encoding = validation.encoding
    if encoding is None:  # structurally broken: not tokenized
        return list(validation.problems), None
    problems = list(validation.problems)  # too_long, or nothing
    spans = image_spans(encoding.input_ids)
    problems += [Problem("image_span_invalid", span.problem) for span in spans if span.problem]
    if not has_supervised_content(encoding.labels, tok):
        problems.append(Problem("no_supervised_tokens", "no assistant turn has a supervised content token"))
    problems = first_per_reason(problems)
    if problems:
        return problems, None
    return [], TrainerView(encoding.input_ids, encoding.labels, [span.path for span in spans])
