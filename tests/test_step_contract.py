"""The steps' contract (curate/pipeline.py: Step.reads, Step.writes): each step, run on a state that
records what it touches, reads and changes only the RunState fields it declares, and every field a
step reads is written by a step before it."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tomllib
from pathlib import Path

from curate.config import DEMO_CONFIG, load_config, parse_config
from curate.pipeline import Pipeline, run_steps
from curate.steps.state import RunState

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"
# every step adds to counts; the runner keeps timings; run_id is the state's own from the start
FIELDS = {f.name for f in dataclasses.fields(RunState)} - {"counts", "timings", "run_id"}


class RecordingState(RunState):
    def __getattribute__(self, name):
        if name in FIELDS:
            object.__getattribute__(self, "read").add(name)
        return object.__getattribute__(self, name)


def test_each_step_reads_and_writes_what_it_declares(tmp_path):
    shutil.copy(EXAMPLES / "ultrafeedback.jsonl", tmp_path)
    values = tomllib.loads((EXAMPLES / "ultrafeedback.toml").read_text())
    values["pairs"].append({"strategy": "stepwise"})  # a deriving strategy: its derive step, without a generator
    values["dedup"] = {"semantic": False}
    pipeline = Pipeline(parse_config(values, tmp_path), tmp_path / "data")
    try:
        started = pipeline.start()
        state = RecordingState(**{f.name: getattr(started, f.name) for f in dataclasses.fields(RunState)})
        for step in run_steps(pipeline.config):
            before = {name: copy.deepcopy(object.__getattribute__(state, name)) for name in FIELDS}
            object.__setattr__(state, "read", set())
            pipeline.run_step(step.name, state)
            read = set(object.__getattribute__(state, "read"))
            changed = {name for name in FIELDS if object.__getattribute__(state, name) != before[name]}
            assert read <= step.reads | step.writes, (step.name, read - step.reads - step.writes)
            assert changed <= step.writes, (step.name, changed - step.writes)
        pipeline.finish(state)
        assert state.pairs_by_strategy and state.audit and state.export_path
    finally:
        pipeline.close()


def test_every_field_a_step_reads_is_written_before_it():
    for config in (load_config(DEMO_CONFIG), load_config(EXAMPLES / "ultrafeedback.toml")):
        written: set[str] = set()
        for step in run_steps(config):
            assert step.reads <= written | step.writes, (step.name, step.reads - written)
            assert (step.reads | step.writes) <= FIELDS, step.name
            written |= step.writes
