"""Strategies that drive generation themselves (short-to-long, step-wise, code critiques, commit
mining) ask for it by deriving new prompts from the run's prompts, candidates and scores.

A strategy may declare `derive(prompts, candidates, scores, options) -> list[DerivedPrompt]`
(curate.pairs.strategy.Strategy).
The pipeline stores each derived prompt as an ordinary `prompts` row (source
"derived:<strategy>", content-hashed like any prompt, so a second run derives and generates
nothing new), generates its candidates with the first generator (honouring `generation`), scores
them with the scorers that apply to its task, and then calls the strategy's `build` with the
derived prompts included. Other strategies never see derived prompts.

A strategy declaring derive_rounds = k > 1 is called again, up to k times in all, with
its own derived prompts of the earlier rounds (in `prompts`) and their candidates and scores:
a prompt can then be made from what the model generated (short-to-long: a question the model
wrote, then the answers to it). Each round returns every prompt derivable so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl
import pyarrow as pa

from curate import ids
from curate.lake import schemas

DERIVED_SOURCE_PREFIX = "derived:"


@dataclass
class DerivedPrompt:
    parent_prompt_id: str | None  # None for prompts with no parent (e.g. mined from git)
    messages: list[dict]
    task: str  # usually the parent's, so the same scorers apply (math rollouts -> math_verify)
    fields: dict = field(default_factory=dict)  # task fields: reference_answer, tests, entry_point, ...
    # How to generate: n (0 = no generation), max_tokens, temperature, assistant_prefix (the reply
    # is forced to start with it; candidates hold only the continuation).
    generation: dict = field(default_factory=dict)
    note: dict = field(default_factory=dict)  # strategy evidence: prefix length, chunk ids, commit sha


class DerivedPrompts(list):
    """A deriver's prompts, with counts of what it looked at and set aside (e.g. discarded
    model-written questions by reason); the pipeline adds them to the run's counts."""

    def __init__(self, items=(), counts: dict | None = None):
        super().__init__(items)
        self.counts: dict[str, int] = dict(counts or {})


def derived_prompt_rows(derived: list[DerivedPrompt], strategy: str, run_id: str) -> pa.Table:
    now = datetime.now(timezone.utc)
    rows = {}
    for item in derived:
        fields = dict(item.fields)
        reference_answer = fields.pop("reference_answer", None)
        reference_solution = fields.pop("reference_solution", None)
        constraints = fields.pop("constraints", None)
        task_fields = {**fields, "derived": {"strategy": strategy, "parent_prompt_id": item.parent_prompt_id,
                                             "generation": item.generation, "note": item.note}}
        source = DERIVED_SOURCE_PREFIX + strategy
        identity = {"reference_answer": reference_answer, "reference_solution": reference_solution,
                    "constraints": constraints, **task_fields}
        prompt_id = ids.prompt_id(item.messages, item.task, identity, source)
        rows.setdefault(prompt_id, {
            "prompt_id": prompt_id, "source": source, "task": item.task, "messages": item.messages,
            "reference_answer": reference_answer, "reference_solution": reference_solution,
            "constraints_json": json.dumps(constraints) if constraints is not None else None,
            "task_fields_json": json.dumps(task_fields, sort_keys=True), "run_id": run_id, "created_at": now,
        })
    return schemas.conform("prompts", list(rows.values()))


def derived_info(prompts: pl.DataFrame) -> pl.DataFrame:
    """prompt_id, strategy, parent_prompt_id, generation (JSON), note (JSON) of derived prompts."""
    derived = prompts.filter(pl.col("source").str.starts_with(DERIVED_SOURCE_PREFIX))
    rows = []
    for prompt_id, fields in derived.select("prompt_id", "task_fields_json").iter_rows():
        info = json.loads(fields)["derived"]
        rows.append({"prompt_id": prompt_id, "strategy": info["strategy"],
                     "parent_prompt_id": info["parent_prompt_id"],
                     "generation": json.dumps(info["generation"]), "note": json.dumps(info["note"])})
    schema = {"prompt_id": pl.Utf8, "strategy": pl.Utf8, "parent_prompt_id": pl.Utf8,
              "generation": pl.Utf8, "note": pl.Utf8}
    return pl.DataFrame(rows, schema=schema)


def original_prompts(prompts: pl.DataFrame) -> pl.DataFrame:
    return prompts.filter(~pl.col("source").str.starts_with(DERIVED_SOURCE_PREFIX))
