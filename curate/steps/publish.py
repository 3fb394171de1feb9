"""The run's bookends and its last steps: start (a runs row), audit, export, finish."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

import curate
from curate.audit.checks import audit_run
from curate.config import config_as_dict
from curate.progress import log
from curate.publish.card import CardContext
from curate.publish.export import ExportOptions
from curate.publish.stream import export_lake
from curate.publish.swap import refuse_inside
from curate.steps.state import RunContext, RunState


def code_version() -> str:
    root = Path(curate.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        sha = ""
    return f"curate {curate.__version__}" + (f" ({sha})" if sha else "")


def start(context: RunContext) -> RunState:
    if context.config.export_path:  # before anything runs, not after the night's work
        refuse_inside(_export_dir(context), context.lake.root)
    context.lake.mark_dead_runs_interrupted()
    state = RunState(run_id=uuid.uuid4().hex[:16])
    context.lake.commit({"runs": [{
        "run_id": state.run_id, "started_at": datetime.now(timezone.utc), "finished_at": None,
        "status": "running", "config_json": json.dumps(config_as_dict(context.config)),
        "code_version": code_version(), "counts_json": None,
    }]})
    log(f"run {state.run_id} ({context.config.name}) started; lake at {context.lake.location}")
    return state


def audit(context: RunContext, state: RunState) -> None:
    """Re-check the run's pairs (and those of runs that stopped early) not audited yet
    (curate.audit.checks.audit_run); refuted pairs stay out of exports."""
    result = audit_run(context.lake, state.run_id, judge=context.engines.audit_judge(),
                       tokens=context.engines.pair_tokens(), shards=context.shards)
    state.audit = {row["strategy"]: row for row in result["summary"].to_dicts()}
    state.add("pairs_audited", result["audited"])
    refuted = sum(row["refuted"] for row in state.audit.values())
    answer = {v: sum(row.get(f"answer_{v}", 0) for row in state.audit.values()) for v in ("confirmed", "refuted")}
    log(f"audit: {result['audited']} pairs checked, {result['rows_new']} verdicts new; {refuted} pairs refuted; "
        f"answers: {answer['confirmed']} confirmed, {answer['refuted']} refuted")


def export(context: RunContext, state: RunState) -> None:
    if not context.config.export_path:
        return
    out = _export_dir(context)
    refuse_inside(out, context.lake.root)
    # Everything this run writes to the lake is in: the run is `exporting` (its finish time and
    # counts recorded) while the export is written aside; finish() marks it completed once the
    # export is swapped in, or failed. A run killed meanwhile is interrupted (its next writer
    # says so) and the previous export stays whole.
    finish(context, state, status="exporting")
    snapshot = context.lake.snapshot_id()
    # streamed from the lake in batches; the card reads the scores of the exported pairs only.
    # The card is published only with a whole export, that is by a run that completes.
    runs = context.lake.read("runs").with_columns(
        pl.when(pl.col("run_id") == state.run_id).then(pl.lit("completed")).otherwise(pl.col("status")).alias("status"))
    card = CardContext(runs=runs, as_of=snapshot, source=context.lake.location)
    options = ExportOptions(require=tuple(context.config.export_require))  # export_require = ["answer"]
    written = export_lake(context.lake, out, options, card_context=card)  # a DatasetDict + README card
    state.export_path = str(out)
    state.add("pairs_exported", written["total"])
    state.add("pairs_refuted_left_out", written["refuted_left_out"])
    state.add("pairs_answer_left_out", written["answer_left_out"])
    log(f"export: {written['total']} pairs to {out} ({written['refuted_left_out']} refuted left out"
        + (f", {written['answer_left_out']} without answer-level evidence left out" if options.require else "")
        + ")")


def _export_dir(context: RunContext) -> Path:
    out = Path(context.config.export_path)
    return out if out.is_absolute() else context.data_dir / out


def finish(context: RunContext, state: RunState, status: str = "completed") -> None:
    context.lake.update_run(state.run_id, status=status, finished_at=datetime.now(timezone.utc),
                            counts_json=json.dumps({**state.counts, "pairs_by_strategy": state.pairs_by_strategy,
                                                    "pairs_refused_by_strategy": state.refused_by_strategy,
                                                    "seconds": {k: round(v, 2) for k, v in state.timings.items()}}))
