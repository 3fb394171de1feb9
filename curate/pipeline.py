"""The build pipeline as plain steps over a lake: ingest → generate → score → derive → pairs
(with dedup) → audit → export.

`run_steps(config)` is the one declaration of the steps and their order; `Pipeline.run_all` runs
them in this process and flows/build.py runs each as a Prefect task. The steps live in
curate/steps/, the models they use in curate/runtime/engines.py (the composition root).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

from curate.config import RunConfig
from curate.lake.catalog import open_lake
from curate.runtime.engines import Engines
from curate.runtime.shards import InProcess, ProcessPool, Shards
from curate.steps import derive as derive_steps
from curate.steps.generate import generate
from curate.steps.ingest import ingest
from curate.steps.pairs import pairs
from curate.steps.publish import audit, export, finish, start
from curate.steps.score import score
from curate.steps.state import RunContext, RunState

__all__ = ["Pipeline", "RunState", "Step", "run_steps"]


class Step(NamedTuple):
    """A step and its contract: the RunState fields it reads and those it writes (besides `counts`,
    to which every step adds, and `timings`, the runner's). A field a step reads is written by an
    earlier step or is the state's own start (run_id); tests/test_step_contract.py runs the steps
    on a recording state and holds each to what it declares."""
    name: str  # the flow task's name
    run: Callable[[RunContext, RunState], None]
    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    timing: str | None = None  # the key its seconds add to in RunState.timings (default: its name)


RUN = frozenset({"prompt_ids", "candidate_ids"})  # the run's prompts and candidates, read by most steps


def run_steps(config: RunConfig) -> list[Step]:
    """The steps of a run of `config`, in order. Each derive round is three steps: its prompts,
    their generation, their scores (round k > 1 names them derive_k, ...)."""
    steps = [Step("ingest", ingest, writes=RUN | {"no_generation"}),
             Step("generate", generate, reads=RUN | {"no_generation"}, writes=frozenset({"candidate_ids"})),
             Step("score", score, reads=RUN)]
    rounds = derive_steps.rounds_of(config)
    if derive_steps.deriving_specs(config) and not rounds:
        steps.append(Step("derive", derive_steps.no_generator))
    for index in range(rounds):
        suffix = f"_{index + 1}" if index else ""
        steps += [Step(f"derive{suffix}", partial(derive_steps.derive, round_index=index), reads=RUN,
                       writes=frozenset({"prompt_ids", "derived_to_generate"}), timing="derive"),
                  Step(f"generate_derived{suffix}", derive_steps.generate_derived,
                       reads=frozenset({"derived_to_generate", "candidate_ids"}),
                       writes=frozenset({"candidate_ids"}), timing="generate_derived"),
                  Step(f"score_derived{suffix}", score, reads=RUN, timing="score_derived")]
    outcome = frozenset({"pairs_by_strategy", "refused_by_strategy"})
    return steps + [Step("pairs", pairs, reads=RUN, writes=outcome),
                    Step("audit", audit, writes=frozenset({"audit"})),
                    Step("export", export, reads=outcome, writes=frozenset({"export_path"}))]


class Pipeline:
    """A run of one config over one data dir: its lake, its models, its steps."""

    def __init__(self, config: RunConfig, data_dir: Path):
        self.config = config
        self.data_dir = Path(data_dir)
        self.lake = open_lake(self.data_dir, config.lake)
        # Shard work runs here, one shard after the other, or in worker processes ([runner] kind =
        # "processes"), unless the flow hands the steps its task runner (flows/build.py sets `shards`).
        runner = config.runner
        shards = (ProcessPool(runner.shards, runner.workers, runner.inline_below) if runner.kind == "processes"
                  else InProcess(runner.shards))
        self.context = RunContext(config, self.data_dir, self.lake, Engines(config, self.data_dir),
                                  shards, config.dedup)
        self.steps = {step.name: step for step in run_steps(config)}

    @property
    def shards(self) -> Shards:
        return self.context.shards

    @shards.setter
    def shards(self, shards: Shards) -> None:
        self.context.shards.close()
        self.context.shards = shards

    def start(self) -> RunState:
        return start(self.context)

    def run_step(self, name: str, state: RunState) -> None:
        """One step, timed here (every runner goes through this: run_all, the flow's tasks)."""
        step = self.steps[name]
        began = time.monotonic()
        step.run(self.context, state)
        state.took(step.timing or step.name, time.monotonic() - began)  # a failed attempt is not timed

    def finish(self, state: RunState, status: str = "completed") -> None:
        finish(self.context, state, status)

    def run_all(self) -> RunState:
        """Every step in order, without Prefect (the flow does the same, as tasks)."""
        state = self.start()
        try:
            for name in self.steps:
                self.run_step(name, state)
        except BaseException:
            self.finish(state, "failed")
            raise
        self.finish(state)
        return state

    def close(self) -> None:
        self.context.shards.close()
        self.context.engines.close()
        self.lake.close()
