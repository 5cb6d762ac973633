"""The `vlcurate` command's fast exit: exit code, output, atexit handlers and threads as a normal exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_script(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True)


def test_fast_exit_keeps_code_output_handlers_and_threads():
    done = run_script(
        """
        import atexit, threading, time, sys
        from vlcurate.fast_process import exit_without_teardown

        atexit.register(lambda: print("handler", end=""))
        threading.Thread(target=lambda: (time.sleep(0.2), print("thread|", end=""))).start()
        print("buffered|", end="")
        print("err", end="", file=sys.stderr)
        exit_without_teardown(3)
        print("never")
        """
    )
    assert done.returncode == 3
    assert done.stdout == "buffered|thread|handler"
    assert done.stderr == "err"


def test_command_exit_code_of_a_config_error():
    done = subprocess.run(
        [sys.executable, "-m", "vlcurate.cli", "clean", "--output", "x"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr == "vlcurate: error: give --config FILE, or --input PATHS and --output DIR.\n"
