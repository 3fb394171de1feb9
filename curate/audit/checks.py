"""Pair audit: every pair re-checked with evidence its strategy did not use.

A pair claims "chosen is better than rejected". Each check below gives one verdict on that claim,
stored as a `pair_audits` row: confirmed, refuted or uncheckable (with the evidence in detail_json).

- hygiene: chosen and rejected differ, chosen is not empty, and the `quality` scorer did not gate
  the chosen (a score of 0). Uncheckable when the chosen has no quality score.
- score_order: chosen scores strictly above rejected on the pair's own scorer, recomputed from the
  lake's current scores (the version the pair names, else the newest row per candidate).
- verifier: the task's verifier (math_verify, constraints, code_tests; code only in the sandbox)
  re-run on both texts. A tie refutes a pair whose evidence is that verifier or a ground truth.
- the strategy's own checks, declared on its record (curate.pairs.strategy.StrategyAudit), which
  also says which shared checks do not apply to its pairs and why: reversal (reversal pairs: the
  chosen follows every rewritten constraint and the rejected fails one, by the constraint library),
  arithmetic (step-wise pairs: every `a op b = c` stated in the correct prefix and the chosen step
  holds, and the rejected step states a false one).
- judge (when one is configured): the pairwise judge in both orders; an order-dependent verdict
  is a tie, and a tie is uncheckable.

Checks of the answer (curate.audit.answer_checks; rows named answer_*): is the chosen a sound answer to the
prompt exactly as the pair states it, whatever the strategy claims?

- answer_verifier: the chosen passes its task's verifier in full on the pair's prompt (math, code);
  instruction prompts are left to the judge (constraints say nothing of the task itself).
- answer_format: a format the prompt asks for in so many words ("after 'The answer is'", a code
  block) is in the chosen.
- answer_own_text: every constraint the prompt states holds by the chosen's own text (not pasted
  URLs or copied prompt text) and own words (no "darkest" under a ban on "dark", no "street" found
  only in "streetlights").
- answer_grounding (declared by the strategies whose pairs have a source): a short-to-long chosen
  invents no identifier, signature or number its chunk lacks; a commit's edit adds no literal that
  neither the request nor the code gives. Uncheckable for other strategies.
- answer_context: prompt + each side fits `max_pair_tokens` in the model's tokenizer.
- answer_judge (with a judge): the pairwise judge in both orders on the task with its constraints
  stripped (the prompt's base_prompt).

Answer verdict: refuted if an answer check refutes, confirmed if answer_verifier or answer_judge
(or a strategy's answer check that confirms, curate.lake.audit_facts.EVIDENCE_KEY) confirms, else
unchecked. An answer check that refutes also refutes the pair.

A pair's verdict over its latest row per check: refuted if any check refutes, confirmed if at least
one INDEPENDENT check (verifier, judge, and the strategies' checks that confirm: reversal,
arithmetic) confirms and none refutes, else
uncheckable. hygiene and score_order are necessary conditions, not evidence that the chosen is
better (score_order re-reads the strategy's own evidence): they can refute a pair, never confirm
it (`overall_verdicts`; the `pair_audit_verdicts`
view says the same in SQL). A tie where the strategy prefers by something else by design (faster
code, a shorter correct solution) is uncheckable, not refuted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

import polars as pl
import pyarrow as pa

from curate import bulk_ids, ids
from curate.audit import answer_checks
from curate.audit.verdicts import CONFIRMED, NO_SOURCE, REFUTED, UNCHECKABLE, Verdict, json_object, prompt_text
from curate.errors import UserError
from curate.lake import schemas
from curate.lake.audit_facts import (
    ANSWER_CONFIRMING,
    ANSWER_PREFIX,
    ANSWER_VERDICTS,
    EVIDENCE_KEY,
    INDEPENDENT_CHECKS,
)
from curate.pairs.registry import STRATEGIES
from curate.pairs.strategy import Strategy, StrategyAudit
from curate.runtime.shards import Done, Pending, Shards, split_frame
from curate.score import ScoreItem, newest_scores
from curate.score.judge import JudgeSettings, PairwiseJudge
from curate.score.kind import ModelOptions, ScorerKind, backend_label
from curate.score.registry import scorer_kind, task_verifiers
from curate.score.verify import constraints as library

AUDIT_VERSION = "1"
_DETAIL_JSON = json.JSONEncoder(sort_keys=True, default=str).encode  # one encoder, not one per row
UNCHECKED = "unchecked"  # the answer verdict's "no evidence either way"
VERDICTS = (CONFIRMED, REFUTED, UNCHECKABLE)
QUALITY_SCORER = "quality"


def declared_audit(pair: dict, strategies: Mapping[str, Strategy] | None = None) -> StrategyAudit:
    """What the pair's strategy declares for the audit (from `strategies`, else this process's
    registry); nothing for a strategy neither knows (pairs a plugin made)."""
    strategy = (strategies if strategies is not None else STRATEGIES).get(pair["strategy"])
    return strategy.audit if strategy is not None else StrategyAudit()


# ----------------------------------------------------------------------------------------------
# scores as the lake holds them now


def latest_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """The newest row per (candidate, scorer, version) and per (candidate, scorer) (version null)."""
    by_version = newest_scores(scores, ("candidate_id", "scorer", "scorer_version"))
    newest = newest_scores(scores, ("candidate_id", "scorer")).with_columns(
        pl.lit(None, dtype=pl.String).alias("scorer_version"))
    return pl.concat([by_version, newest]).select("candidate_id", "scorer", "scorer_version", "score", "status",
                                                  "detail_json")


class ScoreLookup:
    def __init__(self, scores: pl.DataFrame):
        latest = latest_scores(scores)
        self.columns = {name: latest[name].to_list() for name in latest.columns}
        self.position = {key: k for k, key in enumerate(zip(
            self.columns["candidate_id"], self.columns["scorer"], self.columns["scorer_version"]))}

    def get(self, candidate_id: str, scorer: str, version: str | None = None) -> dict | None:
        k = self.position.get((candidate_id, scorer, version))
        return None if k is None else {name: values[k] for name, values in self.columns.items()}


# ----------------------------------------------------------------------------------------------
# the checks


def check_hygiene(pair: dict, lookup: ScoreLookup) -> Verdict:
    chosen, rejected = pair["chosen"] or "", pair["rejected"] or ""
    if not chosen.strip():
        return Verdict("hygiene", REFUTED, {"reason": "the chosen response is empty"})
    if ids.same_text(chosen, rejected):
        return Verdict("hygiene", REFUTED, {"reason": "chosen and rejected are the same text (in Unicode NFC)"})
    quality = lookup.get(pair["chosen_id"], QUALITY_SCORER)
    if quality is None or quality["status"] != "ok" or quality["score"] is None:
        return Verdict("hygiene", UNCHECKABLE, {"reason": "texts differ and chosen is not empty; the chosen has "
                                                          "no quality score"})
    detail = {"quality": quality["score"], "quality_detail": _loads(quality["detail_json"])}
    if quality["score"] <= 0:
        return Verdict("hygiene", REFUTED, {**detail, "reason": "the chosen is gated by the quality scorer"})
    return Verdict("hygiene", CONFIRMED, {**detail, "reason": "texts differ, chosen not empty, not gated"})


def _loads(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _order(check: str, chosen: float, rejected: float, pair: dict, tie_refutes: bool, detail: dict,
           audit: StrategyAudit) -> Verdict:
    detail = {**detail, "chosen": chosen, "rejected": rejected}
    if chosen > rejected:
        return Verdict(check, CONFIRMED, detail)
    if chosen < rejected:
        return Verdict(check, REFUTED, {**detail, "reason": "chosen scores below rejected"})
    if tie_refutes and not audit.tie_by_design(pair):
        return Verdict(check, REFUTED, {**detail, "reason": "a tie: chosen is not better"})
    return Verdict(check, UNCHECKABLE, {**detail, "reason": "a tie: this evidence does not separate them"})


def check_score_order(pair: dict, lookup: ScoreLookup, audit: StrategyAudit | None = None) -> Verdict:
    audit = audit or declared_audit(pair)
    waived = audit.waives(pair).get("score_order")
    if waived:
        return Verdict("score_order", UNCHECKABLE, {"reason": waived})
    scorer = pair["scorer"]
    if not scorer:
        return Verdict("score_order", UNCHECKABLE, {"reason": "the strategy names no scorer"})
    params = json_object(pair, "params_json")
    version = params.get("scorer_version") if params.get("scorer") == scorer else None
    sides = {side: lookup.get(pair[f"{side}_id"], scorer, version) for side in ("chosen", "rejected")}
    missing = [side for side, row in sides.items() if row is None or row["status"] != "ok" or row["score"] is None]
    detail = {"scorer": scorer, "scorer_version": version}
    if missing:
        return Verdict("score_order", UNCHECKABLE, {**detail, "reason": f"no ok {scorer} score for "
                                                                        f"{' and '.join(missing)}"})
    return _order("score_order", sides["chosen"]["score"], sides["rejected"]["score"], pair, True, detail, audit)


def verifier_kinds() -> dict[str, ScorerKind]:
    """task -> the scorer kind that verifies its answers, from this process's registry."""
    return {task: scorer_kind(name) for task, name in task_verifiers().items()}


def rerun_verifiers(pairs: list[dict], prompts: dict[str, dict], strategies: Mapping[str, Strategy] | None = None,
                    verifiers: Mapping[str, ScorerKind] | None = None) -> dict[tuple[str, str], tuple]:
    """(prompt_id, text) -> (score or None, status, detail) from the task's verifier, run once per
    text. `verifiers`: task -> its verifier kind (default: this process's registry)."""
    verifiers = verifier_kinds() if verifiers is None else verifiers
    wanted: dict[str, dict[tuple[str, str], ScoreItem]] = {}
    for pair in pairs:
        prompt = prompts.get(pair["prompt_id"])
        if prompt is None or prompt["task"] not in verifiers or _not_verifiable(pair, prompt,
                                                                                declared_audit(pair, strategies)):
            continue
        for text in (pair["chosen"], pair["rejected"]):
            key = (pair["prompt_id"], text)
            if text is not None and key not in wanted.setdefault(prompt["task"], {}):
                wanted[prompt["task"]][key] = ScoreItem("audit", pair["prompt_id"], prompt["task"],
                                                        prompt["messages"], text, prompt)
    results: dict[tuple[str, str], tuple] = {}
    for task, items in wanted.items():
        try:
            scored = verifiers[task].build_here().score(list(items.values()))
        except UserError as exc:  # e.g. no sandbox here: uncheckable, never unsandboxed
            scored = [None] * len(items)
            failure = str(exc)
        for key, result in zip(items, scored, strict=True):
            results[key] = ((None, "error", {"error": failure}) if result is None
                            else (result.score, result.status, result.detail))
    return results


def _not_verifiable(pair: dict, prompt: dict, audit: StrategyAudit) -> str | None:
    """Why the task's verifier says nothing of this pair (None: it does)."""
    waived = audit.waives(pair).get("verifier")
    if waived:
        return waived
    if prompt["task"] == "instruction" and not prompt.get("constraints_json"):
        return "the prompt states no constraints"
    return None


def check_verifier(pair: dict, prompt: dict | None, verified: dict, audit: StrategyAudit | None = None,
                   verifiers: Mapping[str, str] | None = None) -> Verdict:
    """`verifiers`: task -> the name of its verifier kind (default: this process's registry)."""
    audit = audit or declared_audit(pair)
    if prompt is None:
        return Verdict("verifier", UNCHECKABLE, {"reason": "the pair's prompt is not in the lake"})
    kind = (task_verifiers() if verifiers is None else verifiers).get(prompt["task"])
    if kind is None:
        return Verdict("verifier", UNCHECKABLE, {"reason": f"no verifier for task {prompt['task']}"})
    why = _not_verifiable(pair, prompt, audit)
    if why:
        return Verdict("verifier", UNCHECKABLE, {"verifier": kind, "reason": why})
    chosen = verified.get((pair["prompt_id"], pair["chosen"]))
    rejected = verified.get((pair["prompt_id"], pair["rejected"]))
    detail = {"verifier": kind}
    for side, result in (("chosen", chosen), ("rejected", rejected)):
        if result is None or result[1] != "ok" or result[0] is None:
            reason = (result[2] or {}).get("error") if result else None
            return Verdict("verifier", UNCHECKABLE, {**detail, "reason": f"{kind} could not score the {side}"
                                                                        + (f": {reason}" if reason else "")})
    tie_refutes = pair["scorer"] == kind or audit.ground_truth
    return _order("verifier", chosen[0], rejected[0], pair, tie_refutes, detail, audit)


def judge_verdict(verdict, label: str | None = None) -> Verdict:
    """A PairwiseJudge verdict on (chosen as a, rejected as b) as an audit verdict."""
    detail = {"judge": label, "winner": verdict.winner, "chosen_first": verdict.first_order,
              "rejected_first": verdict.second_order}
    mapped = {"a": CONFIRMED, "b": REFUTED}.get(verdict.winner, UNCHECKABLE)
    if mapped == UNCHECKABLE:
        detail["reason"] = ("the verdict followed the position, not the content"
                            if verdict.winner == "tie" and verdict.first_order != verdict.second_order
                            else f"the judge's verdict: {verdict.winner}")
        detail["raw"] = [replies[-1][:300] for replies in verdict.raw if replies]
    return Verdict("judge", mapped, detail)


def check_judge(pairs: list[dict], judge) -> list[Verdict]:
    verdicts = judge.compare([(p["prompt"], p["chosen"], p["rejected"]) for p in pairs])
    return [judge_verdict(v, getattr(judge, "label", None)) for v in verdicts]


# ----------------------------------------------------------------------------------------------
# checks of the answer (curate.audit.answer_checks): is the chosen a sound answer to the prompt as stated?


def _last_user(messages) -> str:
    users = [m["content"] for m in (messages or []) if m["role"] == "user"]
    return users[-1] if users else ""


def _claimed_constraints(pair: dict, prompt: dict | None, audit: StrategyAudit) -> list[dict] | None:
    """The constraints the pair's prompt states: the strategy's (reversal's rewritten ones), else the prompt's own."""
    if audit.stated_constraints is not None:
        return audit.stated_constraints(pair)
    if prompt is None or prompt.get("task") != "instruction" or not prompt.get("constraints_json"):
        return None
    try:
        constraints = json.loads(prompt["constraints_json"])
    except ValueError:
        return None
    return None if library.constraint_errors(constraints) else constraints


def check_answer_verifier(pair: dict, prompt: dict | None, verified: dict,
                          audit: StrategyAudit | None = None, verifiers: Mapping[str, str] | None = None) -> Verdict:
    """The chosen passes its task's verifier in full on the pair's prompt (a right final answer,
    every test): evidence that it answers the prompt. Constraints say nothing of the task itself,
    so instruction prompts are left to the judge."""
    name = "answer_verifier"
    if prompt is None:
        return Verdict(name, UNCHECKABLE, {"reason": "the pair's prompt is not in the lake"})
    kind = (task_verifiers() if verifiers is None else verifiers).get(prompt["task"])
    waived = (audit or declared_audit(pair)).waives(pair).get(name)
    if kind is None or prompt["task"] == "instruction" or waived:
        why = (waived or ("constraints say nothing of the task itself" if prompt["task"] == "instruction" else
                          f"no verifier for task {prompt['task']}"))
        return Verdict(name, UNCHECKABLE, {"reason": why})
    result = verified.get((pair["prompt_id"], pair["chosen"]))
    if result is None or result[1] != "ok" or result[0] is None:
        return Verdict(name, UNCHECKABLE, {"verifier": kind, "reason": f"{kind} could not score the chosen"})
    if result[0] >= 1.0:
        return Verdict(name, CONFIRMED, {"verifier": kind, "chosen": result[0]})
    return Verdict(name, UNCHECKABLE, {"verifier": kind, "chosen": result[0],
                                       "reason": "the chosen passes only part of the verifier"})


def check_answer_format(pair: dict, audit: StrategyAudit | None = None) -> Verdict:
    name = "answer_format"
    waived = (audit or declared_audit(pair)).waives(pair).get(name)
    if waived:
        return Verdict(name, UNCHECKABLE, {"reason": waived})
    request = _last_user(pair["prompt"])
    asked = answer_checks.requested_formats(request)
    if not asked:
        return Verdict(name, UNCHECKABLE, {"reason": "the prompt asks for no checkable format"})
    missing = answer_checks.requested_format_failures(pair["chosen"] or "", request)
    if missing:
        return Verdict(name, REFUTED, {"asked": asked, "missing": missing,
                                       "reason": "the chosen lacks the format the prompt asks for"})
    return Verdict(name, CONFIRMED, {"asked": asked})


def check_answer_own_text(pair: dict, prompt: dict | None, audit: StrategyAudit | None = None) -> Verdict:
    name = "answer_own_text"
    constraints = _claimed_constraints(pair, prompt, audit or declared_audit(pair))
    if not constraints:
        return Verdict(name, UNCHECKABLE, {"reason": "the pair's prompt states no constraints"})
    failures = answer_checks.own_text_failures(pair["chosen"] or "", constraints, prompt_text(pair["prompt"]))
    if failures:
        return Verdict(name, REFUTED, {"failures": failures, "reason": "the chosen meets a constraint only "
                                                                      "through text or words not its own"})
    return Verdict(name, CONFIRMED, {"constraints": len(constraints)})


@functools.cache
def _tokenizer(model_dir: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_dir)


class PairTokens:
    """Counts a pair side's tokens as a trainer sees them: the prompt and the answer through the
    model's chat template (transformers' tokenizer of a model directory)."""

    def __init__(self, model_dir, limit: int):
        self.tokenizer = _tokenizer(str(model_dir))
        self.limit = limit
        self.label = str(model_dir)

    def __reduce__(self):  # a shard in another process loads the tokenizer there, once
        return PairTokens, (self.label, self.limit)

    def count(self, prompt: list[dict], answer: str) -> int:
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt or []]
        messages.append({"role": "assistant", "content": answer or ""})
        try:
            encoded = self.tokenizer.apply_chat_template(messages, tokenize=True)
        except Exception:  # no chat template: plain text
            encoded = self.tokenizer(prompt_text(messages))
        # transformers 5 returns a BatchEncoding, older versions the ids
        return len(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def check_answer_context(pair: dict, tokens: PairTokens | None) -> Verdict:
    name = "answer_context"
    if tokens is None:
        return Verdict(name, UNCHECKABLE, {"reason": "no tokenizer and limit configured (max_pair_tokens)"})
    counts = {side: tokens.count(pair["prompt"], pair[side]) for side in ("chosen", "rejected")}
    detail = {"chosen_tokens": counts["chosen"], "rejected_tokens": counts["rejected"],
              "max_pair_tokens": tokens.limit}
    over = [side for side, count in counts.items() if count > tokens.limit]
    if over:
        return Verdict(name, REFUTED, {**detail, "reason": f"prompt + {' and '.join(over)} exceed max_pair_tokens: "
                                                           "a trainer's truncation can erase the contrast"})
    return Verdict(name, CONFIRMED, detail)


def stripped_prompt(pair: dict, prompt: dict | None) -> list[dict]:
    """The pair's prompt with its constraints left out where the prompt row has a `base_prompt`
    (the request alone): what the judge compares answers on at the answer level."""
    messages = [{"role": m["role"], "content": m["content"]} for m in pair["prompt"] or []]
    base = None
    if prompt is not None and prompt.get("task_fields_json"):
        try:
            base = json.loads(prompt["task_fields_json"]).get("base_prompt")
        except (ValueError, AttributeError):
            base = None
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if isinstance(base, str) and base.strip() and users:
        messages[users[-1]] = {"role": "user", "content": base}
    return messages


def check_answer_judge(pairs: list[dict], prompts: dict[str, dict], judge, judged: list) -> list[Verdict]:
    """The pairwise judge in both orders on the task with constraints stripped; where stripping
    changes nothing, the claim-level judge's verdict (`judged`) is the same comparison."""
    stripped = [stripped_prompt(p, prompts.get(p["prompt_id"])) for p in pairs]
    todo = [i for i, (p, s) in enumerate(zip(pairs, stripped, strict=True)) if s != p["prompt"]]
    fresh = judge.compare([(stripped[i], pairs[i]["chosen"], pairs[i]["rejected"]) for i in todo]) if todo else []
    verdicts = [dataclasses.replace(v, check="answer_judge") if v is not None else None for v in judged]
    for i, verdict in zip(todo, fresh, strict=True):
        v = judge_verdict(verdict, getattr(judge, "label", None))
        verdicts[i] = Verdict("answer_judge", v.verdict, {**v.detail, "constraints_stripped": True})
    return verdicts


# ----------------------------------------------------------------------------------------------
# running it


def audit_pairs(pairs: pl.DataFrame, prompts: pl.DataFrame, scores: pl.DataFrame, run_id: str,
                judge=None, tokens: PairTokens | None = None, strategies: Mapping[str, Strategy] | None = None,
                verifiers: Mapping[str, ScorerKind] | None = None) -> pa.Table:
    """`pair_audits` rows for every pair (see the module doc for the checks), claim and answer.
    `strategies`: the pairs' strategies by name (None: this process's registry; a shard in another
    process is given them, so a strategy registered at run time is audited there by its own checks)."""
    now = datetime.now(timezone.utc)
    rows = pairs.to_dicts()
    prompt_rows = {p["prompt_id"]: p for p in prompts.to_dicts()}
    lookup = ScoreLookup(scores)
    verifiers = verifier_kinds() if verifiers is None else verifiers
    names = {task: kind.name for task, kind in verifiers.items()}
    verified = rerun_verifiers(rows, prompt_rows, strategies, verifiers)
    judged = check_judge(rows, judge) if judge is not None and rows else [None] * len(rows)
    answer_judged = (check_answer_judge(rows, prompt_rows, judge, judged) if judge is not None and rows
                     else [None] * len(rows))
    out = []
    for pair, by_judge, answer_judge in zip(rows, judged, answer_judged, strict=True):
        prompt = prompt_rows.get(pair["prompt_id"])
        audit = declared_audit(pair, strategies)
        claim = [check_hygiene(pair, lookup), check_score_order(pair, lookup, audit),
                 check_verifier(pair, prompt, verified, audit, names)]
        answer = [check_answer_verifier(pair, prompt, verified, audit, names), check_answer_format(pair, audit),
                  check_answer_own_text(pair, prompt, audit),
                  Verdict("answer_grounding", UNCHECKABLE, {"reason": NO_SOURCE}),
                  check_answer_context(pair, tokens)]
        for declared in audit.checks:  # the strategy's own: beside the shared ones, or instead of one of the same name
            verdicts = answer if declared.name.startswith(ANSWER_PREFIX) else claim
            verdict = declared.check(pair, prompt)
            if declared.confirms and declared.name not in (*INDEPENDENT_CHECKS, *ANSWER_CONFIRMING):
                verdict = dataclasses.replace(verdict, detail={**verdict.detail, EVIDENCE_KEY: True})
            same = [k for k, v in enumerate(verdicts) if v.check == declared.name]
            if same:
                verdicts[same[0]] = verdict
            else:
                verdicts.append(verdict)
        verdicts = [*claim, *([by_judge] if by_judge is not None else []),
                    *answer, *([answer_judge] if answer_judge is not None else [])]
        out.extend(_row(pair["pair_id"], v, run_id, now) for v in verdicts)
    return schemas.conform("pair_audits", _with_audit_ids(out))


def _row(pair_id: str, verdict: Verdict, run_id: str, now: datetime) -> dict:
    return {"audit_id": None,  # filled in bulk (_with_audit_ids)
            "pair_id": pair_id, "check_name": verdict.check, "verdict": verdict.verdict,
            "detail_json": _DETAIL_JSON(verdict.detail),
            "audit_version": AUDIT_VERSION, "run_id": run_id, "created_at": now}


def _with_audit_ids(rows: list[dict]) -> list[dict]:
    """Each row's audit_id: ids.content_hash("audit", pair_id, check, version, verdict, detail)."""
    return bulk_ids.fill_ids(rows, "audit_id", lambda pair, check, verdict, detail: bulk_ids.content_hashes(
        "audit", pair, check, AUDIT_VERSION, verdict, detail), ("pair_id", "check_name", "verdict", "detail_json"))


def overall_verdicts(audits: pl.DataFrame) -> pl.DataFrame:
    """pair_id, verdict, answer_verdict: over each pair's latest row per check (the
    pair_audit_verdicts view; curate.lake.audit_facts states the rules)."""
    latest = (audits.sort(["created_at", "audit_id"], descending=True)
              .unique(["pair_id", "check_name"], keep="first"))
    answer = pl.col("check_name").str.starts_with(ANSWER_PREFIX)
    evidence = (pl.col("detail_json").str.json_path_match(f"$.{EVIDENCE_KEY}") == "true").fill_null(False)
    confirmed = pl.col("verdict") == CONFIRMED
    return (latest.group_by("pair_id").agg(
        (pl.col("verdict") == REFUTED).any().alias("_refuted"),
        (confirmed & (pl.col("check_name").is_in(INDEPENDENT_CHECKS) | (evidence & ~answer))).any().alias("_ok"),
        ((pl.col("verdict") == REFUTED) & answer).any().alias("_answer_refuted"),
        (confirmed & (pl.col("check_name").is_in(ANSWER_CONFIRMING) | (evidence & answer))).any().alias("_answer_ok"))
        .select("pair_id", pl.when("_refuted").then(pl.lit(REFUTED)).when("_ok").then(pl.lit(CONFIRMED))
                .otherwise(pl.lit(UNCHECKABLE)).alias("verdict"),
                pl.when("_answer_refuted").then(pl.lit(REFUTED)).when("_answer_ok").then(pl.lit(CONFIRMED))
                .otherwise(pl.lit(UNCHECKED)).alias("answer_verdict")).sort("pair_id"))


def with_verdicts(pairs: pl.DataFrame, audits: pl.DataFrame | None) -> pl.DataFrame:
    """The pairs with `audit_verdict` and `answer_verdict` columns (null: not audited)."""
    pairs = pairs.drop("audit_verdict", "answer_verdict", strict=False)
    if audits is None or audits.is_empty():
        return pairs.with_columns(pl.lit(None, dtype=pl.String).alias("audit_verdict"),
                                  pl.lit(None, dtype=pl.String).alias("answer_verdict"))
    verdicts = overall_verdicts(audits).rename({"verdict": "audit_verdict"})
    return pairs.join(verdicts, on="pair_id", how="left")


def audit_summary(pairs: pl.DataFrame, audits: pl.DataFrame | None) -> pl.DataFrame:
    """Per strategy: pairs, confirmed, refuted, uncheckable, unaudited, and the answer-level
    answer_confirmed, answer_refuted, answer_unchecked (the pair_audit_summary view)."""
    judged = pairs if "audit_verdict" in pairs.columns else with_verdicts(pairs, audits)
    if "answer_verdict" not in judged.columns:
        judged = judged.with_columns(pl.lit(None, dtype=pl.String).alias("answer_verdict"))
    audited = pl.col("audit_verdict").is_not_null()
    return (judged.group_by("strategy").agg(
        pl.len().cast(pl.Int64).alias("pairs"),
        *[(pl.col("audit_verdict") == v).sum().cast(pl.Int64).alias(v) for v in VERDICTS],
        pl.col("audit_verdict").is_null().sum().cast(pl.Int64).alias("unaudited"),
        *[(audited & (pl.col("answer_verdict").fill_null(UNCHECKED) == v)).sum().cast(pl.Int64).alias(f"answer_{v}")
          for v in ANSWER_VERDICTS])
        .sort("strategy"))


AUDIT_CHUNK_PAIRS = 20_000  # pairs read, checked and committed at a time (each chunk reads prompts and scores)


def audit_lake(lake, run_id: str, judge=None, only_unaudited: bool = False, tokens: PairTokens | None = None) -> dict:
    """Audit the lake's pairs (only those with no row of this audit version, when asked) and
    commit the rows, AUDIT_CHUNK_PAIRS pairs at a time; returns {"audited", "rows_new", "summary"}
    (summary: the pair_audit_summary view, over every pair). Most pairs have audit rows already, so
    pair_audit_facts is rebuilt once at the end rather than rewritten chunk by chunk: until then
    (and if the call is stopped, until the next one ends) the views show the verdicts before it."""
    todo = lake.pair_ids_to_audit(AUDIT_VERSION if only_unaudited else None)
    return _audit(lake, todo, run_id, judge, whole_lake=True, tokens=tokens)


def audit_run(lake, run_id: str, judge=None, tokens: PairTokens | None = None, shards: Shards | None = None) -> dict:
    """A run's audit: the pairs of this run and of runs that stopped before their end (interrupted or
    failed: their pairs stay theirs when a later run finds them stored) that have no audit yet. It
    reads no other pair, so it costs the same whatever the lake holds; `curate audit` re-audits the
    whole lake (after a new audit version, or for pairs committed outside a run)."""
    runs = lake.run_and_stopped_runs(run_id)
    todo = lake.unaudited_pair_ids_of(runs)
    return _audit(lake, todo, run_id, judge, runs=runs, tokens=tokens, shards=shards)


def _audit(lake, todo: pl.Series, run_id: str, judge, whole_lake: bool = False,
           runs: list[str] | None = None, tokens: PairTokens | None = None, shards: Shards | None = None) -> dict:
    added = 0
    pair_ids = todo.to_list()
    chunks = [position // AUDIT_CHUNK_PAIRS for position in range(len(pair_ids))]
    with contextlib.ExitStack() as stack:  # each table read from the lake once, then chunk by chunk
        pairs_of = stack.enter_context(lake.grouped_copy("pairs", "pair_id", pair_ids, chunks, runs=runs))
        sides = pl.concat([pairs_of(chunk, ("prompt_id", "chosen_id", "rejected_id")).with_columns(_chunk=pl.lit(chunk))
                           for chunk in range(chunks[-1] + 1)]) if pair_ids else None
        prompts_of = scores_of = None
        if sides is not None:
            prompt_keys = sides.select("prompt_id", "_chunk").unique()
            candidate_keys = pl.concat([sides.select(pl.col(side).alias("candidate_id"), "_chunk")
                                        for side in ("chosen_id", "rejected_id")]).unique()
            prompts_of = stack.enter_context(lake.grouped_copy(
                "prompts", "prompt_id", prompt_keys["prompt_id"].to_list(), prompt_keys["_chunk"].to_list()))
            scores_of = stack.enter_context(lake.grouped_copy(
                "scores", "candidate_id", candidate_keys["candidate_id"].to_list(), candidate_keys["_chunk"].to_list()))
        deferred = ("pair_audits",) if whole_lake else ()  # rebuilt once at the end
        previous = None  # a chunk's checks run in the shards while the chunk before it is committed
        for chunk in range(chunks[-1] + 1 if pair_ids else 0):
            started = _start_chunk(pairs_of(chunk), prompts_of(chunk), scores_of(chunk), run_id, judge, tokens, shards)
            if previous is not None:
                added += _commit(lake, previous, deferred)
            previous = started
        if previous is not None:
            added += _commit(lake, previous, deferred)
    if whole_lake and added:
        lake.rebuild_audit_facts()
    summary = lake.audit_summary()
    return {"audited": todo.len(), "rows_new": added, "summary": summary}


def _commit(lake, checked: Pending, deferred: tuple[str, ...]) -> int:
    return lake.commit({"pair_audits": pa.concat_tables(checked.results())}, deferred_facts=deferred)["pair_audits"]


def _start_chunk(pairs: pl.DataFrame, prompts: pl.DataFrame, scores: pl.DataFrame, run_id: str, judge,
                 tokens: PairTokens | None, shards: Shards | None) -> Pending:
    """A chunk's checks, its pairs split by prompt over the shards (started, not awaited); in this
    process, in one call, when a judge (a model of this process) checks them, the shards run here
    or the chunk is small."""
    if judge is not None or shards is None or not shards.spreads(pairs.height):
        return Done([audit_pairs(pairs, prompts, scores, run_id, judge, tokens)])
    calls, verifiers = [], verifier_kinds()  # sent, not looked up there: a plugin's verifier too
    for part in split_frame(pairs, "prompt_id", shards.count):
        sides = pl.concat([part["chosen_id"], part["rejected_id"]]).implode()
        strategies = {name: STRATEGIES[name] for name in part["strategy"].unique().to_list() if name in STRATEGIES}
        calls.append((part, prompts.filter(pl.col("prompt_id").is_in(part["prompt_id"].implode())),
                      scores.filter(pl.col("candidate_id").is_in(sides)), run_id, None, tokens, strategies,
                      verifiers))
    return shards.start(audit_pairs, calls)


def read_audits(lake) -> pl.DataFrame | None:
    """The lake's pair_audits rows; None for a lake written before the audit existed."""
    if "pair_audits" not in lake.table_names():
        return None
    return lake.read("pair_audits")


def audit_judge(audit_config, scoring_backend: Callable):
    """The PairwiseJudge of a run config's [audit] (None without `judge`); `scoring_backend(spec)`
    gives the model's backend (curate.runtime.engines.Engines.scoring_backend: a generator's own engine
    when the judge names one)."""
    if audit_config is None or not audit_config.judge:
        return None
    backend = scoring_backend(ModelOptions(kind="judge", model=audit_config.judge))
    settings = JudgeSettings(max_tokens=audit_config.judge_max_tokens, max_retries=audit_config.judge_max_retries,
                             reply_prefix=audit_config.judge_reply_prefix)
    return PairwiseJudge(backend, settings, label=backend_label(backend))
