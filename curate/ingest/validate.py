"""Ingest: read prompt files, validate each row, and split them into prompts and rejects.

Accepted inputs: JSONL, Parquet, and Hugging Face dataset directories (`save_to_disk`). A row
has `messages` (chat format) or `prompt` (a string, taken as one user message), a `task`
(default `chat`) and the fields that task needs. A bad row becomes a reject with a one-line
reason; the other rows go on. Completions a row holds (a completion list, a binarized pair, an
HH-RLHF transcript: curate.ingest.imported) become imported candidates and their ratings score rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from curate import bulk_ids, ids
from curate.ingest import imported
from curate.ingest.readers import (
    RawChunk,
    RawRow,
    RowError,
    one_line,
    printable,
    read_rows,
    rows_of_chunk,
    value_problem,
)
from curate.lake import schemas
from curate.score import SCORE_ID_PARTS
from curate.score.verify.constraints import constraint_errors

__all__ = ["Ingested", "RawRow", "RowError", "ingest_batches", "ingest_file", "ingest_rows", "long_context_message",
           "read_rows", "validate_row"]

ROLES = {"system", "user", "assistant"}
# Required and optional fields per task kind (docs/architecture.md, "Prompts").
TASK_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "chat": ((), ()),
    "math": (("reference_answer",), ("reference_solution",)),
    "code": (("tests",), ("entry_point", "reference_solution")),
    "instruction": (("constraints",), ("base_prompt",)),
    "long_context": (("context", "question"), ()),
    "code_edit": (("before", "after", "message"), ()),
}


def long_context_message(context: str, question: str) -> str:
    """The user message of a long_context prompt given only a context and a question (short-to-long
    pairs and the stdlib docs source build theirs the same way)."""
    return f"{context}\n\n{question}"

def _messages_of(row: dict) -> list[dict]:
    if row.get("task") == "long_context" and not row.get("messages") and not row.get("prompt"):
        context, question = row.get("context"), row.get("question")
        if isinstance(context, str) and isinstance(question, str) and context.strip() and question.strip():
            return [{"role": "user", "content": long_context_message(context, question)}]
    if "messages" in row and row["messages"] is not None:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise RowError("messages must be a non-empty list")
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise RowError(f"messages[{index}] is not an object")
            if not isinstance(message.get("role"), str) or message["role"] not in ROLES:
                raise RowError(f"messages[{index}].role must be one of {sorted(ROLES)}")
            content = message.get("content")
            if not isinstance(content, str) or not content.strip():
                raise RowError(f"messages[{index}].content must be a non-empty string")
        if messages[-1]["role"] != "user":
            raise RowError("the last message must be from the user")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt = row.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    raise RowError("row needs `messages` (a chat list) or `prompt` (a non-empty string)")


def _task_fields_of(row: dict, task: str) -> dict:
    required, optional = TASK_FIELDS[task]
    fields = {}
    for name in required:
        if row.get(name) in (None, "", []):
            raise RowError(f"task {task!r} needs field {name!r}")
        fields[name] = row[name]
    for name in optional:
        if row.get(name) not in (None, ""):
            fields[name] = row[name]
    for name in ("reference_answer", "reference_solution", "tests", "entry_point", "context", "base_prompt",
                 "question", "before", "after", "message"):
        value = fields.get(name)
        if name == "reference_answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise RowError("reference_answer must be a finite number or a string")
            fields[name] = str(value)
        elif value is not None and not isinstance(value, str):
            raise RowError(f"field {name!r} must be a string")
    if task == "instruction":
        errors = constraint_errors(fields["constraints"])
        if errors:
            raise RowError(errors[0])
    return fields


def validate_row(row: dict, source: str, run_id: str, now: datetime) -> dict:
    """One input row as a `prompts` row; raises RowError with the reason."""
    if not isinstance(row, dict):
        raise RowError("row is not an object")
    if problem := value_problem(row):
        raise RowError(problem)
    task = row.get("task")
    task = "chat" if task in (None, "") else task
    if not isinstance(task, str) or task not in TASK_FIELDS:
        raise RowError(f"unknown task {task!r} (expected one of {sorted(TASK_FIELDS)})")
    fields = _task_fields_of(row, task)  # first: a long_context row's messages come from its fields
    messages = _messages_of(row)
    constraints = fields.pop("constraints", None)
    reference_answer = fields.pop("reference_answer", None)
    reference_solution = fields.pop("reference_solution", None)
    identity_fields = {"reference_answer": reference_answer, "reference_solution": reference_solution,
                       "constraints": constraints, **fields}
    try:
        constraints_json = json.dumps(constraints, allow_nan=False) if constraints is not None else None
    except (TypeError, ValueError) as exc:
        raise RowError(f"constraints are not plain JSON ({exc})") from exc
    return {
        "prompt_id": ids.prompt_id(messages, task, identity_fields, source),
        "source": source,
        "task": task,
        "messages": messages,
        "reference_answer": reference_answer,
        "reference_solution": reference_solution,
        "constraints_json": constraints_json,
        "task_fields_json": json.dumps(fields, sort_keys=True) if fields else None,
        "run_id": run_id,
        "created_at": now,
    }


def _reject(row: RawRow, reason: str, source: str, run_id: str, now: datetime) -> dict:
    raw = printable(row.raw)
    location = one_line(row.location)
    return {"reject_id": ids.content_hash("reject", source, location, raw), "source": source,
            "location": location, "raw": raw, "reason": one_line(reason) or "unreadable row",
            "stage": "ingest", "run_id": run_id, "created_at": now}


@dataclass
class Ingested:
    """What one batch of input rows gave: prompts, rejects, imported candidates and their ratings."""

    prompts: pa.Table
    rejects: pa.Table
    candidates: pa.Table
    scores: pa.Table


class _Batch:
    def __init__(self, source: str, run_id: str, input_name: str | None, lower_is_better: tuple[str, ...]):
        self.source, self.run_id, self.input_name = source, run_id, input_name
        self.lower_is_better = lower_is_better
        self.now = datetime.now(timezone.utc)
        self.prompts: dict[str, dict] = {}
        self.locations: dict[str, RawRow] = {}
        self.rejects: list[dict] = []
        self.candidates: list[dict] = []  # every completion's row; ids and duplicates settled in tables()
        self.scores: list[tuple[int, dict]] = []  # (its candidate's position in candidates, score row)
        self.rows = 0

    def add(self, row: RawRow, columns: dict[str, str]) -> None:
        self.rows += 1
        source, run_id, now = self.source, self.run_id, self.now
        try:
            if row.value is None:
                raise RowError(row.parse_error or "unreadable row")
            if not isinstance(row.value, dict):
                raise RowError("row is not an object")
            parts = imported.split_row(imported.apply_columns(row.value, columns))
            prompt = validate_row(parts.prompt_row, source, run_id, now)
        except RowError as exc:
            self.rejects.append(_reject(row, str(exc), source, run_id, now))
            return
        except Exception as exc:  # a validation bug must not cost the other rows
            self.rejects.append(_reject(row, f"could not be validated ({type(exc).__name__}: {exc})",
                                        source, run_id, now))
            return
        if prompt["prompt_id"] not in self.prompts:
            self.prompts[prompt["prompt_id"]] = prompt
            self.locations[prompt["prompt_id"]] = row
        for where, raw, reason in parts.problems:  # a malformed completion: the rest of the row goes on
            self.rejects.append(_reject(RawRow(f"{row.location} {where}", raw, None), reason, source, run_id, now))
        lineage = {"source": source, "input": self.input_name, "location": row.location}
        for completion in parts.completions:
            candidate = imported.candidate_row(completion, prompt["prompt_id"], lineage, run_id, now)
            self.candidates.append(candidate)
            for score in imported.score_rows(candidate, completion, source, run_id, now, self.lower_is_better):
                self.scores.append((len(self.candidates) - 1, score))

    def tables(self) -> Ingested:
        try:
            prompts = schemas.conform("prompts", list(self.prompts.values()))
        except Exception:  # find the rows Arrow refuses, one by one
            kept = []
            for prompt_id, prompt in self.prompts.items():
                try:
                    schemas.conform("prompts", [prompt])
                    kept.append(prompt)
                except Exception as exc:
                    self.rejects.append(_reject(self.locations[prompt_id], f"cannot be stored ({exc})",
                                                self.source, self.run_id, self.now))
            prompts = schemas.conform("prompts", kept)
        stored = set(prompts.column("prompt_id").to_pylist())
        candidates, scores = self._identified()
        candidates = [c for c in candidates if c["prompt_id"] in stored]
        scores = [s for s in scores if s["prompt_id"] in stored]
        return Ingested(prompts, schemas.conform("rejects", self.rejects), schemas.conform("candidates", candidates),
                        schemas.conform("scores", scores))

    def _identified(self) -> tuple[list[dict], list[dict]]:
        """The batch's candidates and scores with their ids (computed column-wise), one row per id:
        the first one's."""
        if not self.candidates:
            return [], []
        bulk_ids.fill_ids(self.candidates, "candidate_id", imported.candidate_ids, ("prompt_id", "model", "text"))
        candidates = _first_per(self.candidates, "candidate_id")
        for position, score in self.scores:
            score["candidate_id"] = self.candidates[position]["candidate_id"]
        rows = bulk_ids.fill_ids([score for _, score in self.scores], "score_id", bulk_ids.score_ids, SCORE_ID_PARTS)
        return candidates, _first_per(rows, "score_id")


def _first_per(rows: list[dict], key: str) -> list[dict]:
    first: dict[str, dict] = {}
    for row in rows:
        first.setdefault(row[key], row)
    return list(first.values())


def ingest_batches(rows, source: str, run_id: str, *, columns: dict[str, str] | None = None,
                   input_name: str | None = None, batch_rows: int | None = None,
                   lower_is_better=imported.DEFAULT_LOWER_IS_BETTER) -> Iterator[Ingested]:
    """Validate rows in batches of `batch_rows` input rows (all at once when None); at least one
    batch, maybe empty. Within a batch, duplicate prompts, candidates and scores collapse to one
    row. Any failure of one row, expected (RowError) or not, makes that row a reject; a malformed
    completion is a reject of its own (curate.ingest.imported): the rest goes on."""
    columns = columns or {}
    lower_is_better = tuple(lower_is_better)
    batch, yielded = _Batch(source, run_id, input_name, lower_is_better), False
    for row in rows:
        batch.add(row, columns)
        if batch_rows and batch.rows >= batch_rows:
            yield batch.tables()
            batch, yielded = _Batch(source, run_id, input_name, lower_is_better), True
    if batch.rows or not yielded:
        yield batch.tables()


def ingest_chunk(chunk: RawChunk, source: str, run_id: str, columns: dict[str, str] | None = None,
                 input_name: str | None = None, lower_is_better=imported.DEFAULT_LOWER_IS_BETTER) -> Ingested:
    """One batch of ingest_batches from a chunk of raw rows: shard work (curate.runtime.shards), so
    that a run's input is parsed and validated on every core."""
    return next(ingest_batches(rows_of_chunk(chunk), source, run_id, columns=columns, input_name=input_name,
                               lower_is_better=lower_is_better))


def ingest_rows(rows, source: str, run_id: str) -> tuple[pa.Table, pa.Table]:
    """Validate rows: returns (prompts, rejects) tables (imported completions are left out: see
    ingest_batches). Duplicate prompts collapse to one row."""
    ingested = next(ingest_batches(rows, source, run_id))
    return ingested.prompts, ingested.rejects


def ingest_file(path: Path, run_id: str, source: str | None = None) -> tuple[pa.Table, pa.Table]:
    path = Path(path)
    return ingest_rows(read_rows(path), source or path.stem, run_id)
