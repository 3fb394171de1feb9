"""The flow's task runner, chosen by the run config's [runner]: threads (default), processes or Ray.

Shard work (curate.runtime.shards) is submitted as Prefect tasks to that runner; the steps themselves
and the lake stay in the flow's process, which commits each stage once.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from curate.config import RunnerConfig
from curate.errors import UserError
from curate.progress import log
from curate.runtime.leftovers import alive
from curate.runtime.shards import INLINE_BELOW
from flows.reachable import check_reachable

# Ray builds socket paths under its temp dir (session_<time>_<pid>/sockets/plasma_store): a
# longer dir breaks the 107-byte AF_UNIX limit, so a long data dir is reached through a short link.
RAY_TMPDIR_MAX = 40
RAY_SESSIONS_KEPT = 3  # old session folders (logs, sockets) a new local Ray leaves in the data dir


class TaskShards:
    """Each shard one Prefect task on the flow's task runner; results in the order of `calls`."""

    def __init__(self, count: int, inline_below: int = INLINE_BELOW):
        self.count = count
        self.inline_below = inline_below
        self._tasks: dict[Callable, object] = {}

    def spreads(self, items: int) -> bool:
        return items >= self.inline_below

    def map(self, work: Callable, calls: Sequence[tuple]) -> list:
        return self.start(work, calls).results()

    def start(self, work: Callable, calls: Sequence[tuple]) -> _TaskFutures:
        if work not in self._tasks:
            self._tasks[work] = task(work, name=work.__name__, cache_policy=NO_CACHE)
        return _TaskFutures(work.__name__, [self._tasks[work].submit(*args) for args in calls])

    def close(self) -> None:
        pass  # the flow's task runner is the flow's to close


class _TaskFutures:
    def __init__(self, name: str, futures: list):
        self.name, self.futures = name, futures

    def results(self) -> list:
        wait(self.futures)  # every shard ends before a failure is raised: none is left running
        failed = [i for i, future in enumerate(self.futures) if future.state.is_failed() or future.state.is_crashed()]
        if failed:
            log(f"{self.name}: shard(s) {failed} of {len(self.futures)} failed")
        return [future.result() for future in self.futures]


def _short_ray_tmpdir(data_dir: Path) -> Path:
    target = (Path(data_dir) / "ray").resolve()
    target.mkdir(parents=True, exist_ok=True)
    if len(str(target)) <= RAY_TMPDIR_MAX:
        return target
    for stale in Path("/tmp").glob("curate-ray-*"):  # links to data dirs that are gone
        if stale.is_symlink() and not stale.exists():
            stale.unlink(missing_ok=True)
    link = Path("/tmp") / f"curate-ray-{hashlib.sha256(str(target).encode()).hexdigest()[:10]}"
    if link.is_symlink() and link.resolve() != target:
        link.unlink()
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    return link


def prune_ray_sessions(sessions_dir: Path, keep: int = RAY_SESSIONS_KEPT) -> list[Path]:
    """Remove Ray's session folders under `sessions_dir` (session_<time>_<pid>, one per Ray
    start) but the newest `keep`; one whose starting process is alive, or that session_latest
    names, stays whatever its age."""
    sessions = sorted(p for p in sessions_dir.glob("session_*") if p.is_dir() and not p.is_symlink())
    latest = sessions_dir / "session_latest"
    current = latest.resolve() if latest.is_symlink() else None
    removed = []
    for session in sessions[:max(len(sessions) - keep, 0)]:
        pid = session.name.rsplit("_", 1)[-1]
        if session.resolve() == current or (pid.isdigit() and alive(int(pid))):
            continue
        shutil.rmtree(session, ignore_errors=True)
        removed.append(session)
    return removed


def contain_ray(data_dir: Path, local: bool) -> None:
    """Ray offline and inside the data dir: temp files and sessions there, usage stats off, no
    outside probe; a local cluster gets token auth with a token kept in the data dir (Ray's
    default would write ~/.ray/auth_token). Values the user already set win."""
    if "RAY_TMPDIR" not in os.environ:
        os.environ["RAY_TMPDIR"] = str(_short_ray_tmpdir(data_dir))
    pruned = prune_ray_sessions((Path(data_dir) / "ray" / "ray").resolve())  # only ever the data dir's own
    if pruned:
        log(f"runner: removed {len(pruned)} old Ray session folder(s), kept the newest {RAY_SESSIONS_KEPT}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if local and "RAY_AUTH_MODE" not in os.environ:
        token = (Path(data_dir) / "ray" / "auth_token").resolve()
        if not token.exists():
            with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                out.write(secrets.token_hex(32))
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(token))


def raise_if_cluster_gone() -> None:
    """In a flow run: the one-line error of a Ray runner that found no cluster as it started."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    reason = getattr(context.task_runner, "unreachable", None) if context else None
    if reason:
        raise UserError(reason)


@contextmanager
def shared_prefect_api(task_runner):
    """Ray workers are other processes that hydrate this one's Prefect settings: without an API
    address each would start a Prefect server of its own, on the same database. Give them this
    process's ephemeral server (a set PREFECT_API_URL is used as it is), and no fallback."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        temporary_settings,
    )

    if not any(kind.__name__ == "RayTaskRunner" for kind in type(task_runner).__mro__) or PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the process-wide ephemeral server, started once
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")))
    with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_SERVER_EPHEMERAL_ENABLED: False}):
        yield


def task_runner_for(runner: RunnerConfig, data_dir: Path):
    """A Prefect task runner for the config's [runner] section."""
    if runner.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=runner.workers)
    if runner.kind == "processes":
        return ProcessPoolTaskRunner(max_workers=runner.workers)
    try:
        from flows.ray_runner import CheckedRayTaskRunner
    except ImportError as exc:
        raise UserError("runner kind 'ray' needs prefect-ray (pip install prefect-ray)") from exc
    local = runner.address is None
    if not local:
        check_reachable(runner.address)  # now, and again as each flow run starts the runner
    contain_ray(data_dir, local)
    # A cluster that is already running has its own CPUs and dashboard.
    init_kwargs = {"include_dashboard": runner.dashboard, "num_cpus": runner.workers} if local else {}
    log(f"runner: Ray {'(local, ' + str(runner.workers or 'all') + ' CPUs)' if local else 'at ' + runner.address}, "
        f"{runner.shards} shards per stage")
    return CheckedRayTaskRunner(address=runner.address, init_kwargs=init_kwargs)
