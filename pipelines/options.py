"""Beam pipeline options: in-process FnApiRunner by default, multi-process with --workers N."""

from __future__ import annotations

import contextlib
import gc
import inspect
from collections.abc import Iterator

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from vlcurate.pipelines.beam_fixes import guard_timed_flush, stop_workers_together

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def pipeline_options(workers: int = 1, beam_args: list[str] | None = None) -> PipelineOptions:
    """FnApiRunner unless the user names another runner; the default runner would first try to download
    the Prism binary. `workers > 1` runs that many worker processes on this machine, with the fixes for
    Beam's data-plane race and its one-by-one worker stop installed (pipelines/beam_fixes.py)."""
    args = list(beam_args or [])
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=FnApiRunner")
    options = PipelineOptions(args)
    if workers > 1 and is_local(options):
        guard_timed_flush()
        stop_workers_together()
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
