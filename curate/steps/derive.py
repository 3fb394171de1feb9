"""Derive: strategies that drive generation (curate.pairs.derive) make prompts from the run's
prompts, candidates and scores; the first generator answers them and the scorers score them.

Each round is three steps of its own (derive, generate_derived, score_derived), so a flow shows
and times them apart. A strategy with more rounds derives again from what earlier rounds made.
"""

from __future__ import annotations

import pyarrow as pa

from curate.pairs.derive import derived_prompt_rows, original_prompts
from curate.pairs.registry import PairSpec, strategy_named
from curate.progress import log
from curate.steps.generate import generate_for
from curate.steps.state import RunContext, RunState


def deriving_specs(config) -> list[PairSpec]:
    return [spec for spec in config.pairs if strategy_named(spec.strategy).derive]


def rounds_of(config) -> int:
    """How many derive rounds the run's strategies ask for (0 without a generator to answer them)."""
    specs = deriving_specs(config)
    if not config.generators:
        return 0
    return max((strategy_named(spec.strategy).derive_rounds for spec in specs), default=0)


def no_generator(context: RunContext, state: RunState) -> None:
    """The derive step of a run whose strategies derive but that has no generator."""
    names = ", ".join(spec.strategy for spec in deriving_specs(context.config))
    log(f"derive: no generator in this run; {names} derive nothing")


def derive(context: RunContext, state: RunState, round_index: int) -> None:
    specs = [s for s in deriving_specs(context.config) if strategy_named(s.strategy).derive_rounds > round_index]
    prompts, candidates = context.run_prompts_and_candidates(state)
    if round_index == 0:
        prompts = original_prompts(prompts)
    scores = context.lake.rows_where_in("scores", "candidate_id", state.candidate_ids)
    tables = []
    for spec in specs:
        derived = strategy_named(spec.strategy).derive(prompts, candidates, scores, spec.options)
        tables.append(derived_prompt_rows(derived, spec.strategy, state.run_id))
        for key, count in sorted(getattr(derived, "counts", {}).items()):
            state.add(f"derive_{spec.strategy}_{key}", count)
        log(f"derive {spec.strategy}: {len(derived)} prompts" + (f" (round {round_index + 1})" if round_index else ""))
    rows = pa.concat_tables(tables)
    added = context.lake.commit({"prompts": rows})["prompts"]
    fresh = sorted(set(rows.column("prompt_id").to_pylist()) - set(state.prompt_ids))
    state.add("derived_prompts", len(fresh))
    state.add("derived_prompts_new", added)
    state.prompt_ids = sorted(set(state.prompt_ids) | set(fresh))
    state.derived_to_generate = fresh


def generate_derived(context: RunContext, state: RunState) -> None:
    """The derived prompts of the last round, answered by the first generator."""
    prompts = context.lake.rows_where_in("prompts", "prompt_id", state.derived_to_generate)
    generate_for(context, prompts, context.config.generators[:1], state)

