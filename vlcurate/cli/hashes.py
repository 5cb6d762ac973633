"""`vlcurate hashes DIR`: the perceptual hash of every image of an evaluation set, as the `id<TAB>hash` file
the decontaminate step reads (pipelines/eval_sets.py), so a set of images need not travel with every job."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vlcurate.filters.image_hash import NEAR_DUP_HASH_NAME
from vlcurate.pipelines.eval_sets import eval_hashes
from vlcurate.pipelines.output import write_bytes_atomic


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "hashes",
        help="write the perceptual hashes of a folder of evaluation images (for decontaminate.sets)",
        description="Hashes every image of DIR as decode_check hashes a pair's image and writes "
        "`id<TAB>hash` lines, sorted by id; name the file in steps.decontaminate.sets.",
    )
    p.add_argument("directory", metavar="DIR", help="a folder of images (local or gs://)")
    p.add_argument("--out", metavar="FILE", help="the .tsv to write (default: standard output)")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    lines = [f"# {NEAR_DUP_HASH_NAME} hashes of {args.directory}"]
    lines += [f"{eval_id}\t{hash_hex}" for eval_id, hash_hex in eval_hashes(args.directory)]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_bytes_atomic(args.out, text.encode("utf-8"))
        print(f"[vlcurate] hashes: {len(lines) - 1} images -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
