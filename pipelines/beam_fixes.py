"""A fix for Beam's local multi-process runner (FnApiRunner, multi_processing) losing whole elements.

The runner sends each bundle's input to a worker process through a data-plane output stream that a
background thread flushes every second (data_plane.TimeBasedBufferingClosableOutputStream; the runner's
data service is built with a 1,000 ms limit). The flush copies the buffer, hands the copy to the send
queue, which can block and so lets other threads run, and then clears the buffer; the thread writing
the bundle's input takes no lock. An element written between the copy and the clear is cleared without
being sent, and the worker never sees it. Writing a worker's input takes over a second when batches are
large and cores busy, which is when `--workers N` runs lost batches (bench/beam_local_loss.py).

`guard_timed_flush` makes `write` wait for a flush in progress. The runner writes whole encoded elements
with single `write` calls, so a flush can no longer fall inside one, nor clear one unsent. It changes
nothing where Beam's stream classes already define a Python `write` of their own (a Beam that fixed this
may take the same lock there, and wrapping it again would deadlock); tests/pipelines/test_beam_fixes.py
fails once Beam's own stream stops losing the element, the sign that this module can go.
"""

from __future__ import annotations

_GUARDED = "_vlcurate_write_guarded"


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
