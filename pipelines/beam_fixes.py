"""Two fixes for Beam's local multi-process runner (FnApiRunner, multi_processing), installed by
pipelines/options.py for `--workers N`.

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
"""

from __future__ import annotations

_GUARDED = "_vlcurate_write_guarded"
_TOGETHER = "_vlcurate_stop_together"


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
