"""The skeleton every job runs on (clean, format, sft, check): read -> transforms -> write, then verify the
counts, write stats and info.json, and COMPLETED last; the run happens in a staging directory that moves
into the output at the end (pipelines/output.py). A job passes in only what differs: its paths and
checks, its pipeline (build_pipeline), its progress line, the files of its end and its summary line.

The command's side, `Job`:

    job = Job(workers, beam_args, paths)       Beam options (a bad flag or path raises before any read)
    ...                                        the job's own checks of its config and inputs
    staging = job.stage(out, overwrite)        refuses a completed output unless `overwrite`
    job.run(build, JobProgress(...))           the pipeline, with progress lines and worker logs
    if not job.local: return {}                a remote runner: the output is where it ran
    ... read stats.json; job.say_done(...)     the one line a finished run prints

The pipeline's side: its last step (output.run_last) calls `finish_output`, which writes the job's files,
info.json, checks the counts and writes COMPLETED, in that order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import apache_beam as beam

from vlcurate.pipelines import provenance
from vlcurate.pipelines.beam_fixes import watching_workers
from vlcurate.pipelines.input_size import Total
from vlcurate.pipelines.options import in_process_tuning, is_local, pipeline_options
from vlcurate.pipelines.output import (
    COMPLETED,
    join,
    prepare_output_dir,
    publish,
    write_bytes_atomic,
    write_json,
)
from vlcurate.pipelines.progress import progress_folder, worker_logs_to_file

# A job's pipeline: (pipeline, the folder progress taps count into or None) -> None. It adds every
# transform, its writers and the final step to the pipeline; Job.run runs it.
Build = Callable[[beam.Pipeline, str | None], None]


@dataclasses.dataclass(frozen=True)
class JobProgress:
    """What a job's progress lines say (pipelines/progress.py, ProgressPrinter), and where its local
    worker processes log: a file named `worker_log`-<pid>.log in the temporary folder instead of the
    shared stderr (None: they keep stderr)."""

    label: str
    outcomes: tuple[str, ...] = ("kept", "rejected")
    unit: str = "pairs"
    total: Callable[[], Total | None] | None = None
    shares: bool = True
    worker_log: str | None = None


class Job:
    """One run of a job, from the command's side (the module docstring shows the order of calls)."""

    def __init__(self, workers: int, beam_args: list[str] | None, paths: list[str]) -> None:
        self.workers = workers
        self.options = pipeline_options(workers, beam_args, paths)
        self.local = is_local(self.options)
        self.started = time.monotonic()

    def stage(self, out: str, overwrite: bool) -> str:
        """The staging directory the run writes into, published to `out` at its end."""
        return prepare_output_dir(out, overwrite)

    def run(self, build: Build, progress: JobProgress | None = None, show_progress: bool = True) -> None:
        """Builds the pipeline and runs it to completion. Progress lines are printed for a local run with
        `progress` and `show_progress`; worker logs go to a file for a local multi-process run."""
        self.started = time.monotonic()
        with contextlib.ExitStack() as stack:
            stack.enter_context(watching_workers())  # outermost: the worker log's tail is shown first
            stream = sys.stderr
            if progress is not None and progress.worker_log and self.local and self.workers > 1:
                log = os.path.join(tempfile.gettempdir(), f"{progress.worker_log}-{os.getpid()}.log")
                stream = stack.enter_context(worker_logs_to_file(log))
            folder = None
            if progress is not None:
                printing = progress_folder(
                    show_progress and self.local,
                    progress.label,
                    outcomes=progress.outcomes,
                    unit=progress.unit,
                    total=progress.total,
                    shares=progress.shares,
                    stream=stream,
                )
                folder = stack.enter_context(printing)
            stack.enter_context(in_process_tuning())
            # Leaving the stack runs the pipeline first (Pipeline.__exit__), then stops the progress lines.
            build(stack.enter_context(beam.Pipeline(options=self.options)), folder)

    def seconds(self) -> float:
        """Since the pipeline started."""
        return time.monotonic() - self.started

    def say_done(self, label: str, what: str, out: str) -> None:
        """`[vlcurate] <label> done in 12.3s: <what> -> <out>` on stderr (`label` may be empty)."""
        prefix = f"{label} " if label else ""
        print(f"[vlcurate] {prefix}done in {self.seconds():.1f}s: {what} -> {out}", file=sys.stderr)


def finish_output(
    directory: str,
    info: dict[str, Any],
    files: Mapping[str, Any],
    *,
    from_info: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
    verify: Callable[[], None] | None = None,
    completed: bool = True,
    publish_to: str | None = None,
) -> str:
    """A job's end, in this order: its `files` (name -> bytes, or anything else as JSON: stats.json,
    check.json, ...); info.json, `info` with the run's end (pipelines/provenance.py); the files made from
    that info (`from_info`: report.html); `verify`, which raises when the files do not account for every
    record read; COMPLETED, last, unless not `completed` (a failed run). Then, with `publish_to`, the run
    moves there from its staging `directory`. Returns where the run's files are now (output.publish)."""
    for name, content in files.items():
        _write(join(directory, name), content)
    info = provenance.finished(info)
    write_json(join(directory, "info.json"), info)
    for name, content in (from_info(info) if from_info is not None else {}).items():
        _write(join(directory, name), content)
    if verify is not None:
        verify()
    if completed:
        write_bytes_atomic(join(directory, COMPLETED), b"")
    return publish(directory, publish_to) if publish_to else directory


def _write(path: str, content: Any) -> None:
    if isinstance(content, bytes):
        write_bytes_atomic(path, content)
    else:
        write_json(path, content)
