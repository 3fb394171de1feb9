"""Helpers for the end-to-end tests: a prompt file with good and broken rows, and a config."""

from __future__ import annotations

import json
from pathlib import Path

GOOD_ROWS = [
    {"messages": [{"role": "user", "content": "What is 2 + 3? The answer is"}], "task": "math",
     "reference_answer": "5"},
    {"messages": [{"role": "user", "content": "Tom has 4 apples and eats one. How many are left?"}],
     "task": "math", "reference_answer": 3},
    {"messages": [{"role": "user", "content": "Describe the sea in fewer than 10 words."}],
     "task": "instruction",
     "constraints": [{"type": "length_constraints:number_words",
                      "kwargs": {"relation": "less than", "num_words": 10}}]},
    {"prompt": "Say hello to a friend.", "task": "chat"},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Name a colour."}]},
]

BROKEN_LINES = [
    '{"messages": [{"role": "user", "content": "unterminated"}',  # bad JSON
    json.dumps({"task": "chat"}),  # missing messages/prompt
    json.dumps({"messages": []}),  # empty messages
    json.dumps({"messages": "hello"}),  # wrong type
    json.dumps({"messages": [{"role": "user", "content": "x"}], "task": "math"}),  # no answer
    json.dumps({"prompt": "ok", "task": "poetry"}),  # unknown task
]


def write_prompts(path: Path, broken: bool = True) -> Path:
    lines = [json.dumps(row) for row in GOOD_ROWS]
    if broken:
        lines[2:2] = BROKEN_LINES
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(path: Path, prompts: Path, generator: Path, reward: Path | None, *, n: int = 3,
                 chunk_size: int = 64, export: str | None = "export/test", reward2: Path | None = None) -> Path:
    scorers = '[[scorers]]\nkind = "math_verify"\n\n[[scorers]]\nkind = "constraints"\n'
    pairs = '[[pairs]]\nstrategy = "margin"\nscorer = "math_verify"\nmin_margin = 0.5\n'
    if reward is not None:
        scorers += (f'\n[[scorers]]\nkind = "reward"\nmodel = "{reward}"\nname = "tiny"\n'
                    "max_model_len = 512\nkv_cache_memory_bytes = 67108864\n")
        pairs += '\n[[pairs]]\nstrategy = "margin"\nscorer = "reward:tiny"\nmin_margin = 0.0\n'
    if reward2 is not None:
        scorers += (f'\n[[scorers]]\nkind = "reward"\nmodel = "{reward2}"\nname = "tiny2"\nengine = "transformers"\n'
                    "max_model_len = 512\n")
    export_line = f'export_path = "{export}"\n' if export else ""
    path.write_text(
        f'name = "test"\n{export_line}\n[[inputs]]\npath = "{prompts}"\nsource = "test"\n\n'
        f'[generator]\nmodel = "{generator}"\nname = "tiny"\nmax_model_len = 512\n'
        "kv_cache_memory_bytes = 67108864\n\n"
        f"[sampling]\nn = {n}\ntemperature = 1.0\nchunk_size = {chunk_size}\n\n"
        "[sampling.max_tokens]\ndefault = 12\n\n" + scorers + "\n" + pairs
    )
    return path
