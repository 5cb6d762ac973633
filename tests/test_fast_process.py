"""vlcurate/fast_process.py's import block: the collector is off inside, back as it was after, and what
the block made is frozen out of later passes."""

from __future__ import annotations

import gc

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
