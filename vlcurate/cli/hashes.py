"""`vlcurate hashes DIR`: the perceptual hash of every image of an evaluation set, as the `id<TAB>hash` file
the decontaminate step reads (pipelines/eval_sets.py), so a set of images need not travel with every job;
with --embeddings, also their CLIP image embeddings for decontaminate.cosine, computed once (on a GPU
where there is one) instead of on every job's launcher."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vlcurate.filters.image_hash import NEAR_DUP_HASH_NAME
from vlcurate.pipelines.eval_sets import eval_embeddings, eval_hashes, make_embedder, write_embeddings_file
from vlcurate.pipelines.output import write_bytes_atomic
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.model_spec import DEFAULT_BUNDLED


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "hashes",
        help="write the perceptual hashes of a folder of evaluation images (for decontaminate.sets)",
        description="Hashes every image of DIR as decode_check hashes a pair's image and writes "
        "`id<TAB>hash` lines, sorted by id; name the file in steps.decontaminate.sets.",
    )
    p.add_argument("directory", metavar="DIR", help="a folder of images (local or gs://)")
    p.add_argument("--out", metavar="FILE", help="the .tsv to write (default: standard output)")
    p.add_argument(
        "--embeddings",
        metavar="FILE.npz",
        help="also write the images' CLIP embeddings here, for decontaminate.cosine (name the .npz in "
        "decontaminate.sets; a run of another model refuses it)",
    )
    p.add_argument(
        "--clip-model",
        metavar="SPEC",
        default=DEFAULT_BUNDLED,
        help="the CLIP model of the runs that will read --embeddings, as steps.clip_score.models names it "
        f"(default: clip_score's default, {DEFAULT_BUNDLED})",
    )


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.embeddings:
        if not args.embeddings.endswith(".npz"):
            raise ConfigError(f"--embeddings {args.embeddings}: name an .npz file")
        from vlcurate.filters.clip_filter import ClipScore

        spec = ClipScore(models=args.clip_model).specs()[0]  # written as a run's clip_score names it
        ids, vectors = eval_embeddings(args.directory, spec, make_embedder(spec))
        write_embeddings_file(args.embeddings, ids, vectors, spec)
        print(f"[vlcurate] hashes: {len(ids)} embeddings of {spec} -> {args.embeddings}", file=sys.stderr)
    lines = [f"# {NEAR_DUP_HASH_NAME} hashes of {args.directory}"]
    lines += [f"{eval_id}\t{hash_hex}" for eval_id, hash_hex in eval_hashes(args.directory)]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_bytes_atomic(args.out, text.encode("utf-8"))
        print(f"[vlcurate] hashes: {len(lines) - 1} images -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
