"""Ingest: every [[inputs]] entry read in batches into prompts, rejects and imported candidates."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timezone

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate import ids
from curate.dedup import decontaminate_prompts
from curate.errors import UserError, describe_os_error, one_line
from curate.ingest.imported import INGEST_BATCH_ROWS, SCORER_PREFIX, imported_of
from curate.ingest.readers import raw_chunks
from curate.ingest.sources import builtin_rows
from curate.ingest.validate import Ingested, ingest_batches, ingest_chunk
from curate.lake import schemas
from curate.progress import log, warn
from curate.runtime.shards import Shards
from curate.steps.state import RunContext, RunState


def ingest(context: RunContext, state: RunState) -> None:
    generating: set[str] = set()  # prompts of inputs that generate (a prompt may come from both kinds)
    run_prompts: set[str] = set()  # distinct prompts read so far (a prompt may recur across batches and inputs)
    for spec in context.config.inputs:
        read: dict[str, set | int] = {"prompts": set(), "new": 0, "rejects": 0, "candidates": 0, "reversed": 0}
        for part in _read_input(spec, state.run_id, context.shards):
            _commit(context, part, state, read, run_prompts, spec.lower_is_better)
        (generating if spec.generate else state.no_generation).update(read["prompts"])
        prompts, rejects = len(read["prompts"]), read["rejects"]
        if not prompts + rejects:
            warn(f"{spec.label}: the input holds no rows")
        imported = f", {read['candidates']} completions imported" if read["candidates"] else ""
        log(f"ingest {spec.label}: {prompts} prompts ({read['new']} new){imported}, {rejects} rejected"
            f"{_remark(prompts, rejects)}" + ("" if spec.generate else " (generate = false)"))
        if read["reversed"]:
            names = ", ".join(spec.lower_is_better)
            log(f"ingest {spec.label}: {read['reversed']} ratings of {names} read as lower is better (1 = best) "
                f"and stored negated, so that higher is better for every strategy (set lower_is_better = [] "
                f"in its [[inputs]] entry if they are not)")
    state.no_generation -= generating
    state.prompt_ids = sorted(set(state.prompt_ids))
    state.candidate_ids = sorted(set(state.candidate_ids))
    if not state.prompt_ids:
        log("ingest: no valid prompts in any input; the run goes on with nothing to generate")
        warn(f"no prompts: every input failed or was empty ({state.counts.get('rejects_read', 0)} rejected); "
             "the run goes on with zeros. See: curate query \"select location, reason from rejects\"")


def _remark(prompts: int, rejects: int) -> str:
    if prompts + rejects == 0:
        return " (the input holds no rows)"
    if prompts == 0:
        return " (every row failed: see `curate query \"select location, reason from rejects\"`)"
    return ""


def _commit(context: RunContext, part: Ingested, state: RunState, read: dict, run_prompts: set[str],
            lower_is_better: list[str]) -> None:
    """One batch of an input: prompts (decontaminated when benchmarks are configured), rejects,
    and the candidates and ratings it imports, in one commit."""
    prompts, drops = part.prompts, None
    if context.dedup.benchmarks:
        kept, drops = decontaminate_prompts(pl.from_arrow(prompts), context.benchmark_texts(), context.dedup,
                                            state.run_id)
        prompts = kept.to_arrow()
        state.add("prompts_contaminated", drops.height)
    prompt_ids = prompts.column("prompt_id").to_pylist()
    candidates, scores = imported_of(part, prompt_ids)
    added = context.lake.commit({"prompts": prompts, "rejects": part.rejects, "candidates": candidates,
                                 "scores": scores, **({"dedup_drops": drops.to_arrow()} if drops is not None else {})})
    state.prompt_ids.extend(prompt_ids)
    state.candidate_ids.extend(candidates.column("candidate_id").to_pylist())
    read["prompts"].update(prompt_ids)
    read["new"] += added["prompts"]
    read["rejects"] += part.rejects.num_rows
    read["candidates"] += candidates.num_rows
    reversed_ = pc.and_(pc.is_in(scores.column("scorer"), value_set=pa.array(
        [f"{SCORER_PREFIX}{name}" for name in lower_is_better], pa.string())),
        pc.equal(scores.column("status"), "ok"))
    read["reversed"] += pc.sum(reversed_).as_py() or 0
    distinct = set(prompt_ids) - run_prompts
    run_prompts.update(distinct)
    for key, count in (("prompts_read", len(distinct)), ("prompts_new", added["prompts"]),
                       ("rejects_read", part.rejects.num_rows), ("rejects_new", added["rejects"])):
        state.add(key, count)
    for key, count in (("candidates_imported", candidates.num_rows),
                       ("candidates_imported_new", added["candidates"]), ("scores_imported_new", added["scores"])):
        if count:  # runs that import nothing keep their counts as they were
            state.add(key, count)


def _read_input(spec, run_id: str, shards: Shards) -> Iterator[Ingested]:
    """Batches of one [[inputs]] entry, in input order. A file's batches are parsed and validated
    as shard work, as many at a time as there are shards, the next ones while the caller commits
    these. An input that cannot be read at all is
    one reject naming the input and why, and a warning; the other inputs go on."""
    source = spec.source or (spec.path.stem if spec.path is not None else spec.builtin)
    try:
        if spec.path is None:
            yield from ingest_batches(builtin_rows(spec.builtin, spec.limit), source, run_id, columns=spec.columns,
                                      batch_rows=INGEST_BATCH_ROWS, lower_is_better=spec.lower_is_better,
                                      input_name=f"builtin:{spec.builtin}")
            return
        chunks, previous, empty = raw_chunks(spec.path, INGEST_BATCH_ROWS), None, True
        while window := list(itertools.islice(chunks, shards.count)):
            empty = False
            started = shards.start(ingest_chunk, [(chunk, source, run_id, spec.columns, str(spec.path),
                                                   tuple(spec.lower_is_better)) for chunk in window])
            if previous is not None:  # committed by the caller while the shards parse the next window
                yield from previous.results()
            previous = started
        if previous is not None:
            yield from previous.results()
        if empty:  # one batch, empty, as ingest_batches gives for no rows
            yield from ingest_batches([], source, run_id, input_name=str(spec.path))
        return
    except (UserError, OSError, UnicodeError) as exc:
        reason = f"input not read: {one_line(exc if isinstance(exc, UserError) else describe_os_error(exc))}"
    warn(f"{spec.label}: {reason}")
    reject = {"reject_id": ids.content_hash("reject", source, str(spec.path or spec.builtin), reason),
              "source": source, "location": str(spec.path or f"builtin:{spec.builtin}"), "raw": "",
              "reason": reason, "stage": "ingest", "run_id": run_id, "created_at": datetime.now(timezone.utc)}
    yield Ingested(schemas.conform("prompts", []), schemas.conform("rejects", [reject]),
                   schemas.conform("candidates", []), schemas.conform("scores", []))
