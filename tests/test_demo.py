"""The demo's config on the embedded SmolLM2-135M-Instruct, at a third of its budgets or less: runs every
stage through `curate run`, exports pairs that hold (no tie, no gated chosen, every pair audited),
and a second run adds nothing.

The full demo (`curate run --demo`) takes about 13 CPU-minutes here, more than the suite's whole
budget; its figures are in the README ("The demo"). This test keeps the demo's inputs, generators,
scorers and strategies and cuts prompt counts and token budgets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import datasets
import pytest
import toml

from curate.config import DEMO_CONFIG, load_config
from curate.lake.catalog import Lake

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
FILE_PROMPTS = {"math.jsonl": 5, "instruction.jsonl": 3, "chat.jsonl": 1}
BUILTIN_LIMITS = {"ifeval": 2, "humaneval": 1, "stdlib_docs": 1}


def _small_demo(tmp: Path) -> Path:
    """The demo config with fewer prompts and tokens; everything else as the demo has it."""
    config = tomllib.loads(DEMO_CONFIG.read_text())
    for entry in config["inputs"]:
        if "path" in entry:
            lines = (DEMO_CONFIG.parent / entry["path"]).read_text().splitlines()[:FILE_PROMPTS[entry["path"]]]
            (tmp / entry["path"]).write_text("\n".join(lines) + "\n")
        else:
            entry["limit"] = BUILTIN_LIMITS[entry["builtin"]]
    config["sampling"]["max_tokens"] = {"default": 160, "instruction": 128, "math": 96}
    for spec in config["pairs"]:
        if spec["strategy"] == "code_evolution":
            spec.update(max_commits=3, repo=str(ROOT)) if spec["mode"] == "commits" else spec.update(max_tokens=160)
        if spec["strategy"] == "stepwise":
            spec["rollout_max_tokens"] = 96
        if spec["strategy"] == "short_to_long":
            spec.update(n=1, max_tokens=160)  # each long answer prefills the whole document
    path = tmp / "demo.toml"
    path.write_text(toml.dumps(config))
    return path


def _run(config: Path, data: Path, *extra: str) -> str:
    env = {**os.environ, "CURATE_MODELS_DIR": str(ROOT / "data" / "models")}  # convert once, reuse
    result = subprocess.run([sys.executable, "-m", "curate.cli.main", "run", str(config), "--data-dir", str(data),
                             *extra], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_demo_config_is_what_curate_run_demo_runs():
    config = load_config(DEMO_CONFIG)
    assert {p.strategy for p in config.pairs} == {"margin", "reversal", "gt", "stepwise", "short_to_long",
                                                      "code_evolution"}
    assert [g.name for g in config.generators] == ["smollm2", "smollm2-hot"]


def test_demo_config_runs_end_to_end_and_second_run_adds_nothing(tmp_path):
    data = tmp_path / "data"
    config = _small_demo(tmp_path)
    samples = sum(FILE_PROMPTS.values()) + sum(BUILTIN_LIMITS.values())
    first = _run(config, data)
    assert f"{samples * 4} to generate" in first and "audit: " in first
    with Lake(data / "lake", read_only=True) as lake:
        counts = {t: lake.count(t) for t in ("prompts", "candidates", "scores", "pairs", "dedup_drops")}
        original = lake.query("SELECT count(*) AS n FROM prompts WHERE source NOT LIKE 'derived:%'")["n"][0]
        derived = dict(lake.query("SELECT source, count(*) FROM prompts WHERE source LIKE 'derived:%' "
                                  "GROUP BY 1").iter_rows())
        strategies = set(lake.query("SELECT DISTINCT strategy FROM pairs")["strategy"])
        scorers = set(lake.query("SELECT DISTINCT scorer FROM scores")["scorer"])
        audit = lake.query("SELECT * FROM pair_audit_summary").to_dicts()
        # the claim of every pair: no tie, and no chosen (nor, by default, rejected) the quality gates stopped
        ties = lake.query("SELECT count(*) AS n FROM pairs WHERE chosen_score <= rejected_score")["n"][0]
        gated = {side: lake.query(f"SELECT count(*) AS n FROM pairs p JOIN scores s ON s.candidate_id = p.{side}_id "
                                  "WHERE s.scorer = 'quality' AND s.score < 1")["n"][0] for side in ("chosen", "rejected")}
        answers = dict(lake.query("SELECT pair_id, answer_verdict FROM pair_audit_verdicts").iter_rows())
        too_long = lake.query("SELECT count(*) AS n FROM pair_audits WHERE check_name = 'answer_context' "
                              "AND verdict = 'refuted'")["n"][0]
        reversal_prompts = lake.query("SELECT p.prompt, pr.messages FROM pairs p JOIN prompts pr USING (prompt_id) "
                                      "WHERE p.strategy = 'reversal'").rows()
    assert original == samples
    assert derived.get("derived:stepwise", 0) > 0 and derived.get("derived:short_to_long", 0) > 0
    assert derived.get("derived:code_evolution", 0) > 0
    assert scorers == {"quality", "math_verify", "constraints", "code_tests", "judge:smollm2"}
    assert {"gt", "code_evolution"} <= strategies, strategies
    assert ties == 0 and gated == {"chosen": 0, "rejected": 0}
    exported = datasets.load_from_disk(str(data / "export" / "demo"))["train"]
    assert sum(row["unaudited"] for row in audit) == 0  # the build audited every pair
    # the demo exports only pairs with answer-level evidence (export_require = ["answer"])
    confirmed = {pair_id for pair_id, verdict in answers.items() if verdict == "confirmed"}
    assert confirmed and set(exported["pair_id"]) == confirmed
    assert too_long == 0  # commit pairs hold the edited region, not whole files
    for rewritten, original in reversal_prompts:  # the rewritten constraints instead of the original ones
        assert original[-1]["content"] not in rewritten[-1]["content"]
    assert {"prompt", "chosen", "rejected", "weight", "details_json"} <= set(exported.column_names)

    second = _run(config, data, "--no-prefect")  # the same steps; the first run went through the flow
    assert f"{samples * 4} already in the lake, 0 to generate" in second
    with Lake(data / "lake", read_only=True) as lake:
        assert {t: lake.count(t) for t in counts} == counts
        for table, key in (("prompts", "prompt_id"), ("candidates", "candidate_id"), ("scores", "score_id"),
                           ("pairs", "pair_id"), ("dedup_drops", "drop_id")):
            assert lake.query(f"SELECT count(DISTINCT {key}) = count(*) AS ok FROM {table}")["ok"][0]
