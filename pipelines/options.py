"""Beam pipeline options: in-process FnApiRunner by default, multi-process with --workers N."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def pipeline_options(workers: int = 1, beam_args: list[str] | None = None) -> PipelineOptions:
    """FnApiRunner unless the user names another runner; the default runner would first try to download
    the Prism binary. `workers > 1` runs that many worker processes on this machine."""
    args = list(beam_args or [])
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=FnApiRunner")
    options = PipelineOptions(args)
    if workers > 1 and is_local(options):
        options = PipelineOptions(
            [*args, f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
        )
    return options


def is_local(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or "FnApiRunner"
    return runner.split(".")[-1] in LOCAL_RUNNERS


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
