"""The `build` flow: one dataset, ingest → generate → score → derive → pairs (with dedup) →
audit → export.

Each step of `curate.pipeline.run_steps` (the one declaration of the steps, shared with plain
runs) runs as a Prefect task in the flow's thread (vLLM's
in-process engine stays on one thread, the lake on one connection). Steps hand their shard work
(curate.runtime.shards) to the flow's task runner, which the config's [runner] picks: threads or Ray
(`build_flow`). Parameters are plain strings so the flow can be deployed and scheduled as is.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curate.config import RUNNER_KINDS, load_config
from curate.errors import UserError
from curate.pipeline import Pipeline, RunState, run_steps
from flows.runners import TaskShards, raise_if_cluster_gone, shared_prefect_api, task_runner_for

TRANSIENT = (ConnectionError, TimeoutError)


def retry_if_transient(task, task_run, state) -> bool:
    """Retry a step only for errors that may pass (a backend connection, a time-out): every
    step is idempotent, so a retry redoes only what is missing. Bad input or config fails at once."""
    return isinstance(state.result(raise_on_failure=False), TRANSIENT)


# The running pipelines by run id. A step task takes only the run id: a task's parameters travel
# with the context of the shard tasks it submits, and a pipeline (lake connection, engines) cannot
# be shipped to another process. Only module-level functions touch `_RUNNING`: Ray pickles them by
# reference, while the flow's own function is pickled by value, with the globals it names.
_RUNNING: dict[str, tuple[Pipeline, RunState]] = {}


def run_step(step: str, run_id: str) -> None:
    pipeline, state = _RUNNING[run_id]
    pipeline.run_step(step, state)


def _register(pipeline: Pipeline, state: RunState) -> None:
    _RUNNING[state.run_id] = (pipeline, state)


def _unregister(run_id: str) -> None:
    _RUNNING.pop(run_id, None)


def _step(name: str):
    return task(run_step, name=name, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10,
                retry_condition_fn=retry_if_transient)


@flow(name="build")
def build(config_path: str, data_dir: str = "data") -> dict:
    """Run the pipeline for one config; returns the run's id and counts."""
    raise_if_cluster_gone()  # checked as each run starts: a served deployment outlives clusters
    pipeline = Pipeline(load_config(Path(config_path)), Path(data_dir))
    pipeline.shards = TaskShards(pipeline.config.runner.shards, pipeline.config.runner.inline_below)
    try:
        state = pipeline.start()
    except BaseException:
        pipeline.close()
        raise
    _register(pipeline, state)
    try:
        for step in run_steps(pipeline.config):
            _step(step.name)(step.name, state.run_id)
        pipeline.finish(state)
    except BaseException:
        pipeline.finish(state, "failed")
        raise
    finally:
        _unregister(state.run_id)
        pipeline.close()
    return {"run_id": state.run_id, "counts": state.counts, "pairs_by_strategy": state.pairs_by_strategy,
            "export_path": state.export_path, "state": state}


def build_flow(config_path: str | Path, data_dir: str | Path = "data", runner_kind: str | None = None):
    """The build flow with the task runner the config's [runner] asks for (`runner_kind`, when
    given, overrides its kind: the shard count, hence every row, stays the config's)."""
    runner = load_config(Path(config_path)).runner
    if runner_kind is not None:
        if runner_kind not in RUNNER_KINDS:
            raise UserError(f"--runner must be threads, processes or ray, not {runner_kind!r}")
        runner = replace(runner, kind=runner_kind, address=runner.address if runner_kind == "ray" else None)
    return build.with_options(task_runner=task_runner_for(runner, Path(data_dir)))


def run_build(config_path: str | Path, data_dir: str | Path = "data", runner_kind: str | None = None) -> dict:
    """`build_flow` run once, with a Prefect API its Ray workers share (flows/runners.py)."""
    configured = build_flow(config_path, data_dir, runner_kind)
    with shared_prefect_api(configured.task_runner):
        return configured(str(config_path), str(data_dir))
