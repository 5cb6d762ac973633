"""`vlcurate clean`: its arguments, and a CleanConfig from them (a config file, or --input alone)."""

from __future__ import annotations

import argparse
from typing import Any

from vlcurate.schemas.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "clean",
        help="clean image-text pairs into WebDataset shards",
        description="Other flags go to Beam (e.g. --runner=DataflowRunner); ones Beam does not know either "
        "are refused on a local runner.",
    )
    p.add_argument("--config", help="YAML config (see README); --input/--output override it")
    p.add_argument("--input", nargs="+", help="input files or globs (without --config: one source)")
    p.add_argument(
        "--input-format",
        default=None,
        choices=["webdataset", "parquet", "jsonl", "csv"],
        help="format of --input (default: guessed from the file extension)",
    )
    p.add_argument("--output", help="output directory (local or gs://)")
    p.add_argument("--workers", type=int, help="local worker processes (default 1: in-process)")
    p.add_argument("--disable", help="comma-separated steps to switch off")
    p.add_argument(
        "--enable", help="comma-separated steps to switch on that are off by default (semantic_dedup)"
    )
    p.add_argument("--audit", action="store_true", help="run every filter on every pair (overlap stats)")
    p.add_argument("--overwrite", action="store_true", help="replace a completed output directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help="run in chunks of input files and go on from the chunks a killed run finished (kept in "
        ".<output>.resume beside the output); the output is the same as without it",
    )
    p.add_argument(
        "--chunk-files",
        type=int,
        metavar="N",
        help="with --resume: input files per chunk (default: the input cut into at most 32 chunks)",
    )
    p.add_argument("--no-progress", action="store_true", help="do not print progress lines")
    p.add_argument(
        "--max-reject-share",
        metavar="F",
        help="fail (exit 1, no COMPLETED) when one step rejects more than this share (0 < F <= 1) of the "
        "pairs that reached it; overrides the config's max_reject_share",
    )


def _guess_format(paths: list[str]) -> str:
    for ext, fmt in (
        (".tar", "webdataset"),
        (".parquet", "parquet"),
        (".jsonl", "jsonl"),
        (".json", "jsonl"),
        (".csv", "csv"),
    ):
        if all(p.endswith(ext) for p in paths):
            return fmt
    raise ConfigError("cannot tell the input format from the file names; pass --input-format.")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    # Imported when `clean` runs: the step chain's modules load only for the command that uses them.
    from vlcurate.pipelines.clean import default_config, run_clean
    from vlcurate.schemas.config import load_clean_config

    if args.config:
        config = load_clean_config(args.config)
        if args.input:
            raise ConfigError("--input replaces the config's sources only without --config; edit `sources`.")
    elif args.input and args.output:
        config = default_config(args.input, args.output, args.input_format or _guess_format(args.input))
    else:
        raise ConfigError("give --config FILE, or --input PATHS and --output DIR.")
    if args.output:
        config.output.dir = args.output
    if args.workers is not None:
        config.workers = args.workers
    cli_disable = [s.strip() for s in (args.disable or "").split(",") if s.strip()]
    config.disable = [*config.disable, *cli_disable]
    config.enable = [*config.enable, *(s.strip() for s in (args.enable or "").split(",") if s.strip())]
    config.audit = config.audit or args.audit
    config.output.overwrite = config.output.overwrite or args.overwrite
    if args.max_reject_share is not None:
        try:
            config.max_reject_share = float(args.max_reject_share)
        except ValueError:  # __post_init__ refuses it, naming the valid range
            config.max_reject_share = args.max_reject_share
    config.__post_init__()
    if args.chunk_files is not None and (not args.resume or args.chunk_files < 1):
        raise ConfigError("--chunk-files takes a number >= 1, and only with --resume.")
    run_clean(
        config,
        beam_args,
        progress=not args.no_progress,
        cli_disable=cli_disable,
        resume=args.resume,
        chunk_files=args.chunk_files,
    )
    return 0
