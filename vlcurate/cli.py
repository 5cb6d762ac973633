"""The `vlcurate` command line."""

from __future__ import annotations

import argparse
import logging
import sys

from vlcurate.fast_process import exit_without_teardown, imports_without_gc

# Beam warns at import that the Google Cloud clients are absent (only gs:// needs them, and Beam says so
# there), and RunInference that it cannot read memory usage on this platform: noise for every run.
_NOISE = ("apitools not found", "Resource module is not available")
logging.getLogger().addFilter(lambda record: not any(n in record.getMessage() for n in _NOISE))

with imports_without_gc():  # Beam and Arrow: vlcurate/fast_process.py says why
    from vlcurate.pipelines.check_job import add_check_parser, cmd_check
    from vlcurate.pipelines.format import add_format_parser, cmd_format
    from vlcurate.pipelines.options import check_flags, parser_flags
    from vlcurate.pipelines.sft import add_sft_parser, cmd_sft
    from vlcurate.pipelines.synth import add_synth_parser, cmd_synth
    from vlcurate.schemas.errors import ConfigError, RunFailedError


def _add_clean(sub) -> None:
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
    p.add_argument("--audit", action="store_true", help="run every filter on every pair (overlap stats)")
    p.add_argument("--overwrite", action="store_true", help="replace a completed output directory")
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


def cmd_clean(args: argparse.Namespace, beam_args: list[str]) -> int:
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
    config.audit = config.audit or args.audit
    config.output.overwrite = config.output.overwrite or args.overwrite
    if args.max_reject_share is not None:
        try:
            config.max_reject_share = float(args.max_reject_share)
        except ValueError:  # __post_init__ refuses it, naming the valid range
            config.max_reject_share = args.max_reject_share
    config.__post_init__()
    run_clean(config, beam_args, progress=not args.no_progress, cli_disable=cli_disable)
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="every stage end to end on bundled synthetic data, offline")
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--n", type=int, default=600, help="synthetic pairs (default 600)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")


def cmd_demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from vlcurate.pipelines.demo import run_demo

    run_demo(args.out, n=args.n, overwrite=args.overwrite, beam_args=beam_args)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vlcurate", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_clean(sub)
    add_synth_parser(sub)
    add_format_parser(sub)
    add_sft_parser(sub)
    add_check_parser(sub)
    _add_demo(sub)
    # No abbreviations: `--worker` must not pass for --workers, nor `--run` for Beam's --runner.
    for command in sub.choices.values():
        command.allow_abbrev = False
    args, beam_args = parser.parse_known_args(argv)
    try:
        check_flags(beam_args, parser_flags(sub.choices[args.command]), beam=args.command != "synth")
        if args.command == "clean":
            return cmd_clean(args, beam_args)
        if args.command == "synth":
            return cmd_synth(args)
        if args.command == "format":
            return cmd_format(args, beam_args)
        if args.command == "sft":
            return cmd_sft(args, beam_args)
        if args.command == "check":
            return cmd_check(args, beam_args)
        if args.command == "demo":
            return cmd_demo(args, beam_args)
    except ConfigError as exc:
        print(f"vlcurate: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except RunFailedError as exc:
        print(f"vlcurate: error: {exc}", file=sys.stderr)
        return 1
    return 1


def one_line(exc: Exception) -> str:
    """An error as one line of stderr (a YAML parser's message spans several)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def entry() -> None:
    """The `vlcurate` console command: main(), then a fast exit (vlcurate/fast_process.py). An exception
    exits the normal way."""
    exit_without_teardown(main())


if __name__ == "__main__":
    entry()
