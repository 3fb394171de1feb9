"""The nightly deployment: the `build` flow served on a cron schedule with `flow.serve`.

Each scheduled run is incremental by construction: prompts, candidates, scores and pairs are
found in the lake by content id, so only new prompts (or new scorers) cost anything.
"""

from __future__ import annotations

from pathlib import Path

from flows.build import build_flow

DEFAULT_CRON = "0 2 * * *"  # 02:00 every night
DEPLOYMENT_NAME = "nightly"


def serve_nightly(config_path: str, data_dir: str, cron: str | None = DEFAULT_CRON,
                  name: str = DEPLOYMENT_NAME) -> None:
    """Register the deployment and run scheduled (and manually triggered) runs until stopped.

    Needs a Prefect API: `prefect server start`, then PREFECT_API_URL set to its address.
    """
    parameters = {"config_path": str(Path(config_path).resolve()), "data_dir": str(Path(data_dir).resolve())}
    build_flow(config_path, data_dir).serve(
        name=name, cron=cron, parameters=parameters, pause_on_shutdown=False,
        description="curate: build the preference dataset from the configured prompt sources")
