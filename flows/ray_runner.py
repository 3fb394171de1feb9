"""Prefect-ray's task runner, checking its cluster address each time a flow run starts it.

A served deployment (flows/nightly.py) builds its task runner once and runs for months: the
cluster may be gone by the time a run is triggered, and Ray itself would retry for minutes.
A runner started against an address nobody answers at connects to nothing and holds the reason;
the flow raises it first thing (`raise_if_cluster_gone`), so the run fails with that one line
as its state's message (an error raised while Prefect enters the runner would only crash the
run's process, with no word of why in the run).
"""

from __future__ import annotations

from prefect_ray import RayTaskRunner

from curate.errors import UserError
from curate.runtime.ray_cluster import check_reachable


class CheckedRayTaskRunner(RayTaskRunner):
    unreachable: str | None = None

    def __enter__(self):
        self.unreachable = None
        if self.address:
            try:
                check_reachable(self.address)
            except UserError as exc:
                self.unreachable = str(exc)
                return super(RayTaskRunner, self).__enter__()  # Prefect's bookkeeping, no Ray
        return super().__enter__()

    def __exit__(self, *exc_info):
        if self.unreachable:
            return super(RayTaskRunner, self).__exit__(*exc_info)
        return super().__exit__(*exc_info)
