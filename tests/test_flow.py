"""The Prefect `build` flow end to end on tiny models, in this process (ephemeral Prefect)."""

from __future__ import annotations

import datasets
import pytest

from curate.lake.catalog import Lake
from tests.helpers import BROKEN_LINES, GOOD_ROWS, write_config, write_prompts

pytestmark = pytest.mark.slow


def test_build_flow_end_to_end_then_idempotent(tmp_path, tiny_generator, tiny_reward, tiny_reward2):
    from flows.build import build

    prompts = write_prompts(tmp_path / "prompts.jsonl")
    config = write_config(tmp_path / "run.toml", prompts, tiny_generator, tiny_reward, n=3, reward2=tiny_reward2)
    data = tmp_path / "data"

    first = build(str(config), str(data))
    counts = first["counts"]
    assert counts["prompts_new"] == len(GOOD_ROWS)
    assert counts["rejects_new"] == len(BROKEN_LINES)
    assert counts["candidates_new"] == 3 * len(GOOD_ROWS)
    assert counts["pairs_new"] > 0

    with Lake(data / "lake", read_only=True) as lake:
        tables = {name: lake.count(name) for name in ("prompts", "candidates", "scores", "pairs", "rejects")}
        reasons = lake.query("SELECT location, reason FROM rejects ORDER BY location")
        strategies = lake.query("SELECT DISTINCT strategy, scorer FROM pairs")
        run = lake.query("SELECT status FROM runs")
    assert tables["candidates"] == 3 * len(GOOD_ROWS)
    # the quality gates and two reward models score every candidate; math_verify the math ones;
    # constraints the instruction one
    assert tables["scores"] == 3 * 3 * len(GOOD_ROWS) + 3 * 2 + 3 * 1
    assert reasons.height == len(BROKEN_LINES)
    assert any("invalid JSON" in r for r in reasons["reason"])
    assert any("unknown task" in r for r in reasons["reason"])
    assert "reward:tiny" in strategies["scorer"].to_list()
    assert run["status"].to_list() == ["completed"]

    exported = datasets.load_from_disk(first["export_path"])["train"]
    assert {"prompt", "chosen", "rejected", "pair_id", "strategy", "margin"} <= set(exported.column_names)
    assert exported[0]["chosen"][0]["role"] == "assistant"
    assert len(exported) == tables["pairs"]

    second = build(str(config), str(data))
    assert second["counts"].get("candidates_new", 0) == 0
    assert second["counts"]["candidates_reused"] == 3 * len(GOOD_ROWS)
    assert second["counts"].get("scores_new", 0) == 0
    assert second["counts"]["pairs_new"] == 0
    with Lake(data / "lake", read_only=True) as lake:
        assert {name: lake.count(name) for name in tables} == tables
        assert lake.query("SELECT count(*) AS n FROM runs WHERE status = 'completed'")["n"][0] == 2
