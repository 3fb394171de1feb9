"""The pairing rule, one place for every strategy: a pair exists only when its chosen strictly beats
its rejected on the evidence the strategy names.

- Evidence: the pick's `chosen_score` and `rejected_score` (the strategy's scorer, or whatever
  number it names). Both must be known and chosen_score > rejected_score: ties, unscored
  candidates and failed (non-ok) scores never pair. A strategy whose evidence is not a number
  (a commit: the file after its change over before it) says so with `scored=False`; then only the
  checks below apply.
- Verifier: where the prompt's task has one (math -> math_verify, instruction -> constraints,
  code -> code_tests) and it scored any candidate of the prompt, a rejected *generation* must have
  an ok score from it, strictly below the chosen's (an ok score of the chosen generation, or 1.0
  for a reference solution). Sides that are no generation (a reference, a commit's file, a step
  of a solution) are not held to it as rejected.
- Quality: a candidate gated by the `quality` scorer (curate/score/quality.py: score 0) is never a
  chosen; as a rejected it is allowed unless the strategy's `gated_rejected` option is false.
  Where a candidate has no quality row yet (a lake from before the scorer), its gates are
  computed here from its text and finish_reason, the same code.
- Chosen and rejected differ (ids and text, outer whitespace aside).

Strategies call `candidate_facts` once to keep ineligible candidates out of their pools and
`enforce` on their picks as the last word: `enforce` drops what breaks the rule and counts each
refusal by reason into the `counting()` block the pipeline opens around a build.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import Counter

import polars as pl

from curate.score.quality import NAME as QUALITY
from curate.score.quality import quality_gates
from curate.score.registry import task_verifiers, verifier_names

REFERENCE_ID = "reference"  # gt's chosen_id for a prompt's reference solution: verifier score 1.0
REASONS = {
    "identical": "chosen and rejected are the same candidate or text",
    "unscored": "a side has no ok score on the strategy's evidence (unscored or failed)",
    "tie": "chosen does not strictly beat rejected on the strategy's evidence",
    "gated_chosen": "the chosen is gated by the quality scorer",
    "gated_rejected": "the rejected is gated by the quality scorer (gated_rejected = false)",
    "rejected_unverified": "the task's verifier has no ok score for the rejected generation",
    "chosen_unverified": "the task's verifier has no ok score for the chosen",
    "verifier_not_below": "the task's verifier does not score the rejected strictly below the chosen",
}

_COUNTS: contextvars.ContextVar[Counter | None] = contextvars.ContextVar("pair_rule_counts", default=None)


@contextlib.contextmanager
def counting():
    """Collect `enforce`'s refusals (reason -> pairs refused) made inside the block."""
    counts: Counter = Counter()
    token = _COUNTS.set(counts)
    try:
        yield counts
    finally:
        _COUNTS.reset(token)


def _record(reason: str, count: int) -> None:
    counts = _COUNTS.get()
    if counts is not None and count:
        counts[reason] += count


def _latest(scores: pl.DataFrame, scorer: str, version: str | None = None) -> pl.DataFrame:
    """The newest row of `scorer` (of `version`, when given) per candidate, whatever its status:
    candidate_id, status, score."""
    rows = scores.filter(pl.col("scorer") == scorer)
    if version is not None:
        rows = rows.filter(pl.col("scorer_version") == version)
    return (rows
            .sort(["created_at", "score_id"], descending=True).unique("candidate_id", keep="first")
            .select("candidate_id", "status", "score"))


def candidate_facts(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
                    versions: dict[str, str] | None = None) -> pl.DataFrame:
    """Per candidate with text: candidate_id, prompt_id, gated (bool), verifier (the task's, when it
    scored a candidate of this prompt, else null), verifier_ok (bool), verifier_score. A verifier
    counts with its newest row per candidate, or with the version `versions` names for it."""
    versions = versions or {}
    pool = (candidates.filter(pl.col("text").is_not_null()).unique("candidate_id", keep="first")
            .select("candidate_id", "prompt_id", "text", "finish_reason")
            .join(prompts.select("prompt_id", "task"), on="prompt_id", how="left"))
    quality = _latest(scores, QUALITY).filter(pl.col("status") == "ok").select(
        "candidate_id", (pl.col("score") <= 0).alias("stored_gated"))
    pool = pool.join(quality, on="candidate_id", how="left")
    unknown = pool.filter(pl.col("stored_gated").is_null())  # no quality row: run the gates here
    if unknown.height:
        computed = [bool(quality_gates(text, finish)) for text, finish in unknown.select("text", "finish_reason").iter_rows()]
        pool = pool.join(unknown.select("candidate_id", pl.Series("_computed", computed, dtype=pl.Boolean)),
                         on="candidate_id", how="left", maintain_order="left")
    else:
        pool = pool.with_columns(pl.lit(None, pl.Boolean).alias("_computed"))
    pool = pool.with_columns(pl.coalesce("stored_gated", "_computed").alias("gated")).drop("_computed")
    verdicts = [_latest(scores, name, versions.get(name)).with_columns(pl.lit(name).alias("verifier"))
                for name in sorted(verifier_names())]
    verdicts = pl.concat(verdicts).join(candidates.select("candidate_id", "prompt_id").unique("candidate_id"),
                                        on="candidate_id")
    present = verdicts.select("prompt_id", "verifier").unique()
    pool = pool.with_columns(pl.col("task").replace_strict(task_verifiers(), default=None,
                                                           return_dtype=pl.Utf8).alias("verifier"))
    pool = (pool.join(present.with_columns(pl.lit(True).alias("_present")), on=["prompt_id", "verifier"], how="left")
            .with_columns(pl.when(pl.col("_present")).then(pl.col("verifier")).alias("verifier"))
            .join(verdicts.select("candidate_id", "verifier", pl.col("status").alias("_status"),
                                  pl.col("score").alias("verifier_score")),
                  on=["candidate_id", "verifier"], how="left"))
    ok = (pl.col("_status") == "ok") & pl.col("verifier_score").is_not_null()
    return pool.select("candidate_id", "prompt_id", "gated", "verifier", ok.fill_null(False).alias("verifier_ok"),
                       pl.when(ok).then(pl.col("verifier_score")).alias("verifier_score"))


def eligible(facts: pl.DataFrame, side: str, gated_rejected: bool = True) -> pl.Series:
    """The candidate ids that may stand as `side` ("chosen" or "rejected") at all: not gated (a
    rejected only with gated_rejected false), and verifier-scored ok where the task has one."""
    keep = pl.col("verifier").is_null() | pl.col("verifier_ok")
    if side == "chosen" or not gated_rejected:
        keep = keep & ~pl.col("gated")
    return facts.filter(keep)["candidate_id"]


def enforce(picks: pl.DataFrame, facts: pl.DataFrame, *, gated_rejected: bool = True,
            scored: bool = True) -> pl.DataFrame:
    """`picks` (chosen_id, rejected_id, chosen, rejected, chosen_score, rejected_score, ...) less
    every pick that breaks the rule; each refusal is counted under its first failing reason.
    A strategy that re-ran the task's verifier on the pair's own prompt (reversal rewrites it)
    passes those results as chosen_/rejected_verifier_on_pair_prompt; the stored verifier
    rows must still be ok."""
    if picks.is_empty():
        return picks
    side = facts.select("candidate_id", "gated", "verifier", "verifier_ok", "verifier_score")
    checked = (picks.with_row_index("_row")
               .join(side.rename(lambda c: f"{c}__c"), left_on="chosen_id", right_on="candidate_id__c", how="left")
               .join(side.rename(lambda c: f"{c}__r"), left_on="rejected_id", right_on="candidate_id__r",
                     how="left"))
    chosen_generation = pl.col("gated__c").is_not_null()
    rejected_generation = pl.col("gated__r").is_not_null()
    chosen_verifier = (pl.when(pl.col("chosen_id") == REFERENCE_ID).then(pl.lit(1.0))
                       .otherwise(pl.col("verifier_score__c")))
    rejected_verifier = pl.col("verifier_score__r")
    if "chosen_verifier_on_pair_prompt" in picks.columns:  # the verifier re-run on the pair's own prompt
        chosen_verifier = pl.col("chosen_verifier_on_pair_prompt")
        rejected_verifier = pl.col("rejected_verifier_on_pair_prompt")
    checks = [
        ("identical", (pl.col("chosen_id") == pl.col("rejected_id"))
         | (pl.col("chosen").str.strip_chars() == pl.col("rejected").str.strip_chars())),
        ("unscored", pl.lit(scored) & (pl.col("chosen_score").is_null() | pl.col("rejected_score").is_null()
                                       | pl.col("chosen_score").is_nan() | pl.col("rejected_score").is_nan())),
        ("tie", pl.lit(scored) & ~(pl.col("chosen_score") > pl.col("rejected_score"))),
        ("gated_chosen", pl.col("gated__c").fill_null(False)),
        ("gated_rejected", pl.lit(not gated_rejected) & pl.col("gated__r").fill_null(False)),
        ("rejected_unverified", rejected_generation & pl.col("verifier__r").is_not_null() & ~pl.col("verifier_ok__r")),
        ("chosen_unverified", rejected_generation & pl.col("verifier__r").is_not_null()
         & chosen_generation & ~pl.col("verifier_ok__c").fill_null(False)),
        ("verifier_not_below", rejected_generation & pl.col("verifier__r").is_not_null()
         & ~(chosen_verifier > rejected_verifier).fill_null(False)),
    ]
    reason = pl.lit(None, dtype=pl.Utf8)
    for name, broken in reversed(checks):
        reason = pl.when(broken.fill_null(True)).then(pl.lit(name)).otherwise(reason)
    checked = checked.with_columns(reason.alias("_refused"))
    for name, count in checked.filter(pl.col("_refused").is_not_null()).group_by("_refused").len().iter_rows():
        _record(name, count)
    kept_rows = checked.filter(pl.col("_refused").is_null())["_row"]
    return picks.with_row_index("_row").filter(pl.col("_row").is_in(kept_rows.implode())).drop("_row")


def refuse(reason: str, count: int = 1) -> None:
    """Count pairs a strategy refused by the rule before they became picks (see REASONS)."""
    _record(reason, count)
