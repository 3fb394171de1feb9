"""The `build` flow: one dataset, ingest → generate → score → derive → pairs (with dedup) → export.

Each step of `curate.pipeline.Pipeline` runs as a Prefect task in the flow's thread (vLLM's
in-process engine stays on one thread). Parameters are plain strings so the flow can be
deployed and scheduled as is.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curate.config import load_config
from curate.pipeline import Pipeline, RunState


TRANSIENT = (ConnectionError, TimeoutError)


def retry_if_transient(task, task_run, state) -> bool:
    """Retry a step only for errors that may pass (a backend connection, a time-out): every
    step is idempotent, so a retry redoes only what is missing. Bad input or config fails at once."""
    return isinstance(state.result(raise_on_failure=False), TRANSIENT)


def _step(name: str):
    @task(name=name, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10,
          retry_condition_fn=retry_if_transient)
    def run_step(pipeline: Pipeline, state: RunState) -> None:
        getattr(pipeline, name)(state)

    return run_step


STEPS = ("ingest", "generate", "score", "derive", "pairs", "export")
TASKS = [_step(name) for name in STEPS]


@flow(name="build")
def build(config_path: str, data_dir: str = "data") -> dict:
    """Run the pipeline for one config; returns the run's id and counts."""
    pipeline = Pipeline(load_config(Path(config_path)), Path(data_dir))
    state = pipeline.start()
    try:
        for step in TASKS:
            step(pipeline, state)
    except BaseException:
        pipeline.finish(state, "failed")
        pipeline.close()
        raise
    pipeline.finish(state)
    pipeline.close()
    return {"run_id": state.run_id, "counts": state.counts, "pairs_by_strategy": state.pairs_by_strategy,
            "export_path": state.export_path, "state": state}
