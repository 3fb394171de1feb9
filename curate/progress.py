"""Console output: timestamped progress lines and the end-of-run summary table."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime

from rich.console import Console
from rich.table import Table
from rich.text import Text
from tqdm.auto import tqdm

from curate.errors import UserError, one_line

# No markup and no emoji codes: every message and cell prints as it is (a `[sampling]` stays).
console = Console(stderr=False, highlight=False, markup=False, emoji=False)
error_console = Console(stderr=True, highlight=False, markup=False, emoji=False)


def log(message: str) -> None:
    console.print(Text.assemble((f"{datetime.now():%H:%M:%S}", "dim"), " ", message), soft_wrap=True)


PROGRESS_INTERVAL_S = 30.0  # seconds between progress lines when stderr is no terminal


def interactive() -> bool:
    """Whether stderr is a terminal: bars redraw there; a log file gets one line per interval."""
    return sys.stderr.isatty()


def progress(items: Iterable, total: int, desc: str, unit: str = "item") -> Iterator:
    """`items`, with a tqdm bar on a terminal, or (in a log file, where parallel bars interleave into
    unreadable text) a line every PROGRESS_INTERVAL_S seconds and one at the end if any was written."""
    if interactive():
        yield from tqdm(items, total=total, desc=desc, unit=unit, leave=False)
        return
    began = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= PROGRESS_INTERVAL_S:
            log(f"{desc}: {done}/{total} {unit}s ({done / (now - began):.1f}/s)")
            last = now
    if last != began:
        log(f"{desc}: {done}/{total} {unit}s in {time.monotonic() - began:.0f} s")


def library_bars_follow_terminal() -> None:
    """Hugging Face's bars (datasets' "Saving the dataset", transformers' downloads) only on a terminal.
    Through the libraries' own variables, read when they are imported: importing them here to call
    their switches cost every `curate` command 2.4 s (a query included); one already imported is
    switched off directly."""
    if interactive():
        return
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers follows huggingface_hub
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()


def warn(message: str) -> None:
    """A problem the run goes on after: one line on stderr, verbatim."""
    error_console.print(Text.assemble(("warning:", "yellow"), " ", one_line(message)), soft_wrap=True)


def print_error(message: str) -> None:
    """One line on stderr, verbatim, never wrapped."""
    error_console.print(Text.assemble(("error:", "red"), " ", one_line(message)), soft_wrap=True)


def summary_table(state) -> Table:
    counts = state.counts
    table = Table(title=f"curate run {state.run_id}")
    table.add_column("what")
    table.add_column("this run", justify="right")
    table.add_column("new in lake", justify="right")
    table.add_row("prompts", str(counts.get("prompts_read", 0)), str(counts.get("prompts_new", 0)))
    table.add_row("rejects", str(counts.get("rejects_read", 0)), str(counts.get("rejects_new", 0)))
    if counts.get("derived_prompts"):
        table.add_row("derived prompts (strategies)", str(counts["derived_prompts"]),
                      str(counts.get("derived_prompts_new", 0)))
    questions = {k.rsplit("_questions_", 1)[1]: v for k, v in counts.items() if "_questions_" in k}
    if questions:  # short-to-long: questions the model wrote from chunks, kept or discarded by reason
        discarded = ", ".join(f"{n} {reason}" for reason, n in sorted(questions.items()) if reason != "ok")
        table.add_row("  model-written questions kept", str(questions.get("ok", 0)),
                      f"discarded: {discarded}" if discarded else "")
    imported, imported_new = counts.get("candidates_imported", 0), counts.get("candidates_imported_new", 0)
    table.add_row("candidates", str(counts.get("candidates_reused", 0) + counts.get("candidates_new", 0) + imported),
                  str(counts.get("candidates_new", 0) + imported_new))
    if imported:  # completions the inputs held (curate/ingest/imported.py)
        table.add_row("  imported from the inputs", str(imported), str(imported_new))
    table.add_row("scores", "", str(counts.get("scores_new", 0) + counts.get("scores_imported_new", 0)))
    if counts.get("scores_imported_new"):
        table.add_row("  imported ratings", "", str(counts["scores_imported_new"]))
    for status in ("unparsed", "error", "no_text"):
        if counts.get(f"scores_{status}"):
            table.add_row(f"  scores {status} (excluded)", "", str(counts[f"scores_{status}"]))
    if "quality_checked" in counts:  # the quality gates: never a chosen (curate/score/quality.py)
        table.add_row(f"candidates gated by quality (of {counts['quality_checked']})",
                      str(counts.get("quality_gated", 0)), "")
        for key in sorted(k for k in counts if k.startswith("quality_gate_")):
            table.add_row(f"  {key.removeprefix('quality_gate_')}", str(counts[key]), "")
    table.add_row("pairs built", str(counts.get("pairs_built", 0)), str(counts.get("pairs_new", 0)))
    if counts.get("pairs_found_again"):  # the same pair by two [[pairs]] entries: one pair, both evidences
        table.add_row("  found again by another entry (kept once, its evidence in also_found_by)",
                      str(counts["pairs_found_again"]), "")
    refused = sorted(k for k in counts if k.startswith("pairs_refused_"))
    if refused:  # the pairing rule (curate/pairs/rule.py), per reason
        table.add_row("pairs refused by the pairing rule", str(sum(counts[k] for k in refused)), "")
        for key in refused:
            table.add_row(f"  {key.removeprefix('pairs_refused_')}", str(counts[key]), "")
    table.add_row("pairs dropped by dedup", str(counts.get("pairs_duplicates_dropped", 0)), "")
    for reason in ("exact", "minhash", "semantic"):
        if counts.get(f"pairs_dropped_{reason}"):
            table.add_row(f"  {reason}", str(counts[f"pairs_dropped_{reason}"]), "")
    if counts.get("prompts_contaminated"):
        table.add_row("prompts dropped as contaminated", str(counts["prompts_contaminated"]), "")
    for strategy, count in sorted(state.pairs_by_strategy.items()):
        table.add_row(f"  pairs: {strategy}", "", str(count))
    for strategy, row in sorted(getattr(state, "audit", {}).items()):
        table.add_row(f"  audit: {strategy}", f"{row['pairs']} pairs",
                      f"{row['confirmed']} confirmed, {row['refuted']} refuted, {row['uncheckable']} uncheckable"
                      + (f", {row['unaudited']} unaudited" if row.get("unaudited") else "")
                      + (f"; answers: {row['answer_confirmed']} confirmed, {row['answer_refuted']} refuted, "
                         f"{row['answer_unchecked']} unchecked" if "answer_confirmed" in row else ""))
    if state.export_path:
        table.add_row("exported pairs", str(counts.get("pairs_exported", 0)), state.export_path)
        if counts.get("pairs_refuted_left_out"):
            table.add_row("  refuted by the audit, left out", str(counts["pairs_refuted_left_out"]), "")
        if counts.get("pairs_answer_left_out"):
            table.add_row("  without answer-level evidence, left out", str(counts["pairs_answer_left_out"]), "")
    if state.timings:
        table.caption = "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in state.timings.items())
    return table


class _NoUserErrors(logging.Filter):
    """Prefect logs a step's UserError with its traceback; the CLI prints it once, as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            return False
        return not (record.name.startswith("prefect") and "UserError" in record.getMessage())


def quiet_user_errors_in_prefect_logs() -> None:
    """Keep UserErrors out of Prefect's console log (its API log keeps them)."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _NoUserErrors) for f in handler.filters):
            handler.addFilter(_NoUserErrors())
