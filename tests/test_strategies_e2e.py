"""Every pair strategy through the pipeline and the lake, on tiny models (no Prefect)."""

from __future__ import annotations

import json

import pytest

from curate.config import parse_config
from curate.pipeline import Pipeline
from curate.score.verify.constraints import check_constraint

pytestmark = pytest.mark.slow


def _prompts(path):
    rows = [{"prompt": f"Add {i} and {i}.", "task": "math", "reference_answer": str(2 * i),
             "reference_solution": f"{i} + {i} = {2 * i}. The answer is {2 * i}."} for i in range(1, 4)]
    rows += [{"prompt": f"Write about topic {i}.", "task": "instruction",
              "constraints": [{"type": "length_constraints:number_words",
                               "kwargs": {"relation": "less than", "num_words": words}},
                              {"type": "punctuation:no_comma", "kwargs": {}}]}
             for i, words in enumerate(range(4, 13))]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_all_strategies_build_pairs_through_the_lake(tmp_path, tiny_generator):
    values = {
        "name": "strategies",
        "inputs": [{"path": str(_prompts(tmp_path / "p.jsonl"))}],
        "generators": [
            {"model": str(tiny_generator), "name": "teacher", "max_model_len": 512,
             "kv_cache_memory_bytes": 64 << 20, "temperature": 0.7},
            {"model": str(tiny_generator), "name": "student", "max_model_len": 512,
             "kv_cache_memory_bytes": 64 << 20, "temperature": 1.5, "tasks": ["math"], "n": 2},
        ],
        "sampling": {"n": 4, "max_tokens": {"default": 12}},
        "scorers": [{"kind": "math_verify"}, {"kind": "constraints"},
                    {"kind": "logprob", "model": "teacher", "name": "policy"},
                    {"kind": "logprob", "model": "student", "name": "ref"}],
        "pairs": [
            {"strategy": "margin", "scorer": "constraints", "min_margin": 0.1,
             "implicit_margin": {"policy": "logprob:policy", "reference": "logprob:ref", "beta": 0.1},
             "keep_top_fraction": 0.5, "madpo": {"scale": 1.0}},
            {"strategy": "reversal"},
            {"strategy": "gt", "mode": "reference"},
            {"strategy": "gt", "mode": "teacher_student", "teacher": "teacher", "student": "student",
             "pairs_per_prompt": 2},
        ],
    }
    pipeline = Pipeline(parse_config(values, tmp_path), tmp_path / "data")
    state = pipeline.run_all()
    pairs = pipeline.lake.read("pairs")
    pipeline.close()

    counts = dict(pairs.group_by("strategy").len().iter_rows())
    assert counts.get("reversal", 0) >= 1 and counts.get("margin", 0) >= 1
    assert (pairs["chosen"] != pairs["rejected"]).all() and (pairs["chosen_id"] != pairs["rejected_id"]).all()
    reference = pairs.filter(pairs["chosen_id"] == "reference")
    assert reference.height == 3  # one per math prompt: the tiny model never gets the sum right
    assert all("The answer is" in text for text in reference["chosen"])
    assert state.counts["candidates_new"] == 12 * 4 + 3 * 2

    for row in pairs.filter(pairs["strategy"] == "reversal").iter_rows(named=True):
        rewritten = json.loads(row["details_json"])["rewritten_constraints"]
        assert all(check_constraint(row["chosen"], c) for c in rewritten)
        assert not all(check_constraint(row["rejected"], c) for c in rewritten)
    margin = pairs.filter(pairs["strategy"] == "margin")
    assert margin["weight"].null_count() == 0
    assert all("implicit_margin" in json.loads(d) for d in margin["details_json"])
    # Up to 2 per math prompt; a random model at two temperatures with the same per-sample seed
    # sometimes samples the same text, and identical texts never pair.
    teacher_student = pairs.filter(pairs["reason"].str.contains("teacher"))
    assert 1 <= teacher_student.height <= 6
    assert all(m.startswith("teacher@") for m in teacher_student["details_json"].str.json_path_match("$.teacher_model"))
