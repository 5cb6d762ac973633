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

# One module per subcommand (its parser and what runs it: add_parser(sub), run(args, beam_args)). They
# import the jobs, and with them Beam and Arrow: vlcurate/fast_process.py says why inside this block.
with imports_without_gc():
    from vlcurate.cli import check, clean, dedup, demo, hashes, retune, sft, steps, synth
    from vlcurate.cli import format as format_command
    from vlcurate.pipelines.options import check_flags, parser_flags
    from vlcurate.schemas.errors import ConfigError, RunFailedError

# In the order `vlcurate --help` lists them.
COMMANDS = {
    "clean": clean,
    "retune": retune,
    "synth": synth,
    "format": format_command,
    "sft": sft,
    "check": check,
    "dedup": dedup,
    "demo": demo,
    "steps": steps,
    "hashes": hashes,
}
# Commands that run no pipeline: every flag must be their own (the others pass the rest to Beam).
NOT_BEAM = ("synth", "steps", "hashes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vlcurate", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    # No abbreviations: `--worker` must not pass for --workers, nor `--run` for Beam's --runner.
    for command in sub.choices.values():
        command.allow_abbrev = False
    args, beam_args = parser.parse_known_args(argv)
    try:
        check_flags(beam_args, parser_flags(sub.choices[args.command]), beam=args.command not in NOT_BEAM)
        return COMMANDS[args.command].run(args, beam_args)
    except ConfigError as exc:
        print(f"vlcurate: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except RunFailedError as exc:
        print(f"vlcurate: error: {exc}", file=sys.stderr)
        return 1


def one_line(exc: Exception) -> str:
    """An error as one line of stderr (a YAML parser's message spans several)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def entry() -> None:
    """The `vlcurate` console command: main(), then a fast exit (vlcurate/fast_process.py). An exception
    exits the normal way."""
    exit_without_teardown(main())
