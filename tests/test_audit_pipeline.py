"""The audit as a build step: a pairwise judge from [audit], verdicts per strategy in the summary,
a card that names a finished run and the snapshot it read (tiny random model, vLLM)."""

from __future__ import annotations

import json

import pytest

from curate.config import load_config
from curate.lake.catalog import Lake
from curate.pipeline import Pipeline
from curate.progress import console, summary_table


@pytest.mark.slow
def test_build_audits_pairs_with_the_configured_pairwise_judge(tmp_path, tiny_generator):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(row) for row in [
        {"prompt": "What is 2 + 3?", "task": "math", "reference_answer": "5",
         "reference_solution": "2 + 3 = 5. The answer is 5."},
        {"prompt": "What is 4 + 4?", "task": "math", "reference_answer": "8",
         "reference_solution": "4 + 4 = 8. The answer is 8."}]) + "\n")
    config = tmp_path / "run.toml"
    config.write_text(
        f'name = "audited"\nexport_path = "export/audited"\n\n[[inputs]]\npath = "{prompts}"\n\n'
        f'[generator]\nmodel = "{tiny_generator}"\nname = "tiny"\nmax_model_len = 512\n'
        "kv_cache_memory_bytes = 67108864\n\n[sampling]\nn = 2\n\n[sampling.max_tokens]\ndefault = 8\n\n"
        '[[scorers]]\nkind = "math_verify"\n\n[[pairs]]\nstrategy = "gt"\nmode = "reference"\ngated_rejected = true\n\n'
        '[audit]\njudge = "generator"\njudge_max_tokens = 4\njudge_reply_prefix = "[["\n')
    pipeline = Pipeline(load_config(config), tmp_path / "data")
    try:
        state = pipeline.run_all()
    finally:
        pipeline.close()
    with Lake(tmp_path / "data" / "lake", read_only=True) as lake:
        pairs = lake.read("pairs")
        audits = lake.read("pair_audits")
        end = lake.snapshot_of_run(state.run_id)
    # per prompt, the reference over a wrong answer of a random model (cut at 8 tokens: gated, so opted in)
    assert pairs.height == 2
    judged = audits.filter(audits["check_name"] == "judge")
    assert sorted(judged["pair_id"]) == sorted(pairs["pair_id"])  # the judge saw every pair, in both orders
    for detail in map(json.loads, judged["detail_json"]):
        assert detail["judge"] == "tiny" and {"chosen_first", "rejected_first"} <= set(detail)
    # at the answer level: the same comparison (no constraints to strip from these prompts), and
    # both sides measured in the generator's tokenizer against its max_model_len
    answer_judged = audits.filter(audits["check_name"] == "answer_judge")
    assert sorted(answer_judged["pair_id"]) == sorted(pairs["pair_id"])
    by_pair = {row["pair_id"]: row["verdict"] for row in judged.iter_rows(named=True)}
    assert all(by_pair[row["pair_id"]] == row["verdict"] for row in answer_judged.iter_rows(named=True))
    context = audits.filter(audits["check_name"] == "answer_context")
    assert sorted(context["pair_id"]) == sorted(pairs["pair_id"])
    for detail in map(json.loads, context["detail_json"]):
        assert detail["max_pair_tokens"] == 512 and 0 < detail["chosen_tokens"] <= 512
    verifier = audits.filter(audits["check_name"] == "verifier")
    assert set(verifier["verdict"]) == {"confirmed"}  # the reference is right, the random answers wrong
    assert state.audit["gt"]["pairs"] == 2 and state.audit["gt"]["confirmed"] + state.audit["gt"]["refuted"] == 2
    with console.capture() as captured:
        console.print(summary_table(state))
    assert "audit: gt" in captured.get()
    card = (tmp_path / "data" / "export" / "audited" / "README.md").read_text()
    lineage = card.split("## Lineage")[1]
    assert f"| {state.run_id} | audited |" in lineage and "| completed |" in lineage
    assert f"Lake snapshot: {end - 1}." in lineage  # read after the run's writes; its final counts come after
    assert "## Audit" in card and "| gt | 2 |" in card
