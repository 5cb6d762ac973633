"""The `vlcurate` command's two process-level speed-ups, kept apart from its argument handling.

Both change interpreter-wide state, so only the CLI (vlcurate/cli/__init__.py) uses them:

- `imports_without_gc()`: importing Beam and Arrow makes hundreds of thousands of objects that live as
  long as the process, and the cyclic collector's passes over them while they pile up cost ~0.1 s of every
  command's start. The CLI imports its subcommand modules, and with them the jobs, inside this block:
  collection is off during the imports, and what they made is then frozen out of later passes
  (gc.freeze). It applies to whatever imports
  vlcurate.cli, tests included.
- `exit_without_teardown(code)`: the `vlcurate` console command's exit after a command returned, which
  skips the interpreter's teardown of every loaded module (~0.3 s after a run that loaded Beam and Arrow,
  a fifth of a small job's fixed cost). An exception exits the normal way.

The bulk-work counterpart, fewer collector passes while a pipeline runs, is pipelines/options.py's
fewer_gc_passes.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def imports_without_gc() -> Iterator[None]:
    """Runs the block (the imports) with the cyclic collector off, then freezes every object alive into
    the permanent generation and turns the collector back on if it was on."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def exit_without_teardown(code: int) -> None:
    """Ends the process the way a normal exit would (threading's exit hooks run and other threads joined,
    atexit handlers run, output flushed) but without the interpreter's teardown of loaded modules. Everything the command wrote is
    closed by the time it returns, so nothing is lost by skipping it."""
    # First what threading runs at a normal exit before it joins threads: a ThreadPoolExecutor's hook
    # there stops its idle workers, which a join alone would wait for forever.
    for hook in reversed(getattr(threading, "_threading_atexits", [])):
        hook()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    getattr(atexit, "_run_exitfuncs", lambda: None)()  # CPython's; the normal exit calls the same
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # as a normal exit does when buffered output cannot be written
    os._exit(code)
