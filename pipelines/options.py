"""Beam pipeline options: in-process FnApiRunner by default, multi-process with --workers N. Flags and
paths are checked before anything runs: unknown flags, and remote paths or runners whose Beam extra is
missing, fail with one line."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import importlib
import inspect
from collections.abc import Collection, Iterable, Iterator

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions

from vlcurate.pipelines.beam_fixes import (
    embedded_job_server_workers,
    guard_timed_flush,
    stop_workers_together,
    workers_die_with_launcher,
)
from vlcurate.schemas.errors import ConfigError

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")

# Remote paths Beam reads through an optional extra: scheme -> (the client module its filesystem imports,
# the extra, how to install it). Beam's filesystems import without them and fail only at the first match.
SCHEME_EXTRAS = {
    "gs://": ("google.cloud.storage", "gcp", "pip install 'vlcurate[gcp]'"),
    "s3://": ("boto3", "aws", "pip install 'apache-beam[aws]'"),
    "azfs://": ("azure.storage.blob", "azure", "pip install 'apache-beam[azure]'"),
}
# What DataflowRunner imports to submit a job (part of the gcp extra).
DATAFLOW_CLIENT = "apache_beam.runners.dataflow.internal.apiclient"


def pipeline_options(
    workers: int = 1, beam_args: list[str] | None = None, paths: Iterable[str] = ()
) -> PipelineOptions:
    """FnApiRunner unless the user names another runner; the default runner would first try to download
    the Prism binary. `workers > 1` runs that many worker processes on this machine, with the fixes for
    Beam's data-plane race, its one-by-one worker stop and workers outliving a killed launcher installed
    (pipelines/beam_fixes.py); with PortableRunner's embedded job server, that many workers from its
    environment (e.g. Beam worker pools on other machines). `paths` (inputs, outputs) and the flags are
    checked for the Beam extras they need first."""
    args = list(beam_args or [])
    check_extras(paths, args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=FnApiRunner")
    options = PipelineOptions(args)
    if workers > 1 and is_local(options):
        guard_timed_flush()
        stop_workers_together()
        workers_die_with_launcher()
        options = PipelineOptions(
            [*args, f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
        )
    elif options.view_as(PortableOptions).job_endpoint == "embed":
        embedded_job_server_workers()  # fix 4: it would run every bundle on one worker
        if workers > 1:  # --workers N: N workers from the environment (e.g. a pool per machine)
            options = PipelineOptions([*args, f"--direct_num_workers={workers}"])
    return options


def is_local(options: PipelineOptions) -> bool:
    return is_local_runner(options.view_as(StandardOptions).runner)


def is_local_runner(runner: str | None) -> bool:
    return (runner or "FnApiRunner").split(".")[-1] in LOCAL_RUNNERS


def check_extras(paths: Iterable[str], beam_args: list[str]) -> None:
    """Refuses remote paths (in `paths` or flag values such as --temp_location) and the Dataflow runner
    when the Beam extra they need is not installed; Beam would fail later with a long traceback. Nothing
    is imported unless such a path or runner is named."""
    values = [*paths, *(arg.split("=", 1)[-1] for arg in beam_args)]
    for scheme, (module, extra, install) in SCHEME_EXTRAS.items():
        if any(v.startswith(scheme) for v in values) and not _importable(module):
            raise ConfigError(f"{scheme} paths need Beam's {extra} extra: {install}")
    if not any("dataflow" in arg.lower() for arg in beam_args):
        return  # no Dataflow runner named: Beam's parser (~3 ms to build) is not needed
    runner = _beam_parser().parse_known_args(beam_args)[0].runner
    if runner and "dataflow" in runner.lower() and not _importable(DATAFLOW_CLIENT):
        raise ConfigError(f"--runner={runner} needs Beam's gcp extra: pip install 'vlcurate[gcp]'")


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_flags(args: list[str], own_flags: Collection[str], beam: bool = True) -> None:
    """Refuses flags that neither the command (`own_flags`) nor Beam knows, before anything runs: Beam drops
    them with a log line, so `--worker 2` would quietly run one worker. With a remote runner they are left
    alone: Beam passes options it does not know on to it (Dataflow's service, a portable job server).
    `beam=False`: the command takes no Beam flags."""
    known, leftovers = list(own_flags), list(args)
    if beam and args:
        parser = _beam_parser()
        namespace, leftovers = parser.parse_known_args(args)
        if not is_local_runner(namespace.runner):
            return
        known += parser_flags(parser)
    for arg in leftovers:
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(f"unknown flag {name}" + (f" (did you mean {close[0]}?)" if close else ""))
    if leftovers:
        raise ConfigError(f"unexpected argument {leftovers[0]!r}")


def parser_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag a parser defines (argparse keeps them in `_actions`; Beam reads them the same way)."""
    return [flag for action in parser._actions for flag in action.option_strings]


def _beam_parser() -> argparse.ArgumentParser:
    """The parser Beam reads its flags with: every PipelineOptions class loaded adds its own (a public hook
    of get_all_options hands it over). A bad value for a known flag raises a ConfigError, not an exit."""
    parsers: list[argparse.ArgumentParser] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    parser = parsers[0]

    def error(message: str) -> None:
        raise ConfigError(message)

    parser.error = error  # argparse would print its usage and exit
    return parser


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Runs the block with Python's cyclic garbage collector passing ~100x less often.

    An in-process run holds hundreds of thousands of live records, and every full collection walks all
    of them: with the default thresholds that was ~15% of a caption-only `clean` run. Records hold no
    reference cycles, so collecting less often costs little memory. Objects alive on entry (modules,
    the pipeline graph) are frozen out of collections. Only this process is affected; worker processes
    of `--workers N` keep the defaults.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(70_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


# Beam's per-bundle state sampler sleeps up to 200 ms between samples, and a bundle's end waits for the
# current sleep to finish. An in-process run has about one long bundle per stage, so each stage ended with
# up to 200 ms idle (0.4-0.7 s of a 6 s caption-only `clean`). Its samples only feed per-step timing metrics.
STATE_SAMPLING_MS = 20


@contextlib.contextmanager
def short_state_sampling(period_ms: int = STATE_SAMPLING_MS) -> Iterator[None]:
    """Caps the sampling period of state samplers created in this process during the block. Does nothing
    when Beam's StateSampler does not take `sampling_period_ms` (a Beam version this was not made for)."""
    from apache_beam.runners.worker import statesampler

    original = statesampler.StateSampler.__init__
    if "sampling_period_ms" not in inspect.signature(original).parameters:
        yield
        return

    def capped(self, prefix, counter_factory, sampling_period_ms: int = period_ms) -> None:
        original(self, prefix, counter_factory, sampling_period_ms=min(sampling_period_ms, period_ms))

    statesampler.StateSampler.__init__ = capped
    try:
        yield
    finally:
        statesampler.StateSampler.__init__ = original


@contextlib.contextmanager
def in_process_tuning() -> Iterator[None]:
    """What a pipeline run in this process is wrapped in: fewer GC passes and short state sampling. Worker
    processes of `--workers N` are not affected."""
    with fewer_gc_passes(), short_state_sampling():
        yield
