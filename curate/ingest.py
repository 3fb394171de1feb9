"""Ingest: read prompt files, validate each row, and split them into prompts and rejects.

Accepted inputs: JSONL, Parquet, and Hugging Face dataset directories (`save_to_disk`). A row
has `messages` (chat format) or `prompt` (a string, taken as one user message), a `task`
(default `chat`) and the fields that task needs. A bad row becomes a reject with a one-line
reason; the other rows go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from curate import ids, schemas
from curate.errors import UserError
from curate.score.verify.constraints import constraint_errors

ROLES = {"system", "user", "assistant"}
# Required and optional fields per task kind (DESIGN.md, "Prompts").
TASK_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "chat": ((), ()),
    "math": (("reference_answer",), ("reference_solution",)),
    "code": (("tests",), ("entry_point", "reference_solution")),
    "instruction": (("constraints",), ("base_prompt",)),
    "long_context": (("context", "question"), ()),
    "code_edit": (("before", "after", "message"), ()),
}
RAW_LIMIT = 10_000


@dataclass
class RawRow:
    location: str  # "line 3", "row 7"
    raw: str  # the row as read, for the rejects table
    value: dict | None  # parsed row, or None when it could not be parsed
    parse_error: str | None = None


class RowError(ValueError):
    """A row that fails validation; the message is the reject reason."""


def read_rows(path: Path) -> Iterator[RawRow]:
    """Rows of a JSONL file, a Parquet file or a HF dataset directory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"prompt file not found: {path}")
    if path.is_dir():
        yield from _rows_of_hf_dataset(path)
    elif path.suffix == ".parquet":
        yield from _rows_of_table(_read_parquet(path))
    elif path.suffix in {".jsonl", ".json"}:
        yield from _rows_of_jsonl(path)
    else:
        raise UserError(f"{path}: unsupported prompt file (use .jsonl, .parquet or a HF dataset dir)")


def _rows_of_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RawRow(f"line {number}", line.rstrip("\n"), None, f"invalid JSON: {exc.msg}")
                continue
            if not isinstance(value, dict):
                yield RawRow(f"line {number}", line.rstrip("\n"), None, "row is not a JSON object")
                continue
            yield RawRow(f"line {number}", line.rstrip("\n"), value)


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from exc


def _rows_of_table(table: pa.Table) -> Iterator[RawRow]:
    for number, value in enumerate(table.to_pylist(), start=1):
        yield RawRow(f"row {number}", json.dumps(value, default=str, ensure_ascii=False), value)


def _rows_of_hf_dataset(path: Path) -> Iterator[RawRow]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise UserError(f"{path}: not a Hugging Face dataset directory ({exc})") from exc
    if isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.concatenate_datasets(list(loaded.values()))
    yield from _rows_of_table(loaded.data.table)


def _messages_of(row: dict) -> list[dict]:
    if row.get("task") == "long_context" and not row.get("messages") and not row.get("prompt"):
        context, question = row.get("context"), row.get("question")
        if isinstance(context, str) and isinstance(question, str) and context.strip() and question.strip():
            from curate.pairs.short_to_long import long_context_message

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
    task = row.get("task") or "chat"
    if not isinstance(task, str) or task not in TASK_FIELDS:
        raise RowError(f"unknown task {task!r} (expected one of {sorted(TASK_FIELDS)})")
    messages = _messages_of(row)
    fields = _task_fields_of(row, task)
    constraints = fields.pop("constraints", None)
    reference_answer = fields.pop("reference_answer", None)
    reference_solution = fields.pop("reference_solution", None)
    identity_fields = {"reference_answer": reference_answer, "reference_solution": reference_solution,
                       "constraints": constraints, **fields}
    return {
        "prompt_id": ids.prompt_id(messages, task, identity_fields, source),
        "source": source,
        "task": task,
        "messages": messages,
        "reference_answer": reference_answer,
        "reference_solution": reference_solution,
        "constraints_json": json.dumps(constraints) if constraints is not None else None,
        "task_fields_json": json.dumps(fields, sort_keys=True) if fields else None,
        "run_id": run_id,
        "created_at": now,
    }


def ingest_rows(rows: list[RawRow], source: str, run_id: str) -> tuple[pa.Table, pa.Table]:
    """Validate rows: returns (prompts, rejects) tables. Duplicate prompts collapse to one row."""
    now = datetime.now(timezone.utc)
    prompts: dict[str, dict] = {}
    rejects = []
    for row in rows:
        try:
            if row.value is None:
                raise RowError(row.parse_error or "unreadable row")
            prompt = validate_row(row.value, source, run_id, now)
            prompts.setdefault(prompt["prompt_id"], prompt)
        except RowError as exc:
            raw = row.raw[:RAW_LIMIT]
            rejects.append({
                "reject_id": ids.content_hash("reject", source, row.location, raw),
                "source": source, "location": row.location, "raw": raw, "reason": str(exc),
                "stage": "ingest", "run_id": run_id, "created_at": now,
            })
    return schemas.conform("prompts", list(prompts.values())), schemas.conform("rejects", rejects)


def ingest_file(path: Path, run_id: str, source: str | None = None) -> tuple[pa.Table, pa.Table]:
    path = Path(path)
    return ingest_rows(list(read_rows(path)), source or path.stem, run_id)
