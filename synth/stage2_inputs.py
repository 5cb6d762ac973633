"""The demo's stage-2 input: task records of `vlcurate format --stage 2` (formatters/stage2.py schemas) made
from the demo's SFT inputs (sft_inputs.py)."""

from __future__ import annotations

import json
import os


def write_demo_stage2_inputs(sft_inputs: str) -> str:
    """Stage-2 task records (formatters/stage2.py schemas) from the demo's SFT inputs: captioning, VQA,
    referring grounding, grounded captioning, caption with grounding, pure text. (OCR needs word quads,
    which the synthetic scenes do not record; its formatter is covered by tests.) Image paths are
    relative to `sft_inputs`."""

    def rows(name: str) -> list[dict]:
        with open(os.path.join(sft_inputs, name), encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    records: list[dict] = []
    for r in rows("captions.jsonl"):
        records.append(
            {
                "task": "captioning",
                "id": f"cap/{r['id']}",
                "image": r["image"],
                "caption": r["caption"],
                "lang": r.get("lang", "en"),
            }
        )
    for r in rows("vqa.jsonl"):
        for i, qa in enumerate(r["qas"][:2]):
            records.append(
                {
                    "task": "vqa",
                    "id": f"vqa/{r['id']}/{i}",
                    "image": r["image"],
                    "question": qa["question"],
                    "answers": [{"answer": qa["answer"]}],
                }
            )
    for r in rows("grounding.jsonl"):
        size = {"image": r["image"], "width": r["width"], "height": r["height"]}
        for i, ph in enumerate(r["phrases"]):
            for task, record in phrase_records(ph["phrase"], ph["boxes"]).items():
                records.append({**record, **size, "task": task, "id": f"{ID_PREFIXES[task]}/{r['id']}/{i}"})
    for r in rows("text.jsonl"):
        text = "\n".join(turn["value"] for turn in r["conversations"])
        records.append({"task": "pure_text", "id": f"text/{r.get('id', len(records))}", "text": text})
    path = os.path.join(sft_inputs, "stage2.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n" for rec in records)
    return path


ID_PREFIXES = {"referring_grounding": "ref", "grounded_captioning": "gcap", "caption_with_grounding": "cwg"}


def phrase_records(phrase: str, boxes: list) -> dict[str, dict]:
    """The demo's three grounding tasks for one phrase of a scene and its pixel boxes (records without
    task, id and image size): find the phrase, name the first box, a one-phrase grounded caption. The
    compact model's trainer uses these too, so it knows the demo's texts."""
    caption = f"A picture with {phrase} in it."
    start = caption.index(phrase)
    return {
        "referring_grounding": {"phrase": phrase, "boxes": boxes},
        "grounded_captioning": {"box": boxes[0], "caption": f"a {phrase.removeprefix('the ')}"},
        "caption_with_grounding": {
            "caption": caption,
            "refs": [{"span": [start, start + len(phrase)], "boxes": boxes}],
        },
    }
