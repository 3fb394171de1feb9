"""Constraint reversal, RPO (docs/methods.md §2): make the best candidate perfect by rewriting the prompt.

For every `instruction` prompt (with `constraints_json`), every constraint is checked on every
candidate with text, using the constraint library (curate.score.verify.constraints).

* Chosen: the candidate that follows the most constraints. Ties: the higher `quality_scorer`
  score when one is configured (candidates without that score rank after scored ones), then the
  smallest candidate id.
* Every constraint the chosen fails is replaced by its reverse (`reverse_constraint`), so the
  chosen follows every constraint of the rewritten list by construction (re-checked here; a
  prompt where that re-check fails gives no pair). If a failed constraint has no reverse, the
  prompt gives no pair.
* If the chosen fails nothing there is nothing to reverse: no pair (the margin strategy pairs it
  on the same evidence), counted as `reversal_unchanged`.
* The rewritten prompt states the rewritten constraints *instead of* the original ones, so the
  prompt needs a `base_prompt` (the request without its constraint sentences): without one the
  original, contradicting sentences would stay in it, and the prompt gives no pair (counted as
  `reversal_no_base_prompt`).
* Rejected: another candidate failing at least one constraint of the rewritten list, preferring
  the one that fails the most (ties: smallest candidate id). None: no pair.

The pair's prompt is the rewritten instruction: the last user message becomes `base_prompt` + a
blank line + one `describe_constraint()` sentence per rewritten constraint. Earlier (and later)
messages are kept.

Scores are fractions of the rewritten constraints followed (scorer "constraints"): chosen_score is
1.0, margin = (followed by chosen - followed by rejected) / number of constraints. details_json:
original_constraints, rewritten_constraints, reversed_indices, chosen_followed (rewritten
constraints the chosen follows, i.e. all of them), chosen_followed_original (original constraints
it follows), rejected_failed (rewritten constraints the rejected fails), rewrite ("base_prompt").

The pairing rule (curate/pairs/rule.py) holds: the chosen is never gated by the quality scorer,
and where the constraints scorer scored the prompt's candidates, both sides need an ok score
from it (a candidate it failed on takes no part). Rewritten-constraint scores are the evidence:
1.0 for the chosen, strictly below for the rejected.

Config: quality_scorer (scorer name for tie-breaks, default none), quality_scorer_version,
gated_rejected (default false; true: a candidate gated by the quality scorer may be the rejected).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from curate.audit.verdicts import CONFIRMED, REFUTED, UNCHECKABLE, Verdict, pair_details
from curate.options import non_empty, option, options_dict
from curate.pairs import rule
from curate.pairs.rows import PICK_SCHEMA, empty_pairs, finish_pairs, usable_scores
from curate.pairs.strategy import AuditCheck, Strategy, StrategyAudit
from curate.score.verify import constraints as library  # called through the module: patchable

SCORER = "constraints"
REQUIREMENTS_HEADER = "Requirements (these replace any conflicting ones above):"


@dataclass(frozen=True)
class ReversalOptions:
    quality_scorer: str | None = option(None, help="breaks ties between equally compliant candidates: higher first")
    quality_scorer_version: str | None = option(None, help="quality_scorer's version")
    gated_rejected: bool = option(False, help="a candidate gated by the quality scorer may be the rejected (off: too easy a negative)")

    def __post_init__(self) -> None:
        non_empty(self, "quality_scorer", "quality_scorer_version")
        if self.quality_scorer_version is not None and self.quality_scorer is None:
            raise ValueError("quality_scorer_version needs quality_scorer")


def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, options: ReversalOptions,
          run_id: str = "") -> pl.DataFrame:
    instruction = prompts.filter((pl.col("task") == "instruction") & pl.col("constraints_json").is_not_null())
    texts = (candidates.filter(pl.col("text").is_not_null())
             .join(instruction.select("prompt_id"), on="prompt_id", how="semi")
             .select("candidate_id", "prompt_id", "text").unique("candidate_id", keep="first"))
    if options.quality_scorer:
        quality = usable_scores(scores, candidates, options.quality_scorer, options.quality_scorer_version)
        texts = texts.join(quality.select("candidate_id", pl.col("score").alias("quality")),
                           on="candidate_id", how="left")
    else:
        texts = texts.with_columns(pl.lit(None, dtype=pl.Float64).alias("quality"))
    facts = rule.candidate_facts(prompts, candidates, scores)
    texts = texts.with_columns(
        pl.col("candidate_id").is_in(rule.eligible(facts, "chosen").implode()).alias("can_choose"),
        pl.col("candidate_id").is_in(rule.eligible(facts, "rejected", options.gated_rejected).implode())
        .alias("can_reject"))
    grouped = (texts.sort("candidate_id").group_by("prompt_id", maintain_order=True)
               .agg("candidate_id", "text", "quality", "can_choose", "can_reject"))
    rows = instruction.select("prompt_id", "messages", "constraints_json", "task_fields_json").join(
        grouped, on="prompt_id")
    picks = [pick for row in rows.iter_rows(named=True) if (pick := _pair_for_prompt(row)) is not None]
    if not picks:
        return empty_pairs()
    picks = pl.DataFrame(picks, schema={**PICK_SCHEMA, "chosen_verifier_on_pair_prompt": pl.Float64,
                                        "rejected_verifier_on_pair_prompt": pl.Float64})
    picks = rule.enforce(picks, facts, gated_rejected=options.gated_rejected)
    if picks.is_empty():
        return empty_pairs()
    return finish_pairs(picks, "reversal", options_dict(options), run_id)


def _load_constraints(constraints_json: str) -> list[dict] | None:
    try:
        constraints = json.loads(constraints_json)
    except (TypeError, ValueError):
        return None
    return None if library.constraint_errors(constraints) else constraints


def _pair_for_prompt(row: dict) -> dict | None:
    constraints = _load_constraints(row["constraints_json"])
    ids, texts, quality = row["candidate_id"], row["text"], row["quality"]
    choosable = [i for i, ok in enumerate(row["can_choose"]) if ok]
    if constraints is None or len(ids) < 2 or not choosable:
        return None
    n = len(constraints)
    followed = [library.check_all(text, constraints) for text in texts]
    chosen = min(choosable, key=lambda i: (-sum(followed[i]), quality[i] is None,
                                           -(quality[i] or 0.0), ids[i]))
    failed = [j for j, ok in enumerate(followed[chosen]) if not ok]
    if not failed:  # nothing to reverse: the margin strategy's pair on the same evidence
        rule.refuse("reversal_unchanged")
        return None
    if _base_prompt(row["task_fields_json"]) is None:
        rule.refuse("reversal_no_base_prompt")
        return None
    rewritten = [dict(c) for c in constraints]
    for j in failed:
        reverse = library.reverse_constraint(constraints[j])
        if reverse is None:  # never reversed: the chosen cannot be made perfect
            return None
        rewritten[j] = reverse
    # by construction the chosen follows every reversed constraint; trust, but check
    if not all(library.check_constraint(texts[chosen], rewritten[j]) for j in failed):
        return None
    failed_set = set(failed)
    fails_rewritten = {}
    for i in range(len(ids)):
        if i == chosen or not row["can_reject"][i]:
            continue
        fails_rewritten[i] = sum(
            not (library.check_constraint(texts[i], rewritten[j]) if j in failed_set else followed[i][j])
            for j in range(n))
    candidates = [i for i, fails in fails_rewritten.items() if fails > 0]
    if not candidates:
        return None
    rejected = min(candidates, key=lambda i: (-fails_rewritten[i], ids[i]))
    messages, rewrite = rewrite_instruction(row["messages"], rewritten, row["task_fields_json"])
    if messages is None:
        return None
    rejected_failed = fails_rewritten[rejected]
    rejected_followed = n - rejected_failed
    reason = (f"constraint reversal: reversed {len(failed)} of {n} constraints the chosen failed "
              f"(indices {failed}); chosen follows all {n} rewritten constraints, rejected fails "
              f"{rejected_failed}")
    details = {
        "original_constraints": constraints, "rewritten_constraints": rewritten, "reversed_indices": failed,
        "chosen_followed": n, "chosen_followed_original": n - len(failed),
        "rejected_failed": rejected_failed, "rewrite": rewrite,
    }
    return {
        "prompt_id": row["prompt_id"], "prompt": messages, "chosen": texts[chosen], "rejected": texts[rejected],
        "chosen_id": ids[chosen], "rejected_id": ids[rejected], "scorer": SCORER, "chosen_score": 1.0,
        "rejected_score": rejected_followed / n, "margin": (n - rejected_followed) / n, "reason": reason,
        "details_json": json.dumps(details, sort_keys=True),
        "chosen_verifier_on_pair_prompt": 1.0, "rejected_verifier_on_pair_prompt": rejected_followed / n,
    }


def _base_prompt(task_fields_json: str | None) -> str | None:
    if not task_fields_json:
        return None
    try:
        fields = json.loads(task_fields_json)
    except ValueError:
        return None
    base = fields.get("base_prompt") if isinstance(fields, dict) else None
    return base if isinstance(base, str) and base.strip() else None


def rewrite_instruction(messages: list[dict], rewritten: list[dict],
                        task_fields_json: str | None) -> tuple[list[dict] | None, str]:
    """The prompt stating `rewritten` in its last user message, and how it was written
    ("base_prompt" or "appended"); None when the prompt has no user message."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        return None, "appended"
    last = users[-1]
    descriptions = [library.describe_constraint(c) for c in rewritten]
    base = _base_prompt(task_fields_json)
    if base is not None:
        content, how = base + "\n\n" + "\n".join(descriptions), "base_prompt"
    else:
        content = (messages[last]["content"] + "\n\n" + REQUIREMENTS_HEADER + "\n"
                   + "\n".join(f"- {d}" for d in descriptions))
        how = "appended"
    out = [{"role": m["role"], "content": m["content"]} for m in messages]
    out[last] = {"role": "user", "content": content}
    return out, how


# the audit ------------------------------------------------------------------------------------

def check_reversal(pair: dict, prompt: dict | None = None) -> Verdict:
    """The chosen follows every rewritten constraint and the rejected fails one, by the constraint library."""
    rewritten = pair_details(pair).get("rewritten_constraints")
    if not isinstance(rewritten, list) or not rewritten or library.constraint_errors(rewritten):
        return Verdict("reversal", UNCHECKABLE, {"reason": "no valid rewritten constraints in details_json"})
    chosen = library.check_all(pair["chosen"], rewritten)
    rejected = library.check_all(pair["rejected"], rewritten)
    chosen_fails = [c["type"] for c, ok in zip(rewritten, chosen) if not ok]
    rejected_fails = [c["type"] for c, ok in zip(rewritten, rejected) if not ok]
    detail = {"chosen_fails": chosen_fails, "rejected_fails": rejected_fails}
    if chosen_fails:
        return Verdict("reversal", REFUTED, {**detail, "reason": "the chosen fails a rewritten constraint"})
    if not rejected_fails:
        return Verdict("reversal", REFUTED, {**detail, "reason": "the rejected follows every rewritten constraint"})
    return Verdict("reversal", CONFIRMED, detail)


def rewritten_constraints(pair: dict) -> list | None:
    """The constraints a reversal pair's prompt states: the rewritten ones (None when not valid)."""
    rewritten = pair_details(pair).get("rewritten_constraints")
    return rewritten if isinstance(rewritten, list) and not library.constraint_errors(rewritten) else None


_WAIVED = {"score_order": "scored on the rewritten constraints: see the reversal check",
           "verifier": "see the reversal check"}

STRATEGY = Strategy("reversal", ReversalOptions, build, per_prompt=lambda options: True, audit=StrategyAudit(
    checks=(AuditCheck("reversal", check_reversal, confirms=True),),
    waives=lambda pair: _WAIVED, stated_constraints=rewritten_constraints))
