"""Every hostile-input test has a time limit: a case that regresses into a hang fails instead of stalling
the suite (the cases most likely to hang also run in a child process with its own timeout)."""

from __future__ import annotations

import signal

import pytest

LIMIT_S = 600  # the slowest test here takes about a minute on a 2-core machine


@pytest.fixture(autouse=True)
def time_limit(request):
    def fail(signum, frame):
        raise TimeoutError(f"{request.node.nodeid} ran longer than {LIMIT_S} s: a hang?")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
