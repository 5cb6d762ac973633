"""Beam's local multi-process runner losing elements: a pipeline without any vlcurate code.

    python bench/beam_local_loss.py [--runs 5] [--workers 3]

The shape of `clean`'s shard writer: files -> Reshuffle -> one large batch per file -> a step that reads
a singleton side input (the total count) -> GroupByKey. With FnApiRunner in multi_processing mode some
batches never reach the GroupByKey; runs are repeated and each prints the records counted vs grouped.
Busy CPUs make it likelier (run something else alongside on a small machine). In-process runs
(direct_num_workers=1) are the baseline. Writes bench/results/beam_local_loss.json.
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


def run_once(workers: int, report: str) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    def parse(index: int):
        yield [(f"{index:03d}-{j:04d}", os.urandom(PAYLOAD)) for j in range(PER_FILE)]

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--once", help=argparse.SUPPRESS)  # child process: one run, result to this file
    args = parser.parse_args()
    if args.once:
        run_once(args.workers, args.once)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, args.workers):
            for run in range(args.runs):
                report = os.path.join(tmp, f"{workers}-{run}.json")
                subprocess.run(
                    [sys.executable, __file__, "--workers", str(workers), "--once", report],
                    check=True,
                    capture_output=True,
                )
                with open(report) as fh:
                    result = json.load(fh)
                rows.append({"workers": workers, "run": run, "expected": FILES * PER_FILE, **result})
                lost = FILES * PER_FILE - result["grouped"]
                print(
                    f"workers {workers} run {run}: counted {result['counted']:,} grouped {result['grouped']:,} lost {lost:,}"
                )
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as fh:
        json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
