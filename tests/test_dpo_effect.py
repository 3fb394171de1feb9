"""bench/dpo_effect.py's parts that decide what its table means, without a model: the training
prompts (decontaminated, valid constraints), the evaluator (the wheel's IFEval code, not curate's)
and the paired bootstrap."""

from __future__ import annotations

import json

from bench import dpo_effect
from curate.score.verify.constraints import constraint_errors, describe_constraint


def test_decontamination_drops_planted_ifeval_prompts_and_keeps_alpacaeval():
    instructions = ["Write a short poem about the sea and the sky at dawn, please.",
                    "Explain how a bicycle's gears make climbing a hill easier."]
    kept, summary = dpo_effect.decontaminate(instructions, planted=10)
    assert kept == instructions
    assert summary["control_planted"] == 10 and summary["control_dropped"] == 10
    assert summary["control_false_drops"] == 0


def test_training_prompts_carry_valid_constraints_written_as_ifeval_writes_them(tmp_path):
    rows = [json.loads(line) for line in
            dpo_effect.build_prompts(tmp_path, 40, seed=0).read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40
    ifeval_prompts = {r["prompt"] for r in dpo_effect.ifeval_rows()}
    for row in rows:
        assert row["task"] == "instruction" and 1 <= len(row["constraints"]) <= 2
        assert not constraint_errors(row["constraints"])
        types = {c["type"] for c in row["constraints"]}
        assert not any(pair <= types for pair in dpo_effect.CONFLICTS)
        assert row["prompt"] == row["base_prompt"] + "\n\n" + " ".join(
            describe_constraint(c) for c in row["constraints"])
        assert row["base_prompt"] not in ifeval_prompts
    assert json.loads((tmp_path / "decontamination.json").read_text())["control_dropped"] == 20


def _answers(tmp_path, responses: dict[int, str]):
    path = tmp_path / "answers.jsonl"
    by_key = {r["key"]: r for r in dpo_effect.ifeval_rows()}
    path.write_text("".join(json.dumps({"key": k, "prompt": by_key[k]["prompt"], "response": v}) + "\n"
                            for k, v in responses.items()), encoding="utf-8")
    return path


def test_the_wheels_ifeval_checkers_give_the_verdicts():
    # IFEval 1001: no commas; 1019: all lowercase
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        good = dpo_effect.score(_answers(Path(tmp), {1001: "Day one Tokyo. Day two Kyoto.",
                                                     1019: "what are the boys holding?"}))
        bad = dpo_effect.score(_answers(Path(tmp), {1001: "Day one, Tokyo. Day two, Kyoto.",
                                                    1019: "What are the boys holding?"}))
    assert good == [[True], [True]] and bad == [[False], [False]]
    assert "curate" not in dpo_effect.wheel_ifeval().__name__


def test_paired_bootstrap_intervals():
    base = [[False, True], [False], [True], [False, False]] * 25
    same = dpo_effect.paired_bootstrap(base, base)
    assert same == ((0.0, 0.0), (0.0, 0.0))
    better = [[True] * len(v) for v in base]
    (prompt_low, _), (instruction_low, _) = dpo_effect.paired_bootstrap(better, base)
    assert prompt_low > 0 and instruction_low > 0
    assert dpo_effect.accuracy(better, range(len(better))) == (1.0, 1.0)
