"""Processes a killed run left behind are stopped by the next run of the same data dir, and only
those: a live run's children and another data dir's stay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from curate.runtime.leftovers import alive, left_by_dead_runs, stop_leftovers

# A stand-in for `curate run`: marks itself as the run of a data dir, starts a child as the run
# starts Prefect's server, prints the child's pid and waits.
RUN = """
import subprocess, sys, time
from curate.runtime.leftovers import mark_run
mark_run(sys.argv[1])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print(child.pid, flush=True)
time.sleep(300)
"""


def _start_run(data_dir) -> tuple[subprocess.Popen, int]:
    run = subprocess.Popen([sys.executable, "-c", RUN, str(data_dir)], stdout=subprocess.PIPE, text=True,
                           start_new_session=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return run, int(run.stdout.readline())


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_the_next_run_stops_what_a_killed_run_left_and_nothing_else(tmp_path):
    killed, killed_child = _start_run(tmp_path / "data")
    running, running_child = _start_run(tmp_path / "data")
    other, other_child = _start_run(tmp_path / "other")
    try:
        killed.kill()
        killed.wait(timeout=10)
        time.sleep(0.5)
        assert alive(killed_child), "a SIGKILLed parent does not take its child along"
        assert left_by_dead_runs(tmp_path / "data") == [killed_child]

        assert stop_leftovers(tmp_path / "data") == [killed_child]
        assert _wait_dead(killed_child)
        assert alive(running_child) and alive(other_child)  # their runs are alive
        assert stop_leftovers(tmp_path / "data") == []
    finally:
        for process in (killed, running, other):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
