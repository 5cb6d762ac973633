"""Three fixes for Beam's local multi-process runner (FnApiRunner, multi_processing), installed by
pipelines/options.py for `--workers N`, and one for its embedded job server (PortableRunner with
`--job_endpoint=embed`).

1. Lost elements. The runner sends each bundle's input to a worker process through a data-plane output
stream that a background thread flushes every second (data_plane.TimeBasedBufferingClosableOutputStream;
the runner's data service is built with a 1,000 ms limit). The flush copies the buffer, hands the copy to
the send queue, which can block and so lets other threads run, and then clears the buffer; the thread
writing the bundle's input takes no lock. An element written between the copy and the clear is cleared
without being sent, and the worker never sees it. Writing a worker's input takes over a second when
batches are large and cores busy, which is when `--workers N` runs lost batches
(bench/beam_local_loss.py).

`guard_timed_flush` makes `write` wait for a flush in progress. The runner writes whole encoded elements
with single `write` calls, so a flush can no longer fall inside one, nor clear one unsent. It changes
nothing where Beam's stream classes already define a Python `write` of their own (a Beam that fixed this
may take the same lock there, and wrapping it again would deadlock); tests/pipelines/test_beam_fixes.py
fails once Beam's own stream stops losing the element, the sign that this fix can go.

2. Workers stopped one after another. At the end of a run the runner closes its worker handlers in turn,
and closing one tells its process to stop and then waits for it to exit; only then is the next told.
A worker holding a GPU model takes 1-2 s to exit (the H200 machine, ViT-B-32), so four workers spent the
last ~7 s of every run exiting one by one. `stop_workers_together` tells every worker to stop first; the
runner's own loop then waits for exits that run side by side (~4 s for four there).

3. Workers outlived a killed launcher. A worker notices that the process running the pipeline is gone
only when its gRPC channels time out: 3-15 s after a SIGKILL, each still holding its memory (and a GPU
model). `workers_die_with_launcher` starts each worker through this module (`python -m
vlcurate.pipelines.beam_fixes <launcher pid>`, exec'd by Beam's shell, so the launcher is its parent),
which asks Linux to SIGKILL it when its parent dies (prctl PR_SET_PDEATHSIG) and then runs Beam's worker
main as `-m` would. Where prctl is missing (macOS) or the parent is not the launcher, a thread checks
every half second that the launcher is alive. Beam's own command for a worker is changed only where it
is the one this was made for.

4. One worker, whatever was asked. The embedded job server (`--runner=PortableRunner
--job_endpoint=embed`, e.g. with `--environment_type=EXTERNAL` and Beam worker pools on other machines)
runs the job with an FnApiRunner that it builds without options and hands the pipeline as a proto,
which skips the place where FnApiRunner reads `--direct_num_workers`: every bundle went to one worker.
`embedded_job_server_workers` makes it read the option there too (the job server passes options on as
strings).

5. A worker that cannot start hung the job. When a worker process exits with an error (it could not
import the package, say, because it was started in a folder whose own `vlcurate/` shadows the installed
one), Beam raises in the thread that watched it and the runner waits for that worker forever: the job
sat at "read 0" with no word. `workers_die_with_launcher` also watches each worker's exit: one that exits
with an error while the job runs interrupts the launcher, which stops with the worker's exit code and its
log (pipelines/job.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from vlcurate.schemas.errors import RunFailedError

_GUARDED = "_vlcurate_write_guarded"
_TOGETHER = "_vlcurate_stop_together"
_DIE_WITH_LAUNCHER = "_vlcurate_die_with_launcher"
_EMBEDDED_WORKERS = "_vlcurate_embedded_workers"
BEAM_WORKER_MAIN = "-m apache_beam.runners.worker.sdk_worker_main"  # what FnApiRunner runs per worker
WATCH_SECONDS = 0.5


def guard_timed_flush() -> None:
    """Installs the fix in this process (the one running the pipeline). Idempotent."""
    from apache_beam.runners.worker import data_plane

    stream_class = data_plane.TimeBasedBufferingClosableOutputStream
    if vars(stream_class).get(_GUARDED):
        return
    python_classes = [c for c in stream_class.__mro__ if c.__module__ == data_plane.__name__]
    if any("write" in vars(c) for c in python_classes):
        return  # not the Beam this fix was made for; see the module docstring
    unguarded_write = stream_class.write  # OutputStream.write, compiled: appends to the buffer

    def write(self, b: bytes, nested: bool = False) -> None:
        with self._flush_lock:  # the lock flush() holds from copying the buffer to clearing it
            unguarded_write(self, b, nested)

    stream_class.write = write
    setattr(stream_class, _GUARDED, True)


def stop_workers_together() -> None:
    """Installs fix 2 in this process (the one running the pipeline). Idempotent.

    Sends every worker its stop (the control connection's close, which Beam's handler close repeats as
    a no-op) before Beam's close_all waits for the first of them to exit."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    manager = worker_handlers.WorkerHandlerManager
    if vars(manager).get(_TOGETHER):
        return
    close_all = manager.close_all

    def close_all_together(self) -> None:
        for handlers in self._cached_handlers.values():
            for handler in set(handlers):
                connection = getattr(handler, "control_conn", None)
                if connection is not None:
                    connection.close()
        close_all(self)

    manager.close_all = close_all_together
    setattr(manager, _TOGETHER, True)


def workers_die_with_launcher() -> None:
    """Installs fix 3 in this process (the launcher): worker processes started from now on exit when it
    dies. Idempotent."""
    from apache_beam.runners.portability import local_job_service

    worker = local_job_service.SubprocessSdkWorker
    if vars(worker).get(_DIE_WITH_LAUNCHER):
        return
    init = worker.__init__

    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        command = getattr(self, "_worker_command_line", None)
        if isinstance(command, str) and command.endswith(BEAM_WORKER_MAIN):
            start = command[: -len(BEAM_WORKER_MAIN)]
            self._worker_command_line = f"exec {start}-m {__spec__.name} {os.getpid()}"

    run = worker.run

    def run_and_report(self) -> None:
        try:
            run(self)
        except RuntimeError as exc:  # Beam's word for an exit code other than 0
            if _job_running and "return code" in str(exc) and "return code -" not in str(exc):
                with _failures_lock:
                    first = not _worker_failures
                    _worker_failures.append(str(exc))
                if first:  # one interrupt: a second would land in the launcher's own clean-up
                    # A real signal: the main thread waits in a lock, which only a signal wakes. Not SIGINT:
                    # a job started in the background (`cmd &`, CI runners) inherits it ignored.
                    os.kill(os.getpid(), signal.SIGUSR1)
            raise

    worker.__init__ = __init__
    worker.run = run_and_report
    setattr(worker, _DIE_WITH_LAUNCHER, True)


_job_running = False
_worker_failures: list[str] = []
_failures_lock = threading.Lock()


class _WorkerStopped(BaseException):
    """Raised in the launcher's main thread when a worker exited with an error (fix 5)."""


def _raise_worker_stopped(signum: int, frame: object) -> None:
    raise _WorkerStopped


@contextlib.contextmanager
def watching_workers() -> Iterator[None]:
    """While a job runs: a worker exiting with an error (fix 5) stops it with RunFailedError. Watches only
    from the main thread of a platform with SIGUSR1 (where a signal handler can be set)."""
    global _job_running
    _worker_failures.clear()
    usable = hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGUSR1, _raise_worker_stopped) if usable else None
    _job_running = usable
    try:
        yield
    except _WorkerStopped:
        raise RunFailedError(
            f"a Beam worker process stopped with an error ({_worker_failures[0]}), so the job cannot finish; "
            "the worker log's last lines say why (a worker started in a folder holding another vlcurate/ "
            "cannot import the package: run from another folder or install vlcurate)"
        ) from None
    finally:
        _job_running = False
        if usable:
            signal.signal(signal.SIGUSR1, previous)


def embedded_job_server_workers() -> None:
    """Installs fix 4 in this process (the one running the embedded job server). Idempotent."""
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    runner = fn_runner.FnApiRunner
    if vars(runner).get(_EMBEDDED_WORKERS):
        return
    run_via_runner_api = runner.run_via_runner_api

    def run_with_workers(self, pipeline_proto, options):
        wanted = options.view_as(DirectOptions).direct_num_workers
        if wanted and int(wanted) > 1:
            self._num_workers = int(wanted)
        return run_via_runner_api(self, pipeline_proto, options)

    runner.run_via_runner_api = run_with_workers
    setattr(runner, _EMBEDDED_WORKERS, True)


def die_with_launcher(launcher: int) -> None:
    """In a worker: exit as soon as the launcher (process `launcher`) is gone."""
    # Checked again after prctl: a launcher that died before it took hold is left to the thread below.
    if os.getppid() == launcher and _kill_on_parent_death() and os.getppid() == launcher:
        return
    import threading

    threading.Thread(target=_watch, args=(launcher,), name="vlcurate-launcher-watch", daemon=True).start()


def _kill_on_parent_death() -> bool:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) on Linux; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _watch(launcher: int) -> None:
    import time

    while True:
        try:
            os.kill(launcher, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass  # alive (under another user: its pid was reused, which a watcher cannot tell)
        time.sleep(WATCH_SECONDS)


def _worker_main() -> None:
    """`python -m vlcurate.pipelines.beam_fixes <launcher pid>`: Beam's worker main, dying with the
    launcher."""
    import runpy

    die_with_launcher(int(sys.argv[1]))
    del sys.argv[1:]
    runpy.run_module(BEAM_WORKER_MAIN.split()[-1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _worker_main()
