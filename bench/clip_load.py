"""How long a worker takes to load a CLIP checkpoint: built without random initialization (what load_clip
does for a model with weights) vs initialized first, as open_clip does on its own.

    python bench/clip_load.py [--models ViT-B-32 ViT-L-14] [--repeats 3]

Saves a random checkpoint per model in a temporary folder, then loads it with `load_clip(name@path)` on
the CPU, the two ways alternating, and checks that both give the checkpoint's exact weights. Writes
bench/results/clip_load.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

from report import write_results


def timed_load(spec: str, skip_init: bool, reference: dict) -> float:
    import torch

    from vlcurate.model import clip_models

    building = clip_models._building
    if not skip_init:  # open_clip's own way: initialize, then overwrite with the checkpoint
        clip_models._building = lambda skip_init: building(False)
    try:
        started = time.perf_counter()
        loaded = clip_models.load_clip(spec)
        seconds = time.perf_counter() - started
    finally:
        clip_models._building = building
    weights = loaded.model.state_dict()
    if not all(torch.equal(weights[name], tensor) for name, tensor in reference.items()):
        raise SystemExit(f"{spec}: loaded weights differ from the checkpoint (skip_init={skip_init})")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-L-14"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import open_clip
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = open_clip.create_model(name, pretrained=None)
            path = os.path.join(tmp, f"{name}.pt")
            torch.save(model.state_dict(), path)
            reference = {k: v.clone() for k, v in model.state_dict().items()}
            del model
            timed_load(f"{name}@{path}", True, reference)  # warm-up: first-call costs of both ways
            runs: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.repeats):
                for skip_init in (True, False):
                    runs[skip_init].append(timed_load(f"{name}@{path}", skip_init, reference))
            without, with_init = statistics.median(runs[True]), statistics.median(runs[False])
            rows.append(
                {
                    "model": name,
                    "median_s_without_init": round(without, 2),
                    "median_s_with_init": round(with_init, 2),
                    "runs_s_without_init": [round(s, 2) for s in runs[True]],
                    "runs_s_with_init": [round(s, 2) for s in runs[False]],
                    "speedup": round(with_init / without, 2),
                }
            )
            os.remove(path)
    print(f"{'model':10} {'without init s':>15} {'with init s':>12} {'speed-up':>9}")
    for r in rows:
        print(
            f"{r['model']:10} {r['median_s_without_init']:>15} {r['median_s_with_init']:>12} {r['speedup']:>8}x"
        )
    path = write_results(
        "clip_load",
        rows,
        f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
