"""A fix for Beam's local multi-process runner (FnApiRunner, multi_processing) losing whole elements.

The runner sends each bundle's input to a worker process through a data-plane output stream that a
background thread flushes every second (data_plane.TimeBasedBufferingClosableOutputStream; the runner's
data service is built with a 1,000 ms limit). The flush copies the buffer, hands the copy to the send
queue, which can block and so lets other threads run, and then clears the buffer; the thread writing
the bundle's input takes no lock. An element written between the copy and the clear is cleared without
being sent, and the worker never sees it. Writing a worker's input takes over a second when batches are
large and cores busy, which is when `--workers N` runs lost batches (bench/beam_local_loss.py).

`guard_timed_flush` makes `write` wait for a flush in progress. The runner writes whole encoded elements
with single `write` calls, so a flush can no longer fall inside one, nor clear one unsent.
"""

from __future__ import annotations

_GUARDED = "_vlcurate_write_guarded"


def guard_timed_flush() -> None:
    """Installs the fix in this process (the one running the pipeline). Idempotent."""
    from apache_beam.runners.worker import data_plane

    stream_class = data_plane.TimeBasedBufferingClosableOutputStream
    if getattr(stream_class, _GUARDED, False):
        return
    unguarded_write = stream_class.write  # OutputStream.write, compiled: appends to the buffer

    def write(self, b: bytes, nested: bool = False) -> None:
        with self._flush_lock:  # the lock flush() holds from copying the buffer to clearing it
            unguarded_write(self, b, nested)

    stream_class.write = write
    setattr(stream_class, _GUARDED, True)
