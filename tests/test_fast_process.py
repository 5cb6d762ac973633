"""vlcurate/fast_process.py: the import block (the collector off inside, back as it was after, what the
block made frozen out of later passes) and the fast exit."""

from __future__ import annotations

import gc
import subprocess
import sys

from vlcurate.fast_process import imports_without_gc


def test_collector_off_inside_restored_after_and_new_objects_frozen():
    was = gc.isenabled()
    gc.enable()
    try:
        frozen = gc.get_freeze_count()
        with imports_without_gc():
            assert not gc.isenabled()
            made = [[] for _ in range(100)]  # tracked containers, as imported modules make
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(made)
        gc.disable()
        with imports_without_gc():
            pass
        assert not gc.isenabled()
    finally:  # frozen objects stay frozen: the CLI's own import froze its modules the same way
        if was:
            gc.enable()
        else:
            gc.disable()


def test_the_fast_exit_stops_idle_thread_pools_instead_of_waiting_for_them():
    """A pool kept for the process (the check's image decoding) has idle, non-daemon workers: a plain
    join of every thread waited for them forever (the demo hung after its summary)."""
    script = (
        "import concurrent.futures\n"
        "from vlcurate.fast_process import exit_without_teardown\n"
        "pool = concurrent.futures.ThreadPoolExecutor(2)\n"
        "assert pool.submit(sum, [1, 2]).result() == 3\n"
        "print('done', flush=True)\n"
        "exit_without_teardown(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "done\n")
