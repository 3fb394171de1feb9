"""Step-wise pairs (Step-DPO / ReCUT): split steps, derive rollout prompts per prefix, locate the
first erroneous step from scripted rollout outcomes, and ReCUT's shorter-correct-over-longer."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate import ids
from curate.lake import schemas
from curate.pairs import stepwise
from curate.pairs.derive import DerivedPrompt, derived_prompt_rows
from curate.pairs.registry import STRATEGIES, build_pairs, derive_prompts
from curate.pairs.stepwise import split_steps

NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)
QUESTION = [{"role": "user", "content": "What is (2 + 3) * 4?"}]


def prompt_row(pid, task="math", answer="20"):
    return {"prompt_id": pid, "source": "s", "task": task,
            "messages": [{"role": "user", "content": f"question {pid}"}] if pid != "p1" else QUESTION,
            "reference_answer": answer, "run_id": "r0", "created_at": NOW}


def prompts_frame(rows, derived=()):
    frame = pl.from_arrow(schemas.conform("prompts", rows))
    if derived:
        frame = pl.concat([frame, pl.from_arrow(derived_prompt_rows(list(derived), "stepwise", "r1"))])
    return frame


def candidates_frame(rows):
    """rows: (candidate_id, prompt_id, text[, completion_tokens])."""
    out = []
    for i, row in enumerate(rows):
        cid, pid, text = row[:3]
        out.append({"candidate_id": cid, "prompt_id": pid, "model": "gen@fp", "sampling_json": "{}",
                    "sample_index": i, "seed": i, "text": text,
                    "completion_tokens": row[3] if len(row) > 3 else None, "run_id": "r0", "created_at": NOW})
    return pl.from_arrow(schemas.conform("candidates", out))


def scores_frame(rows, scorer="math_verify", version="1"):
    """rows: (candidate_id, prompt_id, score)."""
    out = [{"score_id": ids.score_id(cid, scorer, version), "candidate_id": cid, "prompt_id": pid,
            "scorer": scorer, "scorer_version": version, "score": score, "status": "ok",
            "run_id": "r0", "created_at": NOW} for cid, pid, score in rows]
    return pl.from_arrow(schemas.conform("scores", out))


def empty(name):
    return pl.from_arrow(schemas.table(name).arrow_schema().empty_table())


# split_steps ------------------------------------------------------------------------------------
def test_split_steps_on_step_markers():
    text = "Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 20\nStep 3: The answer is 20."
    assert split_steps(text) == ["Step 1: 2 + 3 = 5", "Step 2: 5 * 4 = 20", "Step 3: The answer is 20."]
    assert "\n".join(split_steps(text)) == text
    # a step runs over several lines up to the next marker; its text is kept exactly
    multi = "Step 1: add\n  2 + 3 = 5\nStep 2: multiply\n\t5 * 4 = 20"
    assert split_steps(multi) == ["Step 1: add\n  2 + 3 = 5", "Step 2: multiply\n\t5 * 4 = 20"]
    assert "\n".join(split_steps(multi)) == multi
    # markdown markers, other case; a preamble before the first marker is a step of its own
    marked = "Let me think.\n**Step 1:** add\n## step 2: multiply\n**Step 3**: done"
    assert split_steps(marked) == ["Let me think.", "**Step 1:** add", "## step 2: multiply", "**Step 3**: done"]
    # blank lines between steps and trailing whitespace are not part of any step
    assert split_steps("\nStep 1: a\n\nStep 2: b  \n") == ["Step 1: a", "Step 2: b"]
    # "step" inside a line is no marker
    assert split_steps("We take one step: 2 + 3 = 5\nthen 20") == ["We take one step: 2 + 3 = 5", "then 20"]


def test_split_steps_on_lines_without_markers():
    text = "2 + 3 = 5\n  5 * 4 = 20\n\nThe answer is 20. "
    assert split_steps(text) == ["2 + 3 = 5", "  5 * 4 = 20", "The answer is 20. "]
    assert split_steps("one line") == ["one line"]
    assert split_steps("") == [] and split_steps(" \n\n") == []
    no_blank = "a\nb\nc"
    assert "\n".join(split_steps(no_blank)) == no_blank


# config -----------------------------------------------------------------------------------------
def test_registered_and_empty_frames_check_the_config():
    assert STRATEGIES["stepwise"] is stepwise.STRATEGY
    args = (empty("prompts"), empty("candidates"), empty("scores"))
    for config in ({}, {"prefer_shorter": True}, {"scorer_version": "1", "rollouts": 8}):
        pairs = build_pairs("stepwise", *args, config, run_id="r")
        assert pairs.height == 0 and pairs.columns == schemas.table("pairs").column_names
        assert derive_prompts("stepwise", *args, config) == []
    assert build_pairs("stepwise", *args, {}, "r").height == 0
    bad = [({"rollout": 4}, "'rollout'"), ({"rollouts": 0}, "rollouts"), ({"max_steps": 2.5}, "max_steps"),
           ({"threshold": 1.0}, "threshold"), ({"threshold": "0"}, "threshold"),
           ({"prefer_shorter": 1}, "prefer_shorter"), ({"scorer": ""}, "scorer"),
           ({"min_length_ratio": 1.5}, "min_length_ratio.*prefer_shorter"),
           ({"prefer_shorter": True, "rollouts": 2}, "rollouts.*prefer_shorter"),
           ({"prefer_shorter": True, "min_length_ratio": 0.5}, "min_length_ratio")]
    for config, message in bad:
        with pytest.raises(ValueError, match=message):
            build_pairs("stepwise", *args, config, run_id="r")
        with pytest.raises(ValueError, match=message):
            derive_prompts("stepwise", *args, config)


# derive -----------------------------------------------------------------------------------------
WRONG = "Step 1: 2 + 3 = 6\nStep 2: 6 * 4 = 24\nStep 3: The answer is 24."
WRONG_LINES = "2 + 3 = 5\n5 * 4 = 25\nSo 25.\nThe answer is 25."


def round_one():
    prompts = [prompt_row("p1"), prompt_row("p2", answer="7"), prompt_row("p3", task="chat", answer=None)]
    candidates = candidates_frame([
        ("a-one-line", "p1", "The answer is 24."),          # wrong, but a single step
        ("b-wrong", "p1", WRONG),
        ("c-right", "p1", "Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 20\nStep 3: The answer is 20."),
        ("d-wrong", "p1", WRONG_LINES),
        ("e-wrong", "p2", "3 + 4 = 8\nThe answer is 8."),
        ("f-right", "p2", "3 + 4 = 7\nThe answer is 7."),
        ("g-chat", "p3", "line one\nline two"),
    ])
    scores = scores_frame([("a-one-line", "p1", 0.0), ("b-wrong", "p1", 0.0), ("c-right", "p1", 1.0),
                           ("d-wrong", "p1", 0.0), ("e-wrong", "p2", 0.0), ("f-right", "p2", 1.0),
                           ("g-chat", "p3", 0.0)])
    return prompts_frame(prompts), candidates, scores


def expected(parent, messages, answer, solution, steps, k, rollouts=4, max_tokens=256, temperature=0.8):
    return DerivedPrompt(parent_prompt_id=parent, messages=messages, task="math",
                         fields={"reference_answer": answer},
                         generation={"n": rollouts, "assistant_prefix": "\n".join(steps[:k]) + "\n",
                                     "max_tokens": max_tokens, "temperature": temperature},
                         note={"solution_id": solution, "prefix_steps": k})


def test_derive_one_prompt_per_prefix_of_the_first_wrong_multistep_solution():
    prompts, candidates, scores = round_one()
    derived = derive_prompts("stepwise", prompts, candidates, scores, {})
    steps = split_steps(WRONG)
    p2 = [{"role": "user", "content": "question p2"}]
    assert derived == [
        expected("p1", QUESTION, "20", "b-wrong", steps, 1),
        expected("p1", QUESTION, "20", "b-wrong", steps, 2),
        expected("p2", p2, "7", "e-wrong", ["3 + 4 = 8", "The answer is 8."], 1),
    ]
    assert derived[1].generation["assistant_prefix"] == "Step 1: 2 + 3 = 6\nStep 2: 6 * 4 = 24\n"
    # deterministic and idempotent: the same prompt ids again
    again = derive_prompts("stepwise", prompts, candidates, scores, {})
    assert again == derived
    rows = derived_prompt_rows(derived, "stepwise", "r1")
    assert rows.column("prompt_id").to_pylist() == derived_prompt_rows(again, "stepwise", "r2").column(
        "prompt_id").to_pylist()
    assert len(set(rows.column("prompt_id").to_pylist())) == 3


def test_derive_options_and_what_is_never_derived():
    prompts, candidates, scores = round_one()
    lines = split_steps(WRONG_LINES)
    config = {"max_solutions_per_prompt": 2, "max_steps": 2, "rollouts": 8, "rollout_max_tokens": 64,
              "rollout_temperature": 1.0}
    derived = [d for d in derive_prompts("stepwise", prompts, candidates, scores, config) if d.parent_prompt_id == "p1"]
    options = {"rollouts": 8, "max_tokens": 64, "temperature": 1.0}
    assert derived == [
        expected("p1", QUESTION, "20", "b-wrong", split_steps(WRONG), 1, **options),
        expected("p1", QUESTION, "20", "b-wrong", split_steps(WRONG), 2, **options),
        expected("p1", QUESTION, "20", "d-wrong", lines, 1, **options),
        expected("p1", QUESTION, "20", "d-wrong", lines, 2, **options),  # max_steps: not 3
    ]
    # correct solutions, single-step ones, non-math prompts and derived prompts give nothing
    only_right = scores.filter(pl.col("score") == 1.0)
    assert derive_prompts("stepwise", prompts, candidates, only_right, {}) == []
    single = scores.filter(pl.col("candidate_id") == "a-one-line")
    assert derive_prompts("stepwise", prompts, candidates, single, {}) == []
    chat = scores.filter(pl.col("candidate_id") == "g-chat")
    assert derive_prompts("stepwise", prompts, candidates, chat, {}) == []
    with_derived = prompts_frame([prompt_row("p1")], derived)
    derived_candidates = candidates_frame([("z", with_derived["prompt_id"][-1], "Step 1: x\nStep 2: y")])
    assert derive_prompts("stepwise", with_derived, derived_candidates,
                          scores_frame([("z", with_derived["prompt_id"][-1], 0.0)]), {}) == []
    # ReCUT derives nothing
    assert derive_prompts("stepwise", prompts, candidates, scores, {"prefer_shorter": True}) == []


# build ------------------------------------------------------------------------------------------
SOLUTION = ("Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 20\nStep 3: 20 - 1 = 19, subtracting the bracket\n"
            "Step 4: The answer is 19.")
STEPS = split_steps(SOLUTION)
RIGHT = "Step 1: First, 2 + 3 = 5\nStep 2: Then 5 * 4 = 20\nThe answer is 20."


def scripted(outcomes: dict[int, list[tuple[str, float]]], p0_correct: int = 1, threshold_config=None):
    """Round 1 of p1: the wrong SOLUTION (w) and p0_correct correct ones; rollouts per prefix k as
    scripted (text, score) in candidate-id order (ids "r<k>-<i>")."""
    round1 = [("w", "p1", SOLUTION)] + [(f"c{i}", "p1", RIGHT) for i in range(p0_correct)]
    round1_scores = [("w", "p1", 0.0)] + [(f"c{i}", "p1", 1.0) for i in range(p0_correct)]
    derived = derive_prompts("stepwise", prompts_frame([prompt_row("p1")]), candidates_frame(round1),
                              scores_frame(round1_scores), {"max_steps": 6})
    assert [d.note["prefix_steps"] for d in derived] == [1, 2, 3]
    prompts = prompts_frame([prompt_row("p1")], derived)
    ids_by_k = dict(zip([d.note["prefix_steps"] for d in derived], prompts["prompt_id"].to_list()[1:]))
    rollouts, rollout_scores = [], []
    for k, outcome in outcomes.items():
        for i, (text, score) in enumerate(outcome):
            rollouts.append((f"r{k}-{i}", ids_by_k[k], text))
            rollout_scores.append((f"r{k}-{i}", ids_by_k[k], score))
    return prompts, candidates_frame(round1 + rollouts), scores_frame(round1_scores + rollout_scores)


def build(prompts, candidates, scores, config=None):
    return build_pairs("stepwise", prompts, candidates, scores, config or {}, run_id="run-x")


def good(text):
    return (text, 1.0)


def bad(text):
    return (text, 0.0)


def test_error_at_step_three():
    prompts, candidates, scores = scripted({
        1: [good("Step 2: 5 * 4 = 20\nThe answer is 20."), good("Step 2: 20\nAnswer: 20"),
            good("Step 2: So 20.\n20"), bad("Step 2: 25\nThe answer is 25.")],
        2: [bad("Step 3: 20 - 1 = 19\nThe answer is 19."), good("Step 3: The answer is 20."),
            good("Step 3: Nothing to subtract, so 20.\nThe answer is 20."), bad("Step 3: 19")],
        3: [bad("Step 4: The answer is 19."), bad("Step 4: 19"), bad("Step 4: 19"), bad("")],
    })
    pairs = build(prompts, candidates, scores)
    assert pairs.height == 1
    row = pairs.to_dicts()[0]
    assert row["prompt_id"] == "p1"
    assert row["prompt"] == QUESTION + [{"role": "assistant", "content": "Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 20\n"}]
    assert row["rejected"] == "Step 3: 20 - 1 = 19, subtracting the bracket"
    assert row["chosen"] == "Step 3: The answer is 20."  # r2-1: the smallest correct rollout id
    assert (row["chosen_id"], row["rejected_id"]) == ("r2-1", "w#step3")
    assert (row["chosen_score"], row["rejected_score"], row["margin"]) == (0.5, 0.0, 0.5)
    assert row["scorer"] == "math_verify"
    assert row["pair_id"] == ids.pair_id("stepwise", "r2-1", "w#step3", "p1")
    assert json.loads(row["details_json"]) == {
        "solution_id": "w", "erroneous_step": 3, "prefix_steps": 2, "steps": 4,
        "success_rates": [0.5, 0.75, 0.5, 0.0], "rollouts": [2, 4, 4, 4], "threshold": 0.0,
        "chosen_from": "rollout", "located_by": "rollouts", "rollout_step": 3, "arithmetic_step": None,
        "failing_equation": None}
    assert "step 3" in row["reason"] and "first erroneous" in row["reason"]
    assert json.loads(row["params_json"])["rollouts"] == 4
    schemas.conform("pairs", pairs.to_arrow())


def test_error_at_step_one_takes_the_chosen_step_from_a_correct_round_one_solution():
    prompts, candidates, scores = scripted({1: [bad("a"), bad("b")], 2: [bad("c")], 3: [bad("d")]},
                                           p0_correct=2)
    row = build(prompts, candidates, scores).to_dicts()[0]
    assert row["prompt"] == QUESTION  # no prefix: the erroneous step is the first
    assert (row["chosen"], row["rejected"]) == ("Step 1: First, 2 + 3 = 5", "Step 1: 2 + 3 = 5")
    assert (row["chosen_id"], row["rejected_id"]) == ("c0", "w#step1")
    assert row["margin"] == pytest.approx(2 / 3)
    details = json.loads(row["details_json"])
    assert details["chosen_from"] == "round1" and details["prefix_steps"] == 0
    assert details["success_rates"] == [pytest.approx(2 / 3), 0.0, 0.0, 0.0]


def test_no_pair_when_success_never_drops_to_zero():
    prompts, candidates, scores = scripted({
        1: [good("Step 2: 20"), bad("x")], 2: [good("Step 3: 20"), bad("y")], 3: [good("Step 4: 20"), bad("z")]})
    assert build(prompts, candidates, scores).height == 0
    # with a threshold, "rarely succeeds" counts as ~0: step 1 (0.5 -> 0.25) is then the error
    rare = [good("Step 2: 20"), bad("x"), bad("x"), bad("x")]
    prompts, candidates, scores = scripted({1: rare, 2: rare, 3: rare})
    assert build(prompts, candidates, scores).height == 0
    at_quarter = build(prompts, candidates, scores, {"threshold": 0.25}).to_dicts()
    assert [(r["chosen_id"], r["rejected_id"], r["margin"]) for r in at_quarter] == [("c0", "w#step1", 0.25)]


def test_drop_without_a_different_successful_step_gives_no_pair():
    # step 2 is where it drops, but the only correct rollouts from prefix 1 start with that same step
    prompts, candidates, scores = scripted({
        1: [good("Step 2: 5 * 4 = 20\nStep 3: The answer is 20."), bad("Step 2: 21")],
        2: [bad("Step 3: 19")], 3: [bad("Step 4: 19")]})
    assert build(prompts, candidates, scores).height == 0
    # drop at 2 and a correct rollout from prefix 1 with another first step: a pair
    prompts, candidates, scores = scripted({
        1: [good("Step 2: 5 * 4 = 20\nStep 3: The answer is 20."), good("  Step 2: 4 * 5 = 20\nStep 3: 20")],
        2: [bad("Step 3: 19")], 3: [bad("Step 4: 19")]})
    row = build(prompts, candidates, scores).to_dicts()[0]
    assert (row["chosen"], row["chosen_id"], row["rejected_id"]) == ("  Step 2: 4 * 5 = 20", "r1-1", "w#step2")
    assert row["prompt"][-1] == {"role": "assistant", "content": "Step 1: 2 + 3 = 5\n"}
    # drop at 1 but the parent has no correct round-1 solution: p_0 = 0, nothing to break
    prompts, candidates, scores = scripted({1: [bad("a")], 2: [bad("b")], 3: [bad("c")]}, p0_correct=0)
    assert build(prompts, candidates, scores).height == 0


def test_a_prefix_without_scored_rollouts_stops_the_scan():
    prompts, candidates, scores = scripted({2: [good("Step 3: 20")], 3: [bad("Step 4: 19")]})
    assert build(prompts, candidates, scores).height == 0  # p_1 unknown: step 3's drop is not trusted
    # only the stepwise derived prompts and the configured scorer count
    prompts, candidates, scores = scripted({1: [bad("a")], 2: [bad("b")], 3: [bad("c")]})
    other = scores.with_columns(pl.lit("reward:rm").alias("scorer"))
    assert build(prompts, candidates, other).height == 0
    assert build(prompts, candidates, scores, {"scorer_version": "2"}).height == 0
    assert build(prompts, candidates, scores, {"scorer_version": "1"}).height == 1


# ReCUT ------------------------------------------------------------------------------------------
def test_recut_prefers_the_shortest_correct_solution():
    prompts = prompts_frame([prompt_row("p1"), prompt_row("p2"), prompt_row("p3")])
    candidates = candidates_frame([
        ("a", "p1", "short", 50), ("b", "p1", "medium", 100), ("c", "p1", "long one", 130),
        ("d", "p1", "long two", 130), ("e", "p1", "wrong and shorter", 10), ("f", "p1", "no count", None),
        ("g", "p2", "close", 100), ("h", "p2", "closer", 110),
        ("i", "p3", "only correct one", 40), ("j", "p3", "wrong", 400),
    ])
    scores = scores_frame([("a", "p1", 1.0), ("b", "p1", 1.0), ("c", "p1", 1.0), ("d", "p1", 1.0),
                           ("e", "p1", 0.0), ("f", "p1", 1.0), ("g", "p2", 1.0), ("h", "p2", 1.0),
                           ("i", "p3", 1.0), ("j", "p3", 0.0)])
    pairs = build(prompts, candidates, scores, {"prefer_shorter": True})
    assert pairs.height == 1  # p2: 110 / 100 < 1.2; p3: one correct solution
    row = pairs.to_dicts()[0]
    assert (row["prompt_id"], row["chosen_id"], row["rejected_id"]) == ("p1", "a", "c")
    assert (row["chosen"], row["rejected"], row["prompt"]) == ("short", "long one", QUESTION)
    assert (row["chosen_score"], row["rejected_score"], row["margin"]) == (1.0, 1.0, None)
    assert json.loads(row["details_json"]) == {"mode": "recut", "chosen_tokens": 50, "rejected_tokens": 130,
                                               "length_ratio": 2.6, "correct": 4}
    assert "ReCUT" in row["reason"]
    lenient = build(prompts, candidates, scores, {"prefer_shorter": True, "min_length_ratio": 1.1})
    assert lenient["chosen_id"].to_list() == ["a", "g"]
    assert build(prompts, candidates, scores, {"prefer_shorter": True, "min_length_ratio": 3}).height == 0


def test_rollouts_of_a_prefix_that_no_longer_matches_the_solution_are_ignored():
    prompts, candidates, scores = scripted({1: [bad("a")], 2: [bad("b")], 3: [bad("c")]})
    assert build(prompts, candidates, scores).height == 1
    edited = candidates.with_columns(
        pl.when(pl.col("candidate_id") == "w").then(pl.lit(SOLUTION.replace("2 + 3", "3 + 2")))
        .otherwise(pl.col("text")).alias("text"))
    assert build(prompts, edited, scores).height == 0
    # another strategy's derived prompts are not stepwise rollouts
    relabelled = prompts.with_columns(pl.col("task_fields_json").str.replace('"stepwise"', '"other"'))
    assert build(relabelled, candidates, scores).height == 0


# the arithmetic check ---------------------------------------------------------------------------
LUCKY_QUESTION = [{"role": "user", "content": "Tom buys 9 boxes of 11 pens and gives 1 away. How many are left?"}]
# step 1 states a false product; the solution still ends on the right answer (98)
LUCKY = ("Step 1: 9 * 11 = 98 pens in all.\nStep 2: He gives 1 away, 98 - 1 = 97... no, he had 99, so 98 are left."
         "\nStep 3: 98 pens are left.\nStep 4: The answer is 98.")
CLEAN = "Step 1: 9 × 11 = 99 pens.\nStep 2: 99 - 1 = 98.\nThe answer is 98."


def lucky_tables(solution_score: float, outcomes: dict[int, list[tuple[str, float]]]):
    """Round 1 of the pens question: the LUCKY solution (scored solution_score) and one CLEAN correct
    one; rollouts per prefix k as scripted (text, score), ids "r<k>-<i>"."""
    row = {**prompt_row("p1", answer="98"), "messages": LUCKY_QUESTION}
    round1 = [("lucky", "p1", LUCKY), ("clean", "p1", CLEAN)]
    round1_scores = [("lucky", "p1", solution_score), ("clean", "p1", 1.0)]
    derived = derive_prompts("stepwise", prompts_frame([row]), candidates_frame(round1),
                             scores_frame(round1_scores), {})
    assert [(d.note["solution_id"], d.note["prefix_steps"]) for d in derived] == [("lucky", 1), ("lucky", 2),
                                                                                  ("lucky", 3)]
    prompts = prompts_frame([row], derived)
    ids_by_k = dict(zip([d.note["prefix_steps"] for d in derived], prompts["prompt_id"].to_list()[1:]))
    rollouts = [(f"r{k}-{i}", ids_by_k[k], text, score) for k, outcome in outcomes.items()
                for i, (text, score) in enumerate(outcome)]
    return (prompts, candidates_frame(round1 + [r[:3] for r in rollouts]),
            scores_frame(round1_scores + [(cid, pid, score) for cid, pid, _, score in rollouts]))


def assert_step_one_is_the_error(pairs):
    assert pairs.height == 1
    row = pairs.to_dicts()[0]
    assert all("9 * 11 = 98" not in message["content"] for message in row["prompt"])  # never a correct prefix
    assert row["prompt"] == LUCKY_QUESTION
    assert (row["rejected"], row["rejected_id"]) == ("Step 1: 9 * 11 = 98 pens in all.", "lucky#step1")
    assert (row["chosen"], row["chosen_id"]) == ("Step 1: 9 × 11 = 99 pens.", "clean")
    assert row["rejected_score"] == 0.0 and row["chosen_score"] > row["rejected_score"]
    details = json.loads(row["details_json"])
    assert details["erroneous_step"] == 1 and details["prefix_steps"] == 0
    assert details["failing_equation"] == "9 * 11 = 98" and details["arithmetic_step"] == 1
    assert "false equation 9 * 11 = 98" in row["reason"]
    return details


def test_a_false_equation_in_step_one_is_the_error_whatever_the_rollouts_reached():
    # The solution's answer is wrong (scored 0); rollouts after step 1 and 2 reach 98 by luck and
    # fall to 0 after step 3: the rollouts alone would take steps 1-2 as a correct prefix.
    lucky_rollouts = {1: [good("Step 2: 99 - 1 = 98\nThe answer is 98."), bad("Step 2: 97")],
                      2: [good("Step 3: The answer is 98."), bad("Step 3: 97")],
                      3: [bad("Step 4: The answer is 97."), bad("Step 4: 97")]}
    prompts, candidates, scores = lucky_tables(0.0, lucky_rollouts)
    details = assert_step_one_is_the_error(build(prompts, candidates, scores))
    assert (details["located_by"], details["rollout_step"]) == ("arithmetic", 3)
    # without the arithmetic check the same tables gave a prefix holding the false step
    assert details["success_rates"] == [0.5, 0.5, 0.5, 0.0]


def test_a_correct_final_answer_after_a_false_equation_is_still_a_wrong_solution():
    # math_verify accepts the final answer (98); every rollout reaches it too
    all_good = {k: [good(f"Step {k + 1}: The answer is 98.")] for k in (1, 2, 3)}
    prompts, candidates, scores = lucky_tables(1.0, all_good)
    details = assert_step_one_is_the_error(build(prompts, candidates, scores))
    assert (details["located_by"], details["rollout_step"]) == ("arithmetic", None)
    # both locators agree when the rollouts drop right after the false step
    drop = {1: [bad("Step 2: 97")], 2: [bad("Step 3: 97")], 3: [bad("Step 4: 97")]}
    details = assert_step_one_is_the_error(build(*lucky_tables(0.0, drop)))
    assert (details["located_by"], details["rollout_step"]) == ("both", 1)


def test_chosen_steps_with_a_false_equation_or_a_quality_gate_are_never_chosen():
    prompts, candidates, scores = scripted({
        1: [good("Step 2: 20")],
        2: [good("Step 3: 20 * 1 = 21\nThe answer is 20."), good("Step 3: 20 * 1 = 20, so 20."),
            good("Step 3: The answer is 20.")],
        3: [bad("Step 4: 19")]})
    row = build(prompts, candidates, scores).to_dicts()
    assert [(r["chosen_id"], r["chosen"]) for r in row] == [("r2-1", "Step 3: 20 * 1 = 20, so 20.")]
    gate = scores_frame([("r2-1", "p1", 0.0)], scorer="quality")
    row = build(prompts, candidates, pl.concat([scores, gate])).to_dicts()
    assert [r["chosen_id"] for r in row] == ["r2-2"]
    # a quality row scoring 1 gates nothing; a failed quality row is no verdict
    passed = scores_frame([("r2-1", "p1", 1.0)], scorer="quality")
    assert build(prompts, candidates, pl.concat([scores, passed]))["chosen_id"].to_list() == ["r2-1"]


def test_a_prefix_step_whose_rollouts_fail_is_no_correct_prefix():
    # p_0 = 0 (no correct round-1 answer), p_1 = 0, p_2 > 0, p_3 = 0: step 1 did not pass its rollouts
    prompts, candidates, scores = scripted({1: [bad("a")], 2: [good("Step 3: The answer is 20.")],
                                            3: [bad("Step 4: 19")]}, p0_correct=0)
    assert build(prompts, candidates, scores).height == 0


def test_the_pairing_rule_unscored_failed_and_gated_rollouts_are_never_chosen():
    prompts, candidates, scores = scripted({
        1: [good("Step 2: 20")],
        2: [bad("Step 3: 19"), good("Step 3: failed score, 20."), good("Step 3: unscored, 20."),
            good("Step 3: gated, 20."), good("Step 3: So the answer is 20.")],
        3: [bad("Step 4: 19")]})
    failed = scores.filter(pl.col("candidate_id") == "r2-1").with_columns(
        pl.lit("error").alias("status"), pl.lit(None, dtype=pl.Float64).alias("score"))
    scores = pl.concat([scores.filter(~pl.col("candidate_id").is_in(["r2-1", "r2-2"])), failed,
                        scores_frame([("r2-3", "p1", 0.0)], scorer="quality")])
    pairs = build(prompts, candidates, scores).to_dicts()
    assert [(r["chosen_id"], r["chosen"]) for r in pairs] == [("r2-4", "Step 3: So the answer is 20.")]
    # the failed and unscored rollouts are not in the success rate either: 2 of 3 scored rollouts
    details = json.loads(pairs[0]["details_json"])
    assert details["rollouts"][2] == 3 and details["success_rates"][2] == pytest.approx(2 / 3)
    assert all(r["chosen_score"] > r["rejected_score"] for r in pairs)
    # with every correct rollout ineligible there is no pair
    gate_all = scores_frame([("r2-4", "p1", 0.0)], scorer="quality")
    assert build(prompts, candidates, pl.concat([scores, gate_all])).height == 0
