"""The pairing rule (curate/pairs/rule.py) in every strategy and mode it owns: tied, unscored,
failed-score and gated candidates never form a pair; where the task has a verifier, a rejected
generation is one it scored ok, strictly below the chosen. Hand-built tables, real schemas."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate import ids
from curate.lake import schemas
from curate.pairs import rule
from curate.pairs.derive import DerivedPrompt, derived_prompt_rows
from curate.pairs.registry import build_pairs

NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)
GOOD = "Tom has 3 apples and buys 2 more, so he has 3 + 2 = 5 apples. The answer is 5."
OTHER = "Tom starts with 3 apples. Buying 2 gives 3 - 2 = 1 apple. The answer is 1."
CUT = "Tom has 3 apples and buys 2 more, so"  # stopped at max_tokens: gated


def prompts_frame(rows):
    return pl.from_arrow(schemas.conform("prompts", [
        {"prompt_id": r["prompt_id"], "source": r.get("source", "s"), "task": r.get("task", "math"),
         "messages": [{"role": "user", "content": r.get("content", f"question {r['prompt_id']}")}],
         "reference_answer": r.get("reference_answer", "5"), "reference_solution": r.get("reference_solution"),
         "constraints_json": json.dumps(r["constraints"]) if r.get("constraints") else None,
         "task_fields_json": json.dumps(r["fields"]) if r.get("fields") else None,
         "run_id": "r0", "created_at": NOW} for r in rows]))


def candidates_frame(rows):
    """rows: dicts with candidate_id, prompt_id, text; optional model, sample_index, finish_reason."""
    return pl.from_arrow(schemas.conform("candidates", [
        {"candidate_id": r["candidate_id"], "prompt_id": r["prompt_id"], "model": r.get("model", "gen@fp"),
         "sampling_json": "{}", "sample_index": r.get("sample_index", i), "seed": i, "text": r["text"],
         "finish_reason": r.get("finish_reason", "stop"), "cumulative_logprob": r.get("cumulative_logprob"),
         "completion_tokens": r.get("completion_tokens"), "run_id": "r0", "created_at": NOW}
        for i, r in enumerate(rows)]))


def scores_frame(rows):
    """rows: (candidate_id, prompt_id, scorer, score[, status[, detail]])."""
    out = []
    for row in rows:
        cid, pid, scorer, score, status, detail = (*row, "ok", None)[:6] if len(row) == 4 else (*row, None)[:6]
        out.append({"score_id": ids.score_id(cid, scorer, "1"), "candidate_id": cid, "prompt_id": pid,
                    "scorer": scorer, "scorer_version": "1", "score": score if status == "ok" else None,
                    "status": status, "detail_json": json.dumps(detail) if detail else None,
                    "run_id": "r0", "created_at": NOW})
    return pl.from_arrow(schemas.conform("scores", out))


# Each case: how chosen "a" and rejected "b" are scored; "control" must pair, the others never.
# gated_stored: a's stored quality score is 0; gated_length: a stopped at max_tokens, no quality row.
CASES = ("control", "tie", "unscored", "failed", "gated_stored", "gated_length")


def _side_rows(case: str, scorer: str, pid: str, hi: float, lo: float) -> list[tuple]:
    rows = [("a", pid, scorer, hi)]
    if case == "tie":
        rows.append(("b", pid, scorer, hi))
    elif case == "failed":
        rows.append(("b", pid, scorer, None, "error", {"error": "timeout"}))
    elif case != "unscored":
        rows.append(("b", pid, scorer, lo))
    if case == "gated_stored":
        rows.append(("a", pid, "quality", 0.0, "ok", {"gates": [{"gate": "dup_line_fraction"}]}))
    return rows


def _candidate_rows(case: str, pid: str, **extra) -> list[dict]:
    a = {"candidate_id": "a", "prompt_id": pid, "text": GOOD, **extra.get("a", {})}
    b = {"candidate_id": "b", "prompt_id": pid, "text": OTHER, **extra.get("b", {})}
    if case == "gated_length":
        a.update(text=CUT, finish_reason="length")
    return [a, b]


def margin_inputs(case: str, config: dict):
    prompts = prompts_frame([{"prompt_id": "p1"}])
    rows = _side_rows(case, "math_verify", "p1", 1.0, 0.0)
    if config.get("implicit_margin"):  # log-probs of both sides for the dual margin
        rows += [(c, "p1", s, v) for c in "ab" for s, v in (("logprob:pol", -1.0), ("logprob:ref", -2.0))]
    return prompts, candidates_frame(_candidate_rows(case, "p1")), scores_frame(rows)


MARGIN_MODES = {
    "best_vs_worst": {},
    "best_vs_random": {"pairing": "best_vs_random"},
    "all_pairs": {"pairing": "all_pairs_above_margin"},
    "closest": {"length_control": "closest"},
    "random_closest": {"pairing": "best_vs_random", "length_control": "closest"},
    "z": {"normalise": "z"},
    "length_penalty": {"length_penalty": 0.01},
    "required_verifier": {"required_verifier": "math_verify"},
    "dual": {"implicit_margin": {"policy": "logprob:pol", "reference": "logprob:ref"}},
    "madpo": {"madpo": {"scale": 1.0}, "keep_top_fraction": 1.0},
    "no_gated_rejected": {"gated_rejected": False},
}


def assert_rule(pairs: pl.DataFrame, case: str) -> None:
    if case == "control":
        assert pairs.height >= 1 and set(pairs["chosen_id"]) == {"a"}
        assert (pairs["chosen_score"] > pairs["rejected_score"]).all()
    else:
        assert pairs.height == 0, pairs.select("chosen_id", "rejected_id", "chosen_score", "rejected_score")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", MARGIN_MODES)
def test_margin_every_mode(mode, case):
    config = MARGIN_MODES[mode]
    if mode == "z" and case == "unscored":
        pytest.skip("one scored candidate has no z-score: covered by best_vs_worst")
    pairs = build_pairs("margin", *margin_inputs(case, config), config, run_id="r")
    assert_rule(pairs, case)


@pytest.mark.parametrize("case", ["tie", "unscored", "failed"])
def test_margin_on_a_reward_needs_the_verifier_to_score_the_rejected_ok_and_lower(case):
    """The reward prefers a; the math prompt's verifier ties, lacks, or failed on the rejected."""
    prompts = prompts_frame([{"prompt_id": "p1"}])
    candidates = candidates_frame(_candidate_rows("control", "p1"))
    rows = [("a", "p1", "reward:rm", 3.0), ("b", "p1", "reward:rm", 1.0)] + _side_rows(case, "math_verify",
                                                                                      "p1", 1.0, 0.0)
    assert build_pairs("margin", prompts, candidates, scores_frame(rows), {"scorer": "reward:rm"}, "r").height == 0
    agreeing = [("a", "p1", "reward:rm", 3.0), ("b", "p1", "reward:rm", 1.0),
                ("a", "p1", "math_verify", 1.0), ("b", "p1", "math_verify", 0.0)]
    assert build_pairs("margin", prompts, candidates, scores_frame(agreeing), {"scorer": "reward:rm"}, "r").height == 1


def test_margin_gated_rejected_option():
    """A gated candidate is too easy a rejected by default; gated_rejected = true opts in."""
    prompts = prompts_frame([{"prompt_id": "p1"}])
    candidates = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": GOOD},
                                   {"candidate_id": "b", "prompt_id": "p1", "text": CUT, "finish_reason": "length"}])
    scores = scores_frame([("a", "p1", "math_verify", 1.0), ("b", "p1", "math_verify", 0.0)])
    assert build_pairs("margin", prompts, candidates, scores, {"gated_rejected": True}, "r")["rejected_id"].to_list() \
        == ["b"]
    assert build_pairs("margin", prompts, candidates, scores, {}, "r").height == 0


# gt -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["control", "tie", "unscored", "failed"])
def test_gt_reference(case):
    prompts = prompts_frame([{"prompt_id": "p1", "reference_solution": "3 + 2 = 5. The answer is 5."}])
    candidates = candidates_frame(_candidate_rows("control", "p1"))
    # b is the would-be rejected; a tie is b scoring 1.0 like the reference (kept by keep_correct)
    rows = {"control": [("b", "p1", "math_verify", 0.0)], "tie": [("b", "p1", "math_verify", 1.0)],
            "unscored": [], "failed": [("b", "p1", "math_verify", None, "error", {"error": "timeout"})]}[case]
    rows.append(("a", "p1", "math_verify", 1.0))
    pairs = build_pairs("gt", prompts, candidates, scores_frame(rows),
                        {"keep_correct": True, "max_pairs_per_prompt": 5}, "r")
    assert pairs["rejected_id"].to_list() == (["b"] if case == "control" else [])


@pytest.mark.parametrize("gated_rejected", [True, False])
def test_gt_reference_gated_rejected_option(gated_rejected):
    prompts = prompts_frame([{"prompt_id": "p1", "reference_solution": "3 + 2 = 5. The answer is 5."}])
    candidates = candidates_frame([{"candidate_id": "b", "prompt_id": "p1", "text": CUT, "finish_reason": "length"}])
    scores = scores_frame([("b", "p1", "math_verify", 0.0)])
    pairs = build_pairs("gt", prompts, candidates, scores, {"gated_rejected": gated_rejected}, "r")
    assert pairs.height == (1 if gated_rejected else 0)


TS = {"mode": "teacher_student", "teacher": "big", "student": "small"}


@pytest.mark.parametrize("agree", [None, "math_verify", "reward:rm"])
@pytest.mark.parametrize("case", CASES)
def test_gt_teacher_student(case, agree):
    prompts = prompts_frame([{"prompt_id": "p1"}])
    candidates = candidates_frame(_candidate_rows(case, "p1", a={"model": "big@1", "sample_index": 0},
                                                  b={"model": "small@2", "sample_index": 0}))
    rows = _side_rows(case, agree or "math_verify", "p1", 1.0, 0.0)
    if agree == "reward:rm":  # the task's verifier agrees throughout: the reward's case decides
        rows += [("a", "p1", "math_verify", 1.0), ("b", "p1", "math_verify", 0.0)]
    config = {**TS, **({"agree_scorer": agree} if agree else {})}
    assert_rule(build_pairs("gt", prompts, candidates, scores_frame(rows), config, "r"), case)


def test_gt_teacher_student_on_a_reward_needs_the_verifier():
    """The reward prefers the teacher; the math verifier ties (0 vs 0, the demo's 27 ties): no pair."""
    prompts = prompts_frame([{"prompt_id": "p1"}])
    candidates = candidates_frame(_candidate_rows("control", "p1", a={"model": "big", "sample_index": 0},
                                                  b={"model": "small", "sample_index": 0}))
    scores = scores_frame([("a", "p1", "reward:rm", 2.0), ("b", "p1", "reward:rm", 1.0),
                           ("a", "p1", "math_verify", 0.0), ("b", "p1", "math_verify", 0.0)])
    assert build_pairs("gt", prompts, candidates, scores, {**TS, "agree_scorer": "reward:rm"}, "r").height == 0


# reversal -------------------------------------------------------------------------------------
NO_COMMA = [{"type": "punctuation:no_comma", "kwargs": {}}]
FOLLOWS = "The sea is calm tonight and the moon is bright above the water"
FAILS = "The sea is calm tonight, and the moon is bright above the water"


def reversal_inputs(case: str):
    # a follows no_comma but not the keyword, which is reversed: the rejected must fail no_comma
    lighthouse = {"type": "keywords:existence", "kwargs": {"keywords": ["lighthouse"]}}
    prompts = prompts_frame([{"prompt_id": "p1", "task": "instruction", "constraints": [*NO_COMMA, lighthouse],
                              "content": "Describe the sea without commas. Mention a lighthouse.",
                              "fields": {"base_prompt": "Describe the sea."}}])
    texts = {"a": FOLLOWS, "b": FAILS if case != "tie" else FOLLOWS + " tonight"}
    rows = [{"candidate_id": c, "prompt_id": "p1", "text": t} for c, t in texts.items()]
    if case == "gated_length":
        rows[0]["finish_reason"] = "length"
    b_score = 1.0 if case == "tie" else 0.0
    scores = [("a", "p1", "constraints", 1.0)]
    if case == "failed":
        scores.append(("b", "p1", "constraints", None, "error", {"error": "checker crashed"}))
    elif case != "unscored":
        scores.append(("b", "p1", "constraints", b_score))
    if case == "gated_stored":
        scores.append(("a", "p1", "quality", 0.0, "ok", {"gates": [{"gate": "dup_line_fraction"}]}))
    return prompts, candidates_frame(rows), scores_frame(scores)


@pytest.mark.parametrize("case", CASES)
def test_reversal(case):
    pairs = build_pairs("reversal", *reversal_inputs(case), {}, "r")
    if case == "control":
        assert (pairs["chosen_id"].to_list(), pairs["rejected_id"].to_list()) == (["a"], ["b"])
    elif case.startswith("gated"):
        # a may not be chosen; b, made perfect by reversing no_comma, may beat a (which now fails)
        assert "a" not in pairs["chosen_id"].to_list()
    else:
        assert pairs.height == 0


# code evolution -------------------------------------------------------------------------------
TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"


def critique_inputs(case: str):
    """Original "b" (fails a test) critiqued; revision "a" (passes both) on the critique prompt."""
    parent = {"prompt_id": "p1", "task": "code", "fields": {"tests": TESTS, "entry_point": "add"},
              "content": "Write add(a, b)."}
    derived = DerivedPrompt(parent_prompt_id="p1", task="code", messages=[{"role": "user", "content": "critique"}],
                            fields={"tests": TESTS, "entry_point": "add"}, generation={"n": 1},
                            note={"candidate_id": "b"})
    rows = derived_prompt_rows([derived], "code_evolution", "r0")
    prompts = pl.concat([prompts_frame([parent]), pl.from_arrow(rows)])
    critique_id = rows["prompt_id"][0].as_py()
    revision = "```python\ndef add(a, b):\n    return a + b\n```"
    a = {"candidate_id": "a", "prompt_id": critique_id, "text": revision}
    if case == "gated_length":
        a["finish_reason"] = "length"
    b = {"candidate_id": "b", "prompt_id": "p1", "text": "```python\ndef add(a, b):\n    return a - b\n```"}
    detail = lambda passed: {"tests_passed": passed, "tests_total": 2, "duration_s": 0.1}  # noqa: E731
    scores = [("a", critique_id, "code_tests", 1.0, "ok", detail(2))]
    if case == "tie":
        scores.append(("b", "p1", "code_tests", 1.0, "ok", detail(2)))
    elif case == "failed":
        scores.append(("b", "p1", "code_tests", None, "error", {"error": "sandbox"}))
    elif case != "unscored":
        scores.append(("b", "p1", "code_tests", 0.5, "ok", detail(1)))
    if case == "gated_stored":
        scores.append(("a", critique_id, "quality", 0.0, "ok", {"gates": [{"gate": "repeated_substring"}]}))
    return prompts, candidates_frame([a, b]), scores_frame(scores)


@pytest.mark.parametrize("case", CASES)
def test_code_critiques(case):
    pairs = build_pairs("code_evolution", *critique_inputs(case), {"mode": "critiques"}, "r")
    assert_rule(pairs, case)


def test_code_commits_never_pair_identical_files(tmp_path):
    fields = lambda after: {"before": "x = 1\n", "after": after, "message": "change x"}  # noqa: E731
    prompts = prompts_frame([{"prompt_id": "e1", "task": "code_edit", "fields": fields("x = 2\n")},
                             {"prompt_id": "e2", "task": "code_edit", "fields": fields("x = 1\n")}])
    pairs = build_pairs("code_evolution", prompts, candidates_frame([]), scores_frame([]),
                        {"mode": "commits", "repo": str(tmp_path)}, "r")
    assert pairs["prompt_id"].to_list() == ["e1"]


# the rule itself ------------------------------------------------------------------------------

def test_enforce_counts_refusals_by_reason():
    prompts = prompts_frame([{"prompt_id": "p1"}])
    candidates = candidates_frame(_candidate_rows("gated_length", "p1"))
    scores = scores_frame([("a", "p1", "math_verify", 1.0), ("b", "p1", "math_verify", 0.0)])
    facts = rule.candidate_facts(prompts, candidates, scores)
    assert facts.filter(pl.col("candidate_id") == "a")["gated"].item() is True  # computed: no quality row
    picks = pl.DataFrame({"chosen_id": ["a", "b", "b"], "rejected_id": ["b", "a", "b"],
                          "chosen": [CUT, OTHER, OTHER], "rejected": [OTHER, CUT, OTHER],
                          "chosen_score": [1.0, 0.0, 0.0], "rejected_score": [0.0, 1.0, 0.0]})
    with rule.counting() as refused:
        kept = rule.enforce(picks, facts)
    assert kept.height == 0
    assert refused == {"gated_chosen": 1, "tie": 1, "identical": 1}


def test_side_models_name_every_side():
    """Every pair side has a model label, including sides that are no candidate row."""
    from curate.pairs.rows import side_models

    pairs = pl.DataFrame({"pair_id": ["1", "2", "3", "4"],
                          "chosen_id": ["reference", "commit:ab12:after", "a", "b"],
                          "rejected_id": ["a", "commit:ab12:before", "b#step2", "code_edit:p9:before"]})
    candidates = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": GOOD, "model": "smollm2@f"},
                                   {"candidate_id": "b", "prompt_id": "p1", "text": OTHER, "model": "hot@f"}])
    models = side_models(pairs, candidates).sort("pair_id")
    assert models["chosen_model"].to_list() == ["reference", "git commit", "smollm2@f", "hot@f"]
    assert models["rejected_model"].to_list() == ["smollm2@f", "git commit", "hot@f", "code edit"]


def test_quality_needs_no_scorers_entry(tmp_path):
    from curate.config import parse_config
    from curate.errors import UserError

    with pytest.raises(UserError, match="quality scorer always runs"):
        parse_config({"inputs": [{"builtin": "ifeval", "limit": 1}], "scorers": [{"kind": "quality"}]}, tmp_path)


# format ---------------------------------------------------------------------------------------
ASKS_LINE = ("Tom has 3 apples and buys 2 more. How many apples does Tom have now? Give the final answer as a "
             "number after 'The answer is'.")  # the demo's math prompts ask for it in so many words


def test_a_chosen_lacks_no_format_its_prompt_asks_for():
    prompts = prompts_frame([{"prompt_id": "p1", "content": ASKS_LINE}])
    bare = "Tom has 3 + 2 = 5 apples."  # right, but not in the asked form: the demo's read found three
    candidates = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": bare},
                                   {"candidate_id": "b", "prompt_id": "p1", "text": GOOD},
                                   {"candidate_id": "c", "prompt_id": "p1", "text": OTHER}])
    scores = scores_frame([("a", "p1", "math_verify", 1.0), ("b", "p1", "math_verify", 1.0),
                           ("c", "p1", "math_verify", 0.0)])
    facts = rule.candidate_facts(prompts, candidates, scores)
    assert dict(facts.select("candidate_id", "format_missing").iter_rows()) == {"a": True, "b": False, "c": False}
    pairs = build_pairs("margin", prompts, candidates, scores, {"pairing": "all_pairs_above_margin"}, "r")
    assert pairs["chosen_id"].to_list() == ["b"]  # a is right but never chosen; it may stand as nothing else
    # a teacher sample without the line is refused as the chosen, and counted
    teacher = candidates_frame([{"candidate_id": "t", "prompt_id": "p1", "text": bare, "model": "teacher@fp",
                                 "sample_index": 0},
                                {"candidate_id": "s", "prompt_id": "p1", "text": OTHER, "model": "student@fp",
                                 "sample_index": 0}])
    with rule.counting() as refused:
        none = build_pairs("gt", prompts, teacher, scores_frame([("t", "p1", "math_verify", 1.0),
                                                                 ("s", "p1", "math_verify", 0.0)]),
                           {"mode": "teacher_student", "teacher": "teacher", "student": "student"}, "r")
    assert none.is_empty() and refused == {"format_missing": 1}
    # the rule holds only where the prompt asks: the same text answers a prompt that does not
    plain = prompts_frame([{"prompt_id": "p1", "content": "Tom has 3 apples and buys 2 more. How many now?"}])
    assert not rule.candidate_facts(plain, candidates, scores)["format_missing"].any()


def test_gt_prefers_a_wrong_answer_in_the_asked_form():
    prompts = prompts_frame([{"prompt_id": "p1", "content": ASKS_LINE,
                              "reference_solution": "3 + 2 = 5. The answer is 5."}])
    candidates = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": "Tom has 3 - 2 = 1 apple."},
                                   {"candidate_id": "b", "prompt_id": "p1", "text": OTHER}])  # "The answer is 1."
    scores = scores_frame([("a", "p1", "math_verify", 0.0), ("b", "p1", "math_verify", 0.0)])
    pairs = build_pairs("gt", prompts, candidates, scores, {}, "r")
    assert pairs["rejected_id"].to_list() == ["b"]  # a sorts first by id, but lacks the answer line
    assert set(build_pairs("gt", prompts, candidates, scores, {"max_pairs_per_prompt": 2}, "r")["rejected_id"]) \
        == {"b", "a"}


def test_gt_prefers_the_wrong_answer_the_model_found_likeliest():
    """Of two wrong answers in the asked form, the one with the higher mean log-prob per token: the
    demo's student wrote word salad at -7 to -9 nats a token, real attempts above -2.6."""
    prompts = prompts_frame([{"prompt_id": "p1", "content": ASKS_LINE,
                              "reference_solution": "3 + 2 = 5. The answer is 5."}])
    salad = "Pick one of Tom's assigned an American emergency jumper. The answer is 32."
    candidates = candidates_frame([
        {"candidate_id": "a", "prompt_id": "p1", "text": salad, "cumulative_logprob": -120.0, "completion_tokens": 16},
        {"candidate_id": "b", "prompt_id": "p1", "text": OTHER, "cumulative_logprob": -9.0, "completion_tokens": 18},
        {"candidate_id": "c", "prompt_id": "p1", "text": "Tom has 4 apples. The answer is 4."}])  # not recorded
    scores = scores_frame([(c, "p1", "math_verify", 0.0) for c in "abc"])
    taken = [set(build_pairs("gt", prompts, candidates, scores, {"max_pairs_per_prompt": n}, "r")["rejected_id"])
             for n in (1, 2, 3)]
    assert taken == [{"b"}, {"b", "a"}, {"b", "a", "c"}]  # likeliest first; no log-prob known: last


def test_gt_prefers_wrong_code_that_parses():
    tests = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    prompts = prompts_frame([{"prompt_id": "p1", "task": "code", "content": "Write add(a, b).",
                              "fields": {"tests": tests, "entry_point": "add"},
                              "reference_solution": "def add(a, b):\n    return a + b\n"}])
    broken = "```python\ndef add(a, b):\n    return (a + b\n```"  # unbalanced: no attempt at the function
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    candidates = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": broken},
                                   {"candidate_id": "b", "prompt_id": "p1", "text": wrong}])
    scores = scores_frame([("a", "p1", "code_tests", 0.0), ("b", "p1", "code_tests", 0.0)])
    config = {"near_miss_only": False}  # neither passes a test
    assert build_pairs("gt", prompts, candidates, scores, config, "r")["rejected_id"].to_list() == ["b"]



def test_gt_prefers_wrong_code_that_passes_more_tests():
    """A near miss in code: of two wrong functions, the one that passes more of the tests, before
    the one the model found likelier."""
    tests = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n"
    prompts = prompts_frame([{"prompt_id": "p1", "task": "code", "content": "Write add(a, b).",
                              "fields": {"tests": tests, "entry_point": "add"},
                              "reference_solution": "def add(a, b):\n    return a + b\n"}])
    candidates = candidates_frame([
        {"candidate_id": "a", "prompt_id": "p1", "text": "```python\ndef add(a, b):\n    return a - b\n```",
         "cumulative_logprob": -2.0, "completion_tokens": 20},
        {"candidate_id": "b", "prompt_id": "p1", "text": "```python\ndef add(a, b):\n    return a * b\n```",
         "cumulative_logprob": -20.0, "completion_tokens": 20}])
    scores = scores_frame([("a", "p1", "code_tests", 0.0), ("b", "p1", "code_tests", 0.5)])
    assert build_pairs("gt", prompts, candidates, scores, {}, "r")["rejected_id"].to_list() == ["b"]

def test_gt_prefers_the_nearest_miss():
    """Of the demo's real wrong answers to one prompt, the one that reaches the reference's 5 * 6 = 30
    before it goes wrong, though it lacks the answer line, over one in form that never gets there."""
    content = ("Jake saves $5 every week for 6 weeks. Then he spends $12 on a book. How many dollars does Jake have "
               "left? Give the final answer as a number after 'The answer is'.")
    prompts = prompts_frame([{"prompt_id": "p1", "content": content, "reference_answer": "18",
                              "reference_solution": "Jake saves 5 x 6 = 30 dollars. After the book: 30 - 12 = 18 "
                                                    "dollars. The answer is 18."}])
    salad = "There are 12 weeks in 6 weeks. So there are 12 x 6 = 60 days in 12 weeks. The answer is 72 - 6 = 60."
    near = "Jake saves $5 every week, so he saves $5*6 = $30. The remaining amount is $30 - 5 = $25. The final answer is $25."
    candidates = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": salad},
                                   {"candidate_id": "b", "prompt_id": "p1", "text": near}])
    scores = scores_frame([("a", "p1", "math_verify", 0.0), ("b", "p1", "math_verify", 0.0)])
    assert build_pairs("gt", prompts, candidates, scores, {}, "r")["rejected_id"].to_list() == ["b"]



def test_gt_refuses_a_wrong_answer_that_shares_no_step_with_the_reference():
    """The demo's real answers to one prompt: the reference computes 4 x 2 = 8 first; an answer about
    pennies that never states 8 is no attempt at this problem (reviewers called the pair trivial)."""
    content = ("Pens cost $2 each. Anna buys 4 pens and pays with a $20 bill. How many dollars of change does she "
               "get? Give the final answer as a number after 'The answer is'.")
    prompts = prompts_frame([{"prompt_id": "p1", "content": content, "reference_answer": "12",
                              "reference_solution": "The pens cost 4 x 2 = 8 dollars. Change: 20 - 8 = 12 dollars. "
                                                    "The answer is 12."}])
    pennies = ("Pens cost $2 each, so Anna spends $2 each, which means she spent 4 pennies on pens. There are 4 coins "
               "(10 pennies) in 10 coins. So, 4 x 10 = 40 dollars of change.\n\nThe answer is 100.")
    near = "4 pens cost 4 x 2 = 8 dollars. Change: 20 + 8 = 28. The answer is 28."
    candidates = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": pennies}])
    scores = scores_frame([("a", "p1", "math_verify", 0.0), ("b", "p1", "math_verify", 0.0)])
    with rule.counting() as refused:
        assert build_pairs("gt", prompts, candidates, scores, {}, "r").is_empty()
    assert refused == {"no_near_miss": 1}
    assert build_pairs("gt", prompts, candidates, scores, {"near_miss_only": False}, "r")["rejected_id"].to_list() == ["a"]
    both = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": pennies},
                             {"candidate_id": "b", "prompt_id": "p1", "text": near}])
    assert build_pairs("gt", prompts, both, scores, {"max_pairs_per_prompt": 2}, "r")["rejected_id"].to_list() == ["b"]
    # a one-step reference shows no intermediate result: any wrong answer may stand
    one_step = prompts_frame([{"prompt_id": "p1", "content": "A cat has 4 legs. How many legs do 3 cats have? Give "
                               "the final answer as a number after 'The answer is'.",
                               "reference_solution": "3 cats have 3 x 4 = 12 legs. The answer is 12."}])
    cat = candidates_frame([{"candidate_id": "a", "prompt_id": "p1", "text": "The cat has 4 legs. So, the answer is 4."}])
    assert build_pairs("gt", one_step, cat, scores, {}, "r")["rejected_id"].to_list() == ["a"]

def test_gt_near_miss_counts_no_list_numbers_and_no_final_answer():
    from curate.pairs.gt import _progress

    row = {"prompt": [{"role": "user", "content": "A baker makes 24 muffins. She sells 15 muffins in the morning and "
                                                  "6 muffins in the afternoon. How many muffins are left?"}],
           "chosen": "Total sold: 15 + 6 = 21. Muffins left: 24 - 21 = 3. The answer is 3."}
    salad = "1) The first question says 24.\n2) The sum is 24.\n3) So you add 2 to 24 to arrive at 32."
    assert _progress({**row, "rejected": salad}) == 0  # "3)" is a list number, 3 the final answer
    assert _progress({**row, "rejected": "She sold 15 + 6 = 21, so 24 + 21 = 45 are left."}) == 1
