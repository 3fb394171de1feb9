"""The flow's task runner, chosen by the run config's [runner]: threads (default), processes or Ray.

Shard work (curate.runtime.shards) is submitted as Prefect tasks to that runner; the steps themselves
and the lake stay in the flow's process, which commits each stage once.
"""

from __future__ import annotations

import os
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
from curate.runtime.ray_cluster import check_reachable, contain_ray
from curate.runtime.shards import INLINE_BELOW


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
