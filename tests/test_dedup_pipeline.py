"""Dedup and decontamination inside a run: contaminated prompts never reach generation, and a
second night's near-copies of kept pairs are dropped with their reasons."""

from __future__ import annotations

import json

import pytest

from curate.config import parse_config
from curate.ingest.sources import builtin_rows
from curate.pipeline import Pipeline

pytestmark = pytest.mark.slow


def test_contaminated_prompt_is_dropped_before_generation(tmp_path, tiny_generator):
    leaked = builtin_rows("humaneval", limit=1)[0].value["messages"][0]["content"]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": leaked.replace("Return", "Give back"), "task": "chat"},  # a lightly edited benchmark item
        {"prompt": "Name three colours of the rainbow.", "task": "chat"},
    ]) + "\n")
    config = parse_config({
        "inputs": [{"path": str(prompts)}],
        "generator": {"model": str(tiny_generator), "max_model_len": 1024, "kv_cache_memory_bytes": 64 << 20},
        "sampling": {"n": 2, "max_tokens": {"default": 8}},
        "dedup": {"benchmarks": ["humaneval"]},
    }, tmp_path)
    pipeline = Pipeline(config, tmp_path / "data")
    state = pipeline.run_all()
    drops = pipeline.lake.read("dedup_drops")
    stored = pipeline.lake.read("prompts")
    pipeline.close()
    assert state.counts["prompts_contaminated"] == 1 and state.counts["candidates_new"] == 2
    assert drops["reason"].to_list() == ["contamination"] and drops["item_kind"].to_list() == ["prompt"]
    assert drops["kept_id"][0].startswith("benchmark:humaneval")
    assert stored.height == 1 and "rainbow" in stored["messages"][0][0]["content"]
