"""The benches' hooks into the jobs. A bench that measures through a job's internals must fail here when
those internals move, not on the GPU machine: bench/clip_gpu.py's kept-count sampler hooked a printer the
jobs had stopped using, and a day of device runs came back without their start-up figures."""

from __future__ import annotations

import io
import math
import pathlib
import time

import pytest

from vlcurate.pipelines import progress

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def clip_gpu(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import clip_gpu

    return clip_gpu


def test_the_e2e_sampler_reads_the_counts_a_job_writes(clip_gpu, monkeypatch):
    printer = clip_gpu.counting_printer()
    monkeypatch.setattr(progress, "ProgressPrinter", printer)  # as run_clean_timed does
    stream = io.StringIO()
    with progress.progress_folder(True, "[clean]", stream=stream) as folder:
        for stage, count in (("read", 5), ("kept", 3)):
            counter = progress.ProgressCounter(folder, stage)  # what a worker's tap writes
            counter.add(count)
            counter.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(row[1:] == (3, 5) for row in printer.samples):
            time.sleep(0.05)
    assert any(row[1:] == (3, 5) for row in printer.samples)
    assert "read 5" in stream.getvalue()  # the usual last line still prints


def test_middle_rate_reads_the_count_it_is_given(clip_gpu):
    # (time, kept, read): reading goes from 10 to 90 of 100 in 4 s; the kept pairs come all at once after
    # it, as a group step's shuffle releases them, which gives no kept rate.
    samples = [(0.0, 0, 0), (1.0, 0, 10), (5.0, 0, 90), (6.0, 0, 100), (7.0, 80, 100), (8.0, 80, 100)]
    assert clip_gpu.middle_rate(samples, 100, column=2) == 20.0
    assert math.isnan(clip_gpu.middle_rate(samples, 80))
