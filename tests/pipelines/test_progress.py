"""Progress lines: their text, the input totals behind them, the printer, and `vlcurate synth`'s lines."""

from __future__ import annotations

import io
import json
import re
import time

import pyarrow as pa
import pyarrow.parquet as pq

from vlcurate.cli import main
from vlcurate.pipelines.input_size import Total, estimate_records, sum_totals
from vlcurate.pipelines.progress import ProgressCounter, ProgressPrinter
from vlcurate.pipelines.progress_lines import progress_line
from vlcurate.synth.dataset import write_synthetic_dataset
from vlcurate.synth.progress import CountReporter
from vlcurate.tests.pipelines.helpers import jpeg, write_tar


def test_clean_line_names_the_command_and_shows_the_total_and_shares():
    counts = {"read": 12_345, "kept": 9_000, "rejected": 3_345}
    assert progress_line("clean", 40.2, counts, total=Total(50_000, exact=False)) == (
        "[clean]     40s  read 12,345 of ~50,000 pairs (25%)  kept 9,000 (72.9%)  rejected 3,345 (27.1%)  "
        "307 pairs/s"
    )
    assert progress_line(
        "clean", 2.0, {"read": 600, "kept": 349, "rejected": 251}, total=Total(600, True)
    ) == (
        "[clean]      2s  read 600 of 600 pairs (100%)  kept 349 (58.2%)  rejected 251 (41.8%)  300 pairs/s"
    )


def test_without_a_total_or_shares_the_line_says_nothing_about_them():
    assert progress_line("clean", 0.0, {}) == "[clean]      0s  read 0 pairs  kept 0  rejected 0  0 pairs/s"
    line = progress_line(
        "format stage 2", 10.0, {"read": 240, "samples": 238, "rejected": 3}, ("samples", "rejected"), "records",
        Total(0, True), shares=False,
    )  # fmt: skip
    assert line == "[format stage 2]     10s  read 240 of 0 records  samples 238  rejected 3  24 records/s"


def test_input_totals_count_records_as_the_readers_do(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"caption": "x"}\n\n{"caption": "y"}\n   \n{broken\n')
    (tmp_path / "b.csv").write_text('key,caption\n1,"two\nlines"\n\n2,plain\n')
    pq.write_table(pa.table({"caption": ["a", "b", "c"]}), tmp_path / "c.parquet")
    write_tar(tmp_path / "d.tar", [("000", "a", jpeg(8, 8)), ("001", "b", None), ("002", "c", jpeg(8, 8))])
    for fmt, name, expected in (("jsonl", "a.jsonl", 3), ("csv", "b.csv", 2), ("parquet", "c.parquet", 3),
                                ("webdataset", "d.tar", 3)):  # fmt: skip
        path = tmp_path / name
        assert estimate_records(fmt, {str(path): path.stat().st_size}) == Total(expected, True), fmt


def test_files_left_when_the_budget_runs_out_are_estimated_by_bytes(tmp_path):
    sizes = {}
    for i in range(3):
        path = tmp_path / f"{i}.jsonl"
        path.write_text("".join(json.dumps({"caption": f"caption {i} {j:02d}"}) + "\n" for j in range(10)))
        sizes[str(path)] = path.stat().st_size
    assert estimate_records("jsonl", sizes) == Total(30, True)
    estimate = estimate_records("jsonl", sizes, budget_s=0.0)  # only the first file is counted
    assert estimate == Total(30, False) and str(estimate) == "~30"
    missing = {str(tmp_path / "nope.jsonl"): 100}
    assert estimate_records("jsonl", missing) is None  # nothing counted: no guess
    assert sum_totals([Total(3, True), Total(4, False)]) == Total(7, False)
    assert sum_totals([Total(3, True), None]) is None


def test_printer_sums_the_workers_counts_and_prints_a_last_line(tmp_path):
    stream = io.StringIO()
    printer = ProgressPrinter(
        "format stage 1", ("samples", "rejected"), total=lambda: Total(5, True), shares=False,
        interval=3600, stream=stream,
    )  # fmt: skip
    with printer:
        for stage, n in (("read", 3), ("read", 2), ("samples", 4), ("rejected", 1)):
            counter = ProgressCounter(printer.folder, stage)
            counter.add(n)
            counter.flush()
        deadline = time.monotonic() + 10
        while printer.total is None and time.monotonic() < deadline:  # counted in a thread of its own
            time.sleep(0.01)
    last = stream.getvalue().splitlines()[-1]
    assert re.fullmatch(
        r"\[format stage 1\] +\d+s  read 5 of 5 pairs \(100%\)  samples 4  rejected 1  [\d,]+ pairs/s", last
    )


def test_count_reporter_prints_each_interval_and_the_last_count_once():
    stream = io.StringIO()
    reporter = CountReporter("synth", "made", 3, stream=stream, interval=0.0)
    for _ in range(3):
        reporter.add()
    reporter.done()
    lines = [re.sub(r"\] +\d+s", "] Ns", line) for line in stream.getvalue().splitlines()]
    assert lines == [
        "[synth] Ns  made 1 of 3 pairs (33%)",
        "[synth] Ns  made 2 of 3 pairs (67%)",
        "[synth] Ns  made 3 of 3 pairs (100%)",
    ]
    quiet = CountReporter("synth", "made", 3, interval=0.0)  # no stream: counts, prints nothing
    quiet.add(3)
    quiet.done()
    assert quiet.count == 3


def test_synth_reports_each_phase(tmp_path, capsys):
    stream = io.StringIO()
    write_synthetic_dataset(str(tmp_path / "a"), n=12, seed=3, progress=stream, interval=3600)
    lines = [re.sub(r"\] +\d+s", "] Ns", line) for line in stream.getvalue().splitlines()]
    assert lines == [
        "[synth] Ns  made 12 of 12 pairs (100%)",
        "[synth] Ns  wrote webdataset 12 of 12 pairs (100%)",
        "[synth] Ns  wrote parquet 12 of 12 pairs (100%)",
        "[synth] Ns  wrote jsonl 12 of 12 pairs (100%)",
    ]
    assert main(["synth", "--out", str(tmp_path / "b"), "--n", "7"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [re.sub(r"\] +\d+s", "] Ns", line) for line in err[:-1]] == [
        "[synth] Ns  made 7 of 7 pairs (100%)",
        "[synth] Ns  wrote webdataset 7 of 7 pairs (100%)",
        "[synth] Ns  wrote parquet 7 of 7 pairs (100%)",
        "[synth] Ns  wrote jsonl 7 of 7 pairs (100%)",
    ]
    assert err[-1].startswith("[vlcurate] wrote 7 synthetic pairs in ")
