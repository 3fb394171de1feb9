"""Generate: the candidates each generator owes the run's prompts, committed as they finish."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.generate import generate_candidates, plan_requests
from curate.lake.background_commit import commit_while_producing
from curate.progress import log
from curate.steps.state import RunContext, RunState


def generate(context: RunContext, state: RunState) -> None:
    wanted = [p for p in state.prompt_ids if p not in state.no_generation]
    if len(wanted) < len(state.prompt_ids):
        log(f"generate: {len(state.prompt_ids) - len(wanted)} prompts of inputs with generate = false skipped")
    if wanted and not context.config.generators:
        log(f"generate: no generators in this run; {len(wanted)} prompts keep only their imported completions")
    generate_for(context, context.lake.rows_where_in("prompts", "prompt_id", wanted), context.config.generators,
                 state)


def generate_for(context: RunContext, prompts: pl.DataFrame, generators: list, state: RunState) -> None:
    """Every missing candidate of `prompts` from each of `generators` (candidates already in the lake
    are reused: a second run regenerates nothing)."""
    for generator in generators:
        backend = context.engines.generator_backend(generator)
        answered = prompts if not generator.tasks else prompts.filter(pl.col("task").is_in(generator.tasks))
        planned = plan_requests(answered, backend.fingerprint,
                                lambda task, g=generator: context.engines.sampling_for_task(task, g))
        if not planned:
            continue
        planned_ids = [r.candidate_id for r in planned]
        state.candidate_ids.extend(planned_ids)
        done = context.lake.existing_ids("candidates", planned_ids)
        missing = [r for r in planned if r.candidate_id not in done]
        state.add("candidates_reused", len(done))
        log(f"generate: {len(planned)} candidates planned, {len(done)} already in the lake, "
            f"{len(missing)} to generate with {backend.model_label}")
        committed = 0

        def commit(table: pa.Table) -> None:
            nonlocal committed
            committed += context.lake.commit({"candidates": table})["candidates"]
            state.add("candidates_new", table.num_rows)
            _count_failed(table, state)
            log(f"generate: committed {committed}/{len(missing)} candidates")

        # the engine generates the next chunk while this one is written
        commit_while_producing(generate_candidates(missing, backend, state.run_id,
                                                   context.config.sampling.chunk_size), commit)


def _count_failed(table: pa.Table, state: RunState) -> None:
    """Requests that produced no text (a prompt longer than the generator's max_model_len, a
    server's refusal): stored as candidates with finish_reason 'error', counted and logged."""
    failed = table.filter(pc.equal(table.column("finish_reason"), "error"))
    if failed.num_rows:
        state.add("candidates_error", failed.num_rows)
        reasons = sorted(set(failed.column("error").to_pylist()), key=str)
        log(f"generate: {failed.num_rows} requests failed, stored with finish_reason 'error' "
            f"(e.g. {reasons[0]})")
