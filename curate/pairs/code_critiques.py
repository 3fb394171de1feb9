"""Critic-Evol (docs/methods.md §6.2): a critic revises a model's code; the sandbox says if it got better.

derive: for every original `code` prompt with tests, the candidates with a usable `code_tests`
score are looked at: up to `max_candidates_per_prompt` that fail some test (score < 1; lowest score
first, then smallest id). Each gets a critique prompt: the
parent's messages with the last user message replaced by

    {that message}\n\nHere is a proposed solution:\n```python\n{extract_code(candidate)}\n```\n
    Critique this solution: ... Then write a corrected, complete solution in a single ```python block.

(messages after the last user message are dropped), task "code" with the parent's tests and
entry_point, generation {n: revisions, max_tokens}, note {candidate_id}. The pipeline generates
and scores the revisions like any code candidate (extract_code takes the revision's last python
block).

build: every revision with a usable code_tests score is compared with the critiqued candidate's
(which needs one too): revision > original + min_gain -> property "correctness" (the pairing rule,
curate/pairs/rule.py, then checks the pair as it does every other). A revision whose code equals the original's
(whitespace at the ends aside) never pairs. The pair is on the parent prompt: prompt_id and
messages of the original request, chosen = the revision, rejected = the critiqued candidate.
With pair_text "code" (default) both are their extracted code in a ```python block: the
revision's text is a critique of a solution the original request never showed, so as a reply to
that request only its code fits; pair_text "raw" keeps both texts as generated.
"""

from __future__ import annotations

import json
import math

import polars as pl

from curate.pairs.derive import DerivedPrompt, derived_info, original_prompts
from curate.score import newest_scores
from curate.score.verify.code import extract_code

STRATEGY = "code_evolution"
SCORER = "code_tests"
CRITIQUE_REQUEST = ("Critique this solution: list its bugs and inefficiencies. Then write a corrected, "
                    "complete solution in a single ```python block.")


def critique_message(request: str, candidate_text: str) -> str:
    return (f"{request}\n\nHere is a proposed solution:\n```python\n{extract_code(candidate_text)}\n```\n"
            f"{CRITIQUE_REQUEST}")


def code_scores(scores: pl.DataFrame, candidates: pl.DataFrame) -> dict[str, dict]:
    """candidate_id -> {prompt_id, text, score, tests_passed, tests_total, duration_s}: the newest
    code_tests row per candidate (as rows.usable_scores picks it), when ok with a score and text."""
    latest = (newest_scores(scores.filter(pl.col("scorer") == SCORER))
              .filter((pl.col("status") == "ok") & pl.col("score").is_not_null())
              .select("candidate_id", "score", "detail_json"))
    joined = latest.join(candidates.filter(pl.col("text").is_not_null())
                         .unique("candidate_id", keep="first").select("candidate_id", "prompt_id", "text"),
                         on="candidate_id")
    out = {}
    for row in joined.iter_rows(named=True):
        try:
            detail = json.loads(row["detail_json"] or "{}")
        except ValueError:
            detail = {}
        detail = detail if isinstance(detail, dict) else {}
        duration = detail.get("duration_s")
        duration = float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) \
            and math.isfinite(duration) else None
        out[row["candidate_id"]] = {
            "candidate_id": row["candidate_id"], "prompt_id": row["prompt_id"], "text": row["text"],
            "score": float(row["score"]), "tests_passed": detail.get("tests_passed"),
            "tests_total": detail.get("tests_total"), "duration_s": duration,
        }
    return out


def _last_user(messages: list[dict]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user"), None)


def derive_critiques(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
                     options) -> list[DerivedPrompt]:
    scored = code_scores(scores, candidates)
    by_prompt: dict[str, list[dict]] = {}
    for item in scored.values():
        by_prompt.setdefault(item["prompt_id"], []).append(item)
    originals = original_prompts(prompts).filter(pl.col("task") == "code").sort("prompt_id")
    derived = []
    for row in originals.select("prompt_id", "messages", "task_fields_json").iter_rows(named=True):
        pool = by_prompt.get(row["prompt_id"])
        fields = json.loads(row["task_fields_json"] or "{}")
        tests = fields.get("tests")
        last = _last_user(row["messages"])
        if not pool or not isinstance(tests, str) or not tests.strip() or last is None:
            continue
        failing = sorted((c for c in pool if c["score"] < 1.0), key=lambda c: (c["score"], c["candidate_id"]))
        picked = failing[:options.max_candidates_per_prompt]
        task_fields = {"tests": tests}
        if fields.get("entry_point") is not None:
            task_fields["entry_point"] = fields["entry_point"]
        request = row["messages"][last]["content"]
        for candidate in picked:
            derived.append(DerivedPrompt(
                parent_prompt_id=row["prompt_id"], task="code",
                messages=[*row["messages"][:last],
                          {"role": "user", "content": critique_message(request, candidate["text"])}],
                fields=dict(task_fields),
                generation={"n": options.revisions, "max_tokens": options.max_tokens},
                note={"candidate_id": candidate["candidate_id"]},
            ))
    return derived


def _pair_text(text: str, mode: str) -> str:
    return f"```python\n{extract_code(text).strip(chr(10))}\n```" if mode == "code" else text


def _tests(item: dict) -> str:
    passed, total = item["tests_passed"], item["tests_total"]
    return f"{passed}/{total} tests" if passed is not None and total is not None else f"score {item['score']:.3g}"


def critique_picks(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
                   options) -> list[dict]:
    info = derived_info(prompts).filter(pl.col("strategy") == STRATEGY).sort("prompt_id")
    if info.is_empty():
        return []
    rows = {r["prompt_id"]: r for r in prompts.select("prompt_id", "task", "messages").iter_rows(named=True)}
    scored = code_scores(scores, candidates)
    revisions: dict[str, list[dict]] = {}
    for item in sorted(scored.values(), key=lambda c: c["candidate_id"]):
        revisions.setdefault(item["prompt_id"], []).append(item)
    picks = []
    for critique_id, parent_id, note in info.select("prompt_id", "parent_prompt_id", "note").iter_rows():
        original = scored.get(json.loads(note).get("candidate_id") or "")
        parent = rows.get(parent_id)
        if rows[critique_id]["task"] != "code" or original is None or parent is None:
            continue
        original_code = extract_code(original["text"]).strip()
        for revision in revisions.get(critique_id, []):
            if extract_code(revision["text"]).strip() == original_code:
                continue
            if not revision["score"] > original["score"] + options.min_gain:
                continue
            prop = "correctness"
            reason = (f"critique revision passes {_tests(revision)}, the critiqued original "
                      f"{_tests(original)} ({SCORER}; correctness)")
            picks.append({
                "prompt_id": parent_id, "prompt": parent["messages"],
                "chosen": _pair_text(revision["text"], options.pair_text),
                "rejected": _pair_text(original["text"], options.pair_text),
                "chosen_id": revision["candidate_id"], "rejected_id": original["candidate_id"],
                "scorer": SCORER, "chosen_score": revision["score"], "rejected_score": original["score"],
                "margin": revision["score"] - original["score"], "reason": reason,
                "details_json": json.dumps({
                    "property": prop, "chosen_tests_passed": revision["tests_passed"],
                    "chosen_tests_total": revision["tests_total"], "rejected_tests_passed": original["tests_passed"],
                    "rejected_tests_total": original["tests_total"], "chosen_duration_s": revision["duration_s"],
                    "rejected_duration_s": original["duration_s"], "critique_prompt_id": critique_id}),
            })
    return picks
