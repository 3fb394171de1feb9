"""Processes a killed `curate run` left behind, stopped by the next run in the same data dir.

`curate run` puts a mark in its environment: its data dir and its own pid and start time. Every
process it starts inherits it (the ephemeral Prefect server, math-verify and sandbox workers, a
local Ray's processes). A run killed with SIGKILL cannot stop them, so the next run does, before
it opens the lake: a process marked with this data dir whose run is no longer alive is ended.
Linux only (/proc); elsewhere nothing is found.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from curate.progress import log

RUN_MARK = "CURATE_RUN_MARK"


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from the state field on (the command name may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None  # field 22 of stat: start time in clock ticks since boot


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _mark(data_dir: Path) -> str:
    return f"{os.getpid()}:{start_time(os.getpid())}:{Path(data_dir).resolve()}"


def mark_run(data_dir: Path) -> None:
    """Mark this process (and so every process it starts) as the run of `data_dir`."""
    os.environ[RUN_MARK] = _mark(data_dir)


def _marks() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(RUN_MARK.encode() + b"="):
                found[int(entry.name)] = item.split(b"=", 1)[1].decode(errors="replace")
    return found


def left_by_dead_runs(data_dir: Path) -> list[int]:
    """Live processes marked with `data_dir` whose run has ended."""
    wanted = str(Path(data_dir).resolve())
    leftovers = []
    for pid, mark in _marks().items():
        owner, started, directory = (mark.split(":", 2) + ["", ""])[:3]
        if directory != wanted or pid == os.getpid() or not owner.isdigit() or not alive(pid):
            continue
        if start_time(int(owner)) != started or not alive(int(owner)):
            leftovers.append(pid)
    return leftovers


def stop_leftovers(data_dir: Path, grace_s: float = 5.0) -> list[int]:
    """End the processes earlier, killed runs of `data_dir` left running (SIGTERM, then SIGKILL)."""
    pids = left_by_dead_runs(data_dir)
    if not pids:
        return []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
        if not any(alive(pid) for pid in pids):
            break
    log(f"stopped {len(pids)} process(es) an earlier, killed run left running (pids {', '.join(map(str, pids))})")
    return pids
