"""Strategies that drive generation (stepwise, short-to-long, code evolution) through the
pipeline and the lake on a tiny model: derived prompts, their candidates, pairs, and a second
run that adds nothing."""

from __future__ import annotations

import json
import subprocess

import polars as pl
import pytest
import toml

from curate.config import parse_config
from curate.lake.catalog import Lake
from curate.pairs.derive import derived_info
from curate.pairs.stepwise import split_steps
from curate.pipeline import Pipeline
from curate.score.verify.arithmetic import first_false

pytestmark = pytest.mark.slow


def _git_repo(path):
    path.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(path), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    source = path / "tool.py"
    source.write_text("def area(w, h):\n    return w * h\n")
    git("add", ".")
    git("commit", "-qm", "Add the area helper")
    source.write_text("def area(w, h):\n    if w < 0 or h < 0:\n        raise ValueError('negative')\n    return w * h\n")
    git("commit", "-qam", "Reject negative sides in area")
    source.write_text("def area(width, height):\n    if width < 0 or height < 0:\n        raise ValueError('negative')\n"
                      "    return width * height\n")
    git("commit", "-qam", "Rename area parameters to full words")
    return path


def _config(tmp_path, tiny_generator, repo):
    prompts = tmp_path / "math.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"What is {i} + {i}? Think step by step.", "task": "math",
                                             "reference_answer": str(2 * i)}) for i in range(1, 4)) + "\n")
    values = {
        "name": "derived",
        "inputs": [{"path": str(prompts)}, {"builtin": "stdlib_docs", "limit": 2},
                   {"builtin": "humaneval", "limit": 2}],
        "generator": {"model": str(tiny_generator), "max_model_len": 1024, "kv_cache_memory_bytes": 64 << 20},
        "sampling": {"n": 4, "max_tokens": {"default": 48}},
        "scorers": [{"kind": "math_verify"}, {"kind": "code_tests"}],
        "pairs": [
            {"strategy": "stepwise", "rollouts": 2, "max_steps": 2, "rollout_max_tokens": 24},
            {"strategy": "short_to_long", "n": 2, "chunk_words": 80, "max_tokens": 24, "questions": "both",
             "question_max_tokens": 16},
            {"strategy": "code_evolution", "mode": "commits", "repo": str(repo)},
            {"strategy": "code_evolution", "mode": "critiques", "max_tokens": 24},
        ],
    }
    path = tmp_path / "run.toml"
    path.write_text(toml.dumps(values))
    parse_config(values, tmp_path)  # the same config, checked
    return path


def _counts(lake):
    return {t: lake.count(t) for t in ("prompts", "candidates", "scores", "pairs")}


def test_derived_generation_through_the_flow_and_lake(tmp_path, tiny_generator):
    from flows.build import build

    config = _config(tmp_path, tiny_generator, _git_repo(tmp_path / "repo"))
    build(str(config), str(tmp_path / "data"))
    with Lake(tmp_path / "data" / "lake", read_only=True) as lake:
        prompts, candidates = lake.read("prompts"), lake.read("candidates")
        scores, pairs = lake.read("scores"), lake.read("pairs")
        runs = lake.read("runs")
        before = _counts(lake)
    info = derived_info(prompts)
    by_strategy = dict(info.group_by("strategy").len().iter_rows())

    # stepwise: one wrong multi-step solution per math prompt at most, prefixes 1..min(steps-1, 2)
    math = prompts.filter((pl.col("task") == "math") & ~pl.col("source").str.starts_with("derived:"))
    scored = (candidates.join(scores.filter((pl.col("scorer") == "math_verify") & (pl.col("status") == "ok")),
                              on="candidate_id")
              .filter(pl.col("prompt_id").is_in(math["prompt_id"].to_list())).sort("candidate_id"))
    expected = 0
    for prompt_id in math["prompt_id"]:
        verdicts = scored.filter(pl.col("prompt_id") == prompt_id).select("text", "score").rows()
        # wrong answers first, then right answers reached through a false equation
        wrong = [t for t, s in verdicts if s == 0] + [t for t, s in verdicts if s >= 1 and first_false(t)]
        multi = [t for t in wrong if len(split_steps(t)) >= 2]
        expected += min(len(split_steps(multi[0])) - 1, 2) if multi else 0
    assert by_strategy.get("stepwise", 0) == expected
    rollouts = candidates.join(info.filter(pl.col("strategy") == "stepwise"), on="prompt_id")
    assert rollouts.height == 2 * expected
    # short-to-long: 2 question prompts per document (2 samples each, every one judged by the
    # question filter), a retrieved prompt per given question, and 2 answer prompts per kept question
    kinds = [json.loads(n)["kind"] for n in info.filter(pl.col("strategy") == "short_to_long")["note"]]
    counts = json.loads(runs["counts_json"][0])
    judged = {k: v for k, v in counts.items() if k.startswith("derive_short_to_long_questions_")}
    assert kinds.count("question") == 4 and kinds.count("retrieved") == 2 and sum(judged.values()) == 8
    assert kinds.count("short") == kinds.count("long") == judged.get("derive_short_to_long_questions_ok", 0)
    assert by_strategy["code_evolution"] >= 2

    strategies = dict(pairs.group_by("strategy").len().iter_rows())
    commits = pairs.filter(pl.col("chosen_id").str.starts_with("commit:"))
    assert commits.height == 2  # the two edits; the first commit adds the file
    assert {json.loads(d)["commit"] is not None for d in commits["details_json"]} == {True}
    assert strategies.get("short_to_long", 0) >= 1
    long_pairs = pairs.filter(pl.col("strategy") == "short_to_long")
    assert all(len(p[0]["content"]) > 400 for p in long_pairs["prompt"])  # the pair's prompt is the long one

    second = build(str(config), str(tmp_path / "data"))
    assert second["counts"].get("candidates_new", 0) == 0 and second["counts"].get("derived_prompts_new", 0) == 0
    with Lake(tmp_path / "data" / "lake", read_only=True) as lake:
        assert _counts(lake) == before


def test_stepwise_rollouts_continue_the_forced_prefix(tmp_path, scripted_model):
    # A scripted model that always writes a two-step solution ("Answer:" opens every reply, so the
    # reply itself may contain a newline). Its answer, 7, is wrong for 1 + 1.
    model = scripted_model("First add\nThen answer 7", after=":", reply_opening="Answer:")
    prompts = tmp_path / "math.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 1 + 1?", "task": "math", "reference_answer": "2"}) + "\n")
    config = parse_config({
        "inputs": [{"path": str(prompts)}],
        "generator": {"model": str(model), "max_model_len": 512, "kv_cache_memory_bytes": 64 << 20},
        "sampling": {"n": 2, "max_tokens": {"default": 16}},
        "scorers": [{"kind": "math_verify"}],
        "pairs": [{"strategy": "stepwise", "rollouts": 3, "max_steps": 2}],
    }, tmp_path)
    pipeline = Pipeline(config, tmp_path / "data")
    pipeline.run_all()
    info = derived_info(pipeline.lake.read("prompts"))
    candidates = pipeline.lake.read("candidates")
    scores = pipeline.lake.read("scores")
    pipeline.close()

    assert info["strategy"].to_list() == ["stepwise"]  # one prefix: "First add\n"
    assert json.loads(info["generation"][0])["assistant_prefix"] == "First add\n"
    rollouts = candidates.join(info, on="prompt_id")
    # The reply is forced to start with the prefix; the candidate holds only the continuation.
    assert rollouts.height == 3 and set(rollouts["text"]) == {"Then answer 7"}
    rollout_scores = scores.join(rollouts.select("candidate_id"), on="candidate_id")
    rollout_scores = rollout_scores.filter(pl.col("scorer") == "math_verify")  # quality rows are there too
    assert rollout_scores["score"].to_list() == [0.0, 0.0, 0.0]  # scored by math_verify like any math answer
