"""Small synthetic inputs for `vlcurate sft`, drawn from the shapes domain (model/scenes.py).

`write_demo_sft_inputs(out_dir, seed, n=30, pairs_dir=None)` writes:

    images/00000.jpg ...   n rendered scenes, 256-448 px per side
    captions.jsonl         English or Chinese captions of every third image
    vqa.jsonl              3-5 QAs (colours, shapes, positions, count, background, word) of the others
    grounding.jsonl        every image: one phrase per distinct coloured shape, pixel boxes of the shapes
    text.jsonl             pure-text dialogues about colours and shapes (1-3 exchanges)
    sft.yaml               a ready config reading all of the above (+ `pairs_dir`, a completed clean
                           output, when given), writing to <out_dir>/out

Same n and seed -> identical bytes. What each record says comes from scene_tasks.py.
"""

from __future__ import annotations

import io
import json
import os
import random
from typing import Any

import yaml

from vlcurate.model.scenes import caption_en, caption_zh, random_scene, render
from vlcurate.synth.scene_tasks import ZH_SHARE, scene_phrases, scene_qas, text_dialogues


def _jsonl(path: str, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def write_demo_sft_inputs(out_dir: str, seed: int, n: int = 30, pairs_dir: str | None = None) -> str:
    """Writes the demo inputs and their sft.yaml into `out_dir` (see the module docstring); returns the
    config's path. `pairs_dir`: a completed `vlcurate clean` output to read as well."""
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    rng = random.Random(f"vlcurate-sft-demo:{seed}")
    captions, vqa, grounding = [], [], []
    for i in range(n):
        scene = random_scene(rng)
        width, height = rng.randint(256, 448), rng.randint(256, 448)
        image = f"images/{i:05d}.jpg"
        buffer = io.BytesIO()
        render(scene, width, height).save(buffer, "JPEG", quality=90)
        with open(os.path.join(out_dir, image), "wb") as fh:
            fh.write(buffer.getvalue())
        lang = "zh" if rng.random() < ZH_SHARE else "en"
        key = f"shape-{i:05d}"
        if i % 3 == 0:
            caption = caption_zh(scene, rng) if lang == "zh" else caption_en(scene, rng)
            captions.append({"id": key, "image": image, "caption": caption, "lang": lang})
        else:
            vqa.append({"id": key, "image": image, "lang": lang, "qas": scene_qas(scene, lang, rng)})
        grounding.append(
            {
                "id": key,
                "image": image,
                "width": width,
                "height": height,
                "lang": lang,
                "phrases": scene_phrases(scene, lang, width, height),
            }
        )
    _jsonl(os.path.join(out_dir, "captions.jsonl"), captions)
    _jsonl(os.path.join(out_dir, "vqa.jsonl"), vqa)
    _jsonl(os.path.join(out_dir, "grounding.jsonl"), grounding)
    _jsonl(os.path.join(out_dir, "text.jsonl"), text_dialogues(max(4, n // 3), rng))
    inputs = [
        {"name": "shapes_captions", "kind": "captions", "paths": ["captions.jsonl"]},
        {"name": "shapes_vqa", "kind": "vqa", "paths": ["vqa.jsonl"]},
        {"name": "shapes_grounding", "kind": "grounding", "paths": ["grounding.jsonl"]},
        {"name": "shapes_chat", "kind": "text", "paths": ["text.jsonl"]},
    ]
    if pairs_dir is not None:
        rel = os.path.relpath(os.path.abspath(pairs_dir), os.path.abspath(out_dir))
        inputs.insert(0, {"name": "cleaned", "kind": "pairs", "paths": [rel]})
    config = {
        "inputs": inputs,
        "output": {"dir": "out", "samples_per_shard": 200},
        "seed": seed,
        "model_max_length": 2048,
        "multi_image": {"share": 0.3, "min_images": 2, "max_images": 3},
        "text_share": 0.1,
    }
    path = os.path.join(out_dir, "sft.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config, fh, sort_keys=False, allow_unicode=True)
    return path
