"""Beam's local multi-process runner losing elements, and vlcurate's fix (pipelines/beam_fixes.py).

    python bench/beam_local_loss.py [--runs 5] [--workers 3] [--busy]

The pipeline has no vlcurate code; it has the shape of `clean`'s shard writer: files -> Reshuffle -> one
large batch per file -> a step that reads a singleton side input (the total count) -> GroupByKey. With
FnApiRunner in multi_processing mode some batches never reached the GroupByKey: the runner's timed flush
of a worker's input cleared a batch written during the flush. Three arms, each run --runs times in a fresh
process: in-process (direct_num_workers=1), --workers processes as Beam ships them, and --workers
processes with the fix installed. Each run prints the records counted vs grouped, and the bytes the
timed flush cleared unsent (Beam's flush with a count added; 0 in-process, where no data plane is used).
Busy CPUs make the race likelier: --busy keeps one core spinning. Writes bench/results/beam_local_loss.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

FILES, PER_FILE, PAYLOAD = 40, 300, 50_000
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "beam_local_loss.json")


def count_cleared_writes(cleared: list[int]) -> None:
    """Replaces Beam's timed flush (copy, send, clear, under its lock) with the same steps plus a count of
    the bytes that were written while the copy was being sent: the bytes the clear drops unsent."""
    from apache_beam.runners.worker import data_plane

    def flush(self) -> None:
        with self._flush_lock:
            data = self.get()
            self._flush_callback(data)
            cleared[0] += self.size() - len(data)
            self._clear()

    data_plane.TimeBasedBufferingClosableOutputStream.flush = flush


def run_once(workers: int, report: str, fixed: bool) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    def parse(index: int):
        yield [(f"{index:03d}-{j:04d}", os.urandom(PAYLOAD)) for j in range(PER_FILE)]

    cleared = [0]
    count_cleared_writes(cleared)
    if fixed:
        from vlcurate.pipelines.beam_fixes import guard_timed_flush

        guard_timed_flush()
    args = ["--runner=FnApiRunner", f"--direct_num_workers={workers}"]
    if workers > 1:
        args.append("--direct_running_mode=multi_processing")
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        batches = p | beam.Create(list(range(FILES))) | beam.Reshuffle() | beam.FlatMap(parse)
        total = batches | "Len" >> beam.Map(len) | "Sum" >> beam.CombineGlobally(sum)
        grouped = (
            batches
            | "Key" >> beam.FlatMap(lambda b, _: [(hash(b[0][0]) % 3, b)], beam.pvalue.AsSingleton(total))
            | beam.GroupByKey()
            | "Count" >> beam.Map(lambda kv: sum(len(b) for b in kv[1]))
            | "SumGrouped" >> beam.CombineGlobally(sum)
        )

        def write(_, counted, got):
            with open(report, "w") as fh:
                json.dump({"counted": counted, "grouped": got}, fh)

        _ = (
            p
            | "One" >> beam.Create([None])
            | beam.Map(write, beam.pvalue.AsSingleton(total), beam.pvalue.AsSingleton(grouped))
        )
    with open(report) as fh:
        result = json.load(fh)
    with open(report, "w") as fh:
        json.dump({**result, "cleared_unsent_bytes": cleared[0]}, fh)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="keep one core busy with a spinning process")
    parser.add_argument("--once", help=argparse.SUPPRESS)  # child process: one run, result to this file
    parser.add_argument("--fixed", action="store_true", help=argparse.SUPPRESS)  # child: install the fix
    args = parser.parse_args()
    if args.once:
        run_once(args.workers, args.once, args.fixed)
        return
    arms = [
        ("in-process", 1, False),
        ("beam as shipped", args.workers, False),
        ("with fix", args.workers, True),
    ]
    rows = []
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    with tempfile.TemporaryDirectory() as tmp:
        for arm, workers, fixed in arms:
            for run in range(args.runs):
                report = os.path.join(tmp, f"{workers}-{fixed}-{run}.json")
                command = [sys.executable, __file__, "--workers", str(workers), "--once", report]
                subprocess.run(command + (["--fixed"] if fixed else []), check=True, capture_output=True)
                with open(report) as fh:
                    result = json.load(fh)
                lost = FILES * PER_FILE - result["grouped"]
                rows.append(
                    {"arm": arm, "workers": workers, "run": run, "expected": FILES * PER_FILE, **result}
                )
                print(
                    f"{arm:<16} workers {workers} run {run}: counted {result['counted']:,} "
                    f"grouped {result['grouped']:,} lost {lost:,}; "
                    f"timed flush cleared {result['cleared_unsent_bytes']:,} bytes unsent",
                    flush=True,
                )
    if spinner:
        spinner.kill()
    print(f"\n{'arm':<16} {'runs':>5} {'runs that lost':>15} {'records lost':>13} {'MB cleared unsent':>18}")
    for arm, _, _ in arms:
        runs = [r for r in rows if r["arm"] == arm]
        losses = [FILES * PER_FILE - r["grouped"] for r in runs]
        cleared_mb = sum(r["cleared_unsent_bytes"] for r in runs) / 1e6
        print(
            f"{arm:<16} {len(runs):>5} {sum(1 for n in losses if n):>15} {sum(losses):>13,} {cleared_mb:>18,.1f}"
        )
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as fh:
        machine = f"{platform.machine()}, {os.cpu_count()} cores" + (", one kept busy" if args.busy else "")
        json.dump({"machine": machine, "record_bytes": PAYLOAD, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
