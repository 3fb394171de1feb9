"""Answer-level checks (curate.audit.answer_checks, the audit's answer_* rows) on real text: the demo's
prompts and the embedded model's own answers from a review of the demo's export, IFEval's prompts,
Python's textwrap documentation, and this repository's own commits."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from curate.audit import answer_checks
from curate.audit.checks import (
    CONFIRMED,
    REFUTED,
    UNCHECKABLE,
    PairTokens,
    audit_pairs,
    check_answer_context,
    check_answer_format,
    check_answer_own_text,
    overall_verdicts,
)
from curate.ingest.stdlib_docs import render
from curate.pairs import code_evolution, short_to_long
from curate.score.verify import constraints as library
from curate.score.verify.constraints import describe_constraint, load_ifeval_prompts

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)


def _demo_row(starts: str) -> dict:
    for line in (ROOT / "data" / "demo" / "instruction.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["messages"][-1]["content"].startswith(starts):
            return row
    raise AssertionError(starts)


def _pair(strategy, prompt, chosen, rejected="A plain answer.", details=None, prompt_id="p"):
    return {"pair_id": f"{strategy}-{abs(hash(chosen)) % 10**8}", "prompt_id": prompt_id, "strategy": strategy,
            "params_json": "{}", "prompt": prompt, "chosen": chosen, "rejected": rejected,
            "chosen_id": "c", "rejected_id": "r", "scorer": None, "margin": 1.0, "reason": "test",
            "details_json": json.dumps(details or {}), "dedup_key": "k", "run_id": "r1", "created_at": NOW}


# ------------------------------------------------------------------------------------------------
# own text: word forms, copied URLs


def test_darkest_under_a_ban_on_dark_and_street_only_in_streetlights_refute():
    row = _demo_row("Describe a city at night")
    request = row["messages"][-1]["content"]
    # the margin pair's chosen from the review of the demo's export: the reference checkers pass it
    chosen = ("The city comes alive at night. The darkest corners glow under the streetlights, and "
              "the lights of the towers shine over the river.")
    failures = answer_checks.own_text_failures(chosen, row["constraints"], request)
    assert {f["type"] for f in failures} == {"keywords:forbidden_words", "keywords:existence"}
    assert "darkest" in next(f["why"] for f in failures if f["type"] == "keywords:forbidden_words")
    pair = _pair("margin", row["messages"], chosen)
    prompt = {"prompt_id": "p", "task": "instruction", "constraints_json": json.dumps(row["constraints"])}
    verdict = check_answer_own_text(pair, prompt)
    assert verdict.verdict == REFUTED
    honest = "At night the street fills with lights from shops and cafes, and people walk slowly home."
    assert answer_checks.own_text_failures(honest, row["constraints"], request) == []
    assert check_answer_own_text(_pair("margin", row["messages"], honest), prompt).verdict == CONFIRMED


def test_a_comma_only_inside_a_copied_url_does_not_follow_has_comma():
    row = next(r for r in load_ifeval_prompts() if "Raymond_III,_Count_of_Tripoli" in r["messages"][-1]["content"])
    has_comma = [{"type": "punctuation:has_comma", "kwargs": {}}]
    request = row["messages"][-1]["content"]
    chosen = ("Raymond III was a count who ruled Tripoli in the twelfth century and fought in many wars "
              "(see https://en.wikipedia.org/wiki/Raymond_III,_Count_of_Tripoli)")
    failures = answer_checks.own_text_failures(chosen, has_comma, request)
    assert failures and failures[0]["type"] == "punctuation:has_comma"
    with_commas = "Raymond III, count of Tripoli, ruled in the twelfth century."
    assert answer_checks.own_text_failures(with_commas, has_comma, request) == []


def test_a_phrase_the_prompt_requires_may_be_copied():
    row = next(r for r in load_ifeval_prompts()
               if any(c["type"] == "startend:end_checker" for c in r["constraints"]))
    phrase = next(c for c in row["constraints"] if c["type"] == "startend:end_checker")["kwargs"]["end_phrase"]
    constraints = [c for c in row["constraints"] if c["type"] == "startend:end_checker"]
    answer = f"Here is my answer to the request, written in my own words. {phrase}"
    assert answer_checks.own_text_failures(answer, constraints, row["messages"][-1]["content"]) == []


# SmolLM2-135M's own answers (bench/dpo_effect.py's candidates) that meet a constraint only by
# pasting the example its instruction gives; 39 of 1,598 candidates there
PASTED_EXAMPLES = [
    ("Give me a recipe for tahini.", {"type": "detectable_content:number_placeholders", "kwargs": {"num_placeholders": 2}},
     "Sure, I can assist you with that. Here's a recipe for falafel with a tahini taco. I have [food] and it "
     "needs [address] to have it.",
     "Mix [amount] of sesame seeds with [amount of oil] and blend until smooth."),
    ("Rewrite the sentence: A giant spider blocks your path.",
     {"type": "detectable_format:number_highlighted_sections", "kwargs": {"num_highlights": 1}},
     "I will assist you. You can use any text you need. Just ensure it is *highlighted section*",
     "A *giant spider* blocks your path."),
    ("Write down antonyms for the given word: laureating",
     {"type": "detectable_format:title", "kwargs": {}},
     "<<poem of joy>>\n\nA: ['Ablution']", "<<antonyms of laureating>>\n\ndisgracing, shaming"),
    ("Summarise the announcement of our node.js app.",
     {"type": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 2}},
     "* This is point 1.\n* This is point 2.", "* It brings language AI to node.js.\n* A demo shows how."),
]


@pytest.mark.parametrize("request_text,constraint,pasted,own", PASTED_EXAMPLES)
def test_a_constraint_met_only_by_pasting_the_instructions_example_fails(request_text, constraint, pasted, own):
    prompt = request_text + "\n\n" + describe_constraint(constraint)
    assert library.check_all(pasted, [constraint]) == [True]  # the reference checker is fooled
    failures = answer_checks.own_text_failures(pasted, [constraint], prompt)
    assert [f["why"] for f in failures] == ["holds only through the instruction's own example, pasted"]
    assert answer_checks.own_text_failures(own, [constraint], prompt) == []
    # without the example in the prompt, the same text is the answer's own
    assert answer_checks.own_text_failures(pasted, [constraint], request_text) == []


def test_word_forms_are_uses_of_a_forbidden_word_but_other_words_are_not():
    ban = [{"type": "keywords:forbidden_words", "kwargs": {"forbidden_words": ["sun"]}}]
    assert answer_checks.own_text_failures("The suns rose over the hills.", ban, "")
    assert answer_checks.own_text_failures("It was a sunday with soft light.", ban, "") == []


# ------------------------------------------------------------------------------------------------
# requested format


def test_math_chosen_without_the_requested_answer_line_is_refuted():
    request = json.loads((ROOT / "data" / "demo" / "math.jsonl").read_text().splitlines()[0])
    messages = request["messages"]
    chosen = "Tom has 3 + 4 = 7 apples, so he has 3 + 4 = 7 apples now."  # from the demo's export
    verdict = check_answer_format(_pair("margin", messages, chosen))
    assert verdict.verdict == REFUTED and verdict.detail["missing"] == ["answer_line"]
    assert check_answer_format(_pair("gt", messages, request["reference_solution"])).verdict == CONFIRMED
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    assert check_answer_format(_pair("margin", chat, "Paris.")).verdict == UNCHECKABLE


# ------------------------------------------------------------------------------------------------
# grounding in a chunk of the standard-library docs


def _textwrap_chunk() -> str:
    doc = render("textwrap")
    start = doc.index("Methods defined here:")
    return doc[start:start + 600]


def test_a_short_to_long_chosen_that_invents_and_contradicts_its_chunk_is_refuted():
    chunk = _textwrap_chunk()
    assert "__init__(self, width=70" in chunk
    question = "What are the parameters of the __init__ method of TextWrapper?"
    # the demo's short-to-long chosen, as the review read it: it invents a __del__ and says
    # __init__ takes no parameters, where its chunk shows __init__(self, width=70, ...)
    chosen = ("The `__init__` method of TextWrapper takes no parameters. TextWrapper also defines a "
              "`__del__` method that frees the wrapped text.")
    found = answer_checks.invented_terms(chosen, chunk + question)
    assert found["identifiers"] == ["__del__"]
    assert any("__init__" in c and "width=70" in c for c in found["contradictions"])
    pair = _pair("short_to_long", [{"role": "user", "content": "long doc\n\n" + question}], chosen,
                 details={"question": question, "chunk": {"text": chunk}})
    assert short_to_long.check_chunk_grounding(pair).verdict == REFUTED
    grounded = ("TextWrapper's __init__ takes keyword arguments such as width (70 by default), "
                "initial_indent and tabsize (8 by default).")
    assert not any(answer_checks.invented_terms(grounded, chunk + question).values())
    good = _pair("short_to_long", pair["prompt"], grounded, details={"question": question, "chunk": {"text": chunk}})
    assert short_to_long.check_chunk_grounding(good).verdict == CONFIRMED


# ------------------------------------------------------------------------------------------------
# code edits: literals the request does not give


def _git(*args) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def test_invented_literals_on_this_repositorys_history():
    # 14524d38 sets a 300.0 s timeout in math_answer.py that its subject does not name: a model
    # given the request could only guess it; named in the request, it is no longer invented
    sha = "14524d38"
    try:
        path = _git("show", "--name-only", "--format=", sha).split()[0]
    except subprocess.CalledProcessError:
        pytest.skip("the repository's history is not here (a shallow clone)")
    before, after = _git("show", f"{sha}^:{path}"), _git("show", f"{sha}:{path}")
    subject = _git("show", "-s", "--format=%s", sha).strip()
    assert answer_checks.invented_literals(before, after, subject) == ["300.0"]
    assert answer_checks.invented_literals(before, after, subject + " (a 300.0 s budget)") == []
    chosen, rejected = f"```python\n{after}\n```", f"```python\n{before}\n```"
    pair = _pair("code_evolution", [{"role": "user", "content": subject}], chosen, rejected,
                 details={"commit": sha, "path": path})
    verdict = code_evolution.check_commit_grounding(pair)
    assert verdict.verdict == REFUTED and verdict.detail["invented_literals"] == ["300.0"]


# ------------------------------------------------------------------------------------------------
# context length, with the SmolLM2 tokenizer


def test_a_side_past_max_pair_tokens_is_refuted(tiny_generator):
    tokens = PairTokens(tiny_generator, limit=200)
    prompt = [{"role": "user", "content": "Reply with the complete updated file."}]
    long_file = (ROOT / "curate" / "audit" / "checks.py").read_text()[:4000]
    over = check_answer_context(_pair("code_evolution", prompt, long_file, "x = 1"), tokens)
    assert over.verdict == REFUTED and over.detail["chosen_tokens"] > 200 >= over.detail["rejected_tokens"]
    fits = check_answer_context(_pair("code_evolution", prompt, "x = 2", "x = 1"), tokens)
    assert fits.verdict == CONFIRMED
    assert check_answer_context(_pair("margin", prompt, "a", "b"), None).verdict == UNCHECKABLE


# ------------------------------------------------------------------------------------------------
# the answer verdict


def test_answer_verdict_over_the_answer_checks():
    row = _demo_row("Describe a city at night")
    math = json.loads((ROOT / "data" / "demo" / "math.jsonl").read_text().splitlines()[0])
    prompts = pl.DataFrame([
        {"prompt_id": "pi", "task": "instruction", "messages": row["messages"],
         "constraints_json": json.dumps(row["constraints"]), "task_fields_json": None, "reference_answer": None},
        {"prompt_id": "pm", "task": "math", "messages": math["messages"], "constraints_json": None,
         "task_fields_json": None, "reference_answer": math["reference_answer"]},
    ])
    pairs = pl.DataFrame([
        {**_pair("margin", row["messages"], "The darkest street has lights.", "dark", prompt_id="pi"),
         "pair_id": "evasion"},
        {**_pair("gt", math["messages"], math["reference_solution"], "The answer is 8.", prompt_id="pm"),
         "pair_id": "reference"},
        {**_pair("margin", math["messages"], "3 + 4 = 7 apples.", "The answer is 8.", prompt_id="pm"),
         "pair_id": "no-answer-line"},
    ])
    scores = pl.DataFrame(schema={"candidate_id": pl.String, "scorer": pl.String, "scorer_version": pl.String,
                                  "score": pl.Float64, "status": pl.String, "detail_json": pl.String,
                                  "created_at": pl.Datetime(time_zone="UTC"), "score_id": pl.String})
    rows = pl.from_arrow(audit_pairs(pairs, prompts, scores, "audit-run"))
    verdicts = dict(overall_verdicts(rows).select("pair_id", "answer_verdict").iter_rows())
    assert verdicts == {"evasion": "refuted", "reference": "confirmed", "no-answer-line": "refuted"}
    overall = dict(overall_verdicts(rows).select("pair_id", "verdict").iter_rows())
    assert overall["evasion"] == overall["no-answer-line"] == "refuted"  # an answer refutation refutes the pair


def test_the_answer_judge_compares_on_the_request_without_its_constraints():
    from curate.audit.checks import stripped_prompt

    row = _demo_row("Write a short note about the sea")
    rewritten = [{"role": "user", "content": row["base_prompt"] + "\n\nAnswer with at least 40 words."}]
    pair = _pair("reversal", rewritten, "the sea is salt and wind.")
    prompt = {"prompt_id": "p", "task": "instruction", "task_fields_json": json.dumps({"base_prompt": row["base_prompt"]})}
    assert stripped_prompt(pair, prompt) == [{"role": "user", "content": "Write a short note about the sea."}]
    # no base_prompt: the prompt as the pair states it
    assert stripped_prompt(pair, {"prompt_id": "p", "task": "instruction", "task_fields_json": None}) == rewritten


def test_curate_audit_checks_pair_length_with_a_tokenizer(tmp_path, curate_cli, tiny_generator):
    from curate.lake import schemas
    from curate.lake.catalog import Lake

    whole_file = (ROOT / "curate" / "audit" / "answer_checks.py").read_text()  # a whole-file commit pair: long
    prompt = [{"role": "user", "content": "Apply this change to `curate/audit/answer_checks.py`: shorten it."}]
    pair = {**_pair("code_evolution", prompt, f"```python\n{whole_file}\n```", "```python\nx = 1\n```",
                    details={"commit": None}), "pair_id": "long-pair"}
    with Lake(tmp_path / "lake") as lake:
        lake.commit({"pairs": schemas.conform("pairs", [pair])})
    done = subprocess.run([*curate_cli, "audit", "--data-dir", str(tmp_path), "--max-pair-tokens", "1000",
                           "--tokenizer", str(tiny_generator)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Lake(tmp_path / "lake", read_only=True) as lake:
        row = lake.query("SELECT verdict, detail_json FROM pair_audits WHERE check_name = 'answer_context'").row(0)
        verdicts = lake.query("SELECT verdict, answer_verdict FROM pair_audit_verdicts").row(0)
    detail = json.loads(row[1])
    assert row[0] == REFUTED and detail["chosen_tokens"] > 1000 >= detail["rejected_tokens"]
    assert verdicts == ("refuted", "refuted")
    bad = subprocess.run([*curate_cli, "audit", "--data-dir", str(tmp_path), "--max-pair-tokens", "10",
                          "--tokenizer", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--tokenizer: no model directory" in bad.stderr


@pytest.mark.parametrize("word, text, used", [
    ("sun", "On a sunny morning, I sip tea.", True),     # the demo's reversal chosen under a ban on "sun"
    ("sun", "It rained all Sunday.", False), ("dark", "the darkness fell", True), ("use", "using it", True),
    ("bed", "a quiet bedroom", False), ("street", "the streetlights", False), ("snow", "a snowy hill", True),
])
def test_word_forms_of_a_forbidden_word(word, text, used):
    ban = [{"type": "keywords:forbidden_words", "kwargs": {"forbidden_words": [word]}}]
    assert bool(answer_checks.own_text_failures(text, ban, "")) == used


def test_a_flag_the_request_names_in_words_is_not_invented():
    # 3fda8c1 "Resume test: the uninterrupted reference run goes without Prefect" adds "--no-prefect":
    # the request says it in words (a reviewer of the demo's export called its refutation false)
    before = '    _run(curate_cli, "run", str(config), "--data-dir", str(tmp_path / "straight"))\n'
    after = '    _run(curate_cli, "run", str(config), "--no-prefect", "--data-dir", str(tmp_path / "straight"))\n'
    request = "Apply this change to `tests/test_cli.py`: Resume test: the uninterrupted reference run goes without Prefect"
    assert answer_checks.invented_literals(before, after, request) == []
    assert answer_checks.invented_literals(before, after, "Resume test: a faster reference run") == ["--no-prefect"]
