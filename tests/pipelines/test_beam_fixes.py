"""The fixes for Beam's local multi-process runner (pipelines/beam_fixes.py): lost elements, and workers
stopped one after another."""

import json
import subprocess
import sys
import threading

from apache_beam.runners.worker import data_plane

from vlcurate.pipelines.beam_fixes import guard_timed_flush


class _UnguardedStream(data_plane.TimeBasedBufferingClosableOutputStream):
    write = data_plane.SizeBasedBufferingClosableOutputStream.write  # Beam's own write, without the fix


def _write_during_a_timed_flush(stream_class: type) -> bytes:
    """Writes b"first", flushes, and while the flush hands its copy to the send queue another thread
    writes b"second" (what the runner's writing thread does while the timer thread flushes). Returns
    everything the stream sent, flushes and close together."""
    sent: list[bytes] = []
    writers: list[threading.Thread] = []

    def send(data: bytes) -> None:
        sent.append(data)
        if not writers:
            writers.append(threading.Thread(target=stream.write, args=(b"second",)))
            writers[0].start()
            writers[0].join(timeout=0.5)  # unguarded, the write lands here, before the flush clears

    stream = stream_class(close_callback=sent.append, flush_callback=send, time_flush_threshold_ms=60_000)
    stream.write(b"first")
    stream.flush()
    writers[0].join()
    stream.close()
    return b"".join(sent)


def test_beams_timed_flush_clears_an_element_written_during_the_send():
    # If this fails, Beam has fixed the race and beam_fixes.py can go.
    assert _write_during_a_timed_flush(_UnguardedStream) == b"first"


def test_guarded_stream_sends_every_element_once_in_order():
    guard_timed_flush()
    guard_timed_flush()  # idempotent: a second call must not wrap the lock twice (it would deadlock)
    assert _write_during_a_timed_flush(data_plane.TimeBasedBufferingClosableOutputStream) == b"firstsecond"


def test_a_beam_whose_stream_has_its_own_write_is_left_alone(monkeypatch):
    # A Beam that fixed the race in write() may take the flush lock there; wrapping it would deadlock.
    class FixedUpstream(data_plane.TimeBasedBufferingClosableOutputStream):
        def write(self, b: bytes, nested: bool = False) -> None:
            with self._flush_lock:
                data_plane.SizeBasedBufferingClosableOutputStream.write(self, b, nested)

    FixedUpstream.__module__ = data_plane.__name__
    monkeypatch.setattr(data_plane, "TimeBasedBufferingClosableOutputStream", FixedUpstream)
    own_write = FixedUpstream.write
    guard_timed_flush()
    assert FixedUpstream.write is own_write
    assert _write_during_a_timed_flush(FixedUpstream) == b"firstsecond"


def test_only_multi_process_options_install_the_guard():
    # A fresh process: the tests above installed the guard in this one.
    script = (
        "from apache_beam.runners.worker import data_plane\n"
        "from vlcurate.pipelines.options import pipeline_options\n"
        "stream = data_plane.TimeBasedBufferingClosableOutputStream\n"
        "guarded = lambda: stream.write is not data_plane.SizeBasedBufferingClosableOutputStream.write\n"
        "seen = [guarded()]\n"
        "pipeline_options(workers=1)\n"
        "seen.append(guarded())\n"
        "pipeline_options(workers=2)\n"
        "seen.append(guarded())\n"
        "print(seen)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[False, False, True]"


# Each worker, as it exits, takes `seconds` and records when it began and ended exiting.
_SLOW_EXITS = """
import atexit, json, os, sys, time
import apache_beam as beam
from vlcurate.pipelines.options import pipeline_options

folder = sys.argv[1]

def record_exit():
    began = time.time()
    time.sleep({seconds})
    with open(os.path.join(folder, f"{{os.getpid()}}.json"), "w") as fh:
        json.dump([began, time.time()], fh)

class SlowExit(beam.DoFn):
    def setup(self):
        atexit.register(record_exit)

    def process(self, element):
        yield element

with beam.Pipeline(options=pipeline_options(workers=2)) as p:
    p | beam.Create(list(range(64))) | beam.Reshuffle() | beam.ParDo(SlowExit())
"""


def test_workers_are_told_to_stop_together(tmp_path):
    # Both workers must be exiting at the same time: Beam alone tells the second to stop only once the
    # first has exited, so their exits would not overlap.
    script = tmp_path / "slow_exits.py"
    script.write_text(_SLOW_EXITS.format(seconds=2.0))
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=300)
    exits = sorted(json.loads(path.read_text()) for path in tmp_path.glob("*.json"))
    assert len(exits) == 2
    (_, first_ended), (second_began, _) = exits
    assert second_began < first_ended


def test_a_worker_that_cannot_start_stops_the_job_with_its_reason(synth_dir, tmp_path):
    """Fix 5: workers start in the launcher's working folder; one holding another vlcurate/ package makes
    them fail at import. The job stops at once with the reason instead of waiting for them forever."""
    shadow = tmp_path / "cwd"
    (shadow / "vlcurate").mkdir(parents=True)
    # A package that cannot be imported (an editable install would find vlcurate.pipelines past an empty one)
    (shadow / "vlcurate" / "__init__.py").write_text("raise ImportError('a shadowing vlcurate/ folder')\n")
    launcher = tmp_path / "bin" / "launch.py"  # run as a script: its own folder, not the cwd, leads sys.path
    launcher.parent.mkdir()
    launcher.write_text("import sys\nfrom vlcurate.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    tars = str(synth_dir / "wds" / "*.tar")
    command = [sys.executable, str(launcher), "clean", "--input", tars, "--output", str(tmp_path / "out")]
    done = subprocess.run(
        [*command, "--workers", "2", "--disable", "clip_score,clip_filter"],
        cwd=shadow,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "a Beam worker process stopped with an error" in done.stderr
    assert "a shadowing vlcurate/ folder" in done.stderr  # the worker log's tail
    assert not (tmp_path / "out").exists()
