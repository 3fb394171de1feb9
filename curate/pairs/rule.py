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
  chosen; nor, by default, a rejected: a truncated or degenerate answer is too easy a negative to
  teach much (refused as "too_easy"); a strategy's `gated_rejected = true` opts in.
  Where a candidate has no quality row yet (a lake from before the scorer), its gates are
  computed here from its text and finish_reason, the same code.
- Format: a chosen generation has the format its prompt asks for in so many words (a final "The
  answer is" line, a code block: curate.audit.answer_checks.FORMATS); a correct answer without it would
  teach the model to ignore the request (a step-wise chosen, one step of an answer, is exempt).
- Chosen and rejected differ (ids and text, outer whitespace aside, compared in Unicode NFC: "café"
  typed as é or as e + U+0301 is one text).

Strategies call `candidate_facts` once to keep ineligible candidates out of their pools and
`enforce` on their picks as the last word: `enforce` drops what breaks the rule and counts each
refusal by reason into the `counting()` block the pipeline opens around a build.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import Counter

import polars as pl

from curate.audit.answer_checks import FORMATS
from curate.pairs.rows import newest, row_for_row
from curate.score.quality import NAME as QUALITY
from curate.score.quality import gates_of_batch
from curate.score.registry import task_verifiers, verifier_names

REFERENCE_ID = "reference"  # gt's chosen_id for a prompt's reference solution: verifier score 1.0
REASONS = {
    "identical": "chosen and rejected are the same candidate or text",
    "same_text": "margin: a candidate with the text of a better-ranked one of its prompt (NFC, outer whitespace "
                 "aside) is left out of the pick, so that the pick falls to the next distinct text",
    "unscored": "a side has no ok score on the strategy's evidence (unscored or failed)",
    "tie": "chosen does not strictly beat rejected on the strategy's evidence",
    "gated_chosen": "the chosen is gated by the quality scorer",
    "format_missing": "the chosen lacks a format its prompt asks for in so many words (a final 'The answer is' "
                      "line, a code block)",
    "too_easy": "the rejected is gated by the quality scorer: too easy a negative (gated_rejected = false)",
    "rejected_unverified": "the task's verifier has no ok score for the rejected generation",
    "chosen_unverified": "the task's verifier has no ok score for the chosen",
    "verifier_not_below": "the task's verifier does not score the rejected strictly below the chosen",
    "no_near_miss": "gt: the wrong answer states none of the intermediate results its math reference shows, "
                    "or the wrong code passes none of the tests (near_miss_only = true): no near miss",
    "reversal_unchanged": "reversal: the chosen follows every constraint already, nothing to reverse (margin's pair)",
    "reversal_no_base_prompt": "reversal: no base_prompt, so the original constraints would stay in the rewritten "
                               "prompt and contradict it",
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
    return newest(rows).select("candidate_id", "status", "score")


def _gated(pool: pl.DataFrame, stored: pl.DataFrame) -> pl.Series:
    """Per row of `pool` (candidate_id, text, finish_reason): gated by its stored quality row
    (`stored`: status and score, row for row), or, without an ok one, by the quality gates run here."""
    gated = stored.select(pl.when(pl.col("status") == "ok").then(pl.col("score") <= 0).alias("gated"))["gated"]
    unknown = gated.is_null()
    if unknown.any():  # no quality row: run the gates here
        rows = pool.filter(unknown)
        fired = gates_of_batch(rows["text"].to_list(), rows["finish_reason"].to_list())
        computed = pl.Series([bool(gates) for gates in fired], dtype=pl.Boolean)
        gated = gated.clone().scatter(unknown.arg_true(), computed)
    return gated


def _quality_rows(pool: pl.DataFrame, scores: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pool, its quality rows row for row: status, score): the pool one row per candidate, each with
    the newest quality row. A join that checks both sides hold each candidate once answers the common
    case; otherwise the pool and the rows are made so first."""
    rows = scores.filter(pl.col("scorer") == QUALITY)
    stored = row_for_row(pool["candidate_id"], rows, ["status", "score"])
    if stored is not None:
        return pool, stored
    if pool["candidate_id"].n_unique() < pool.height:  # a candidate twice, or two quality rows of one
        pool = pool.unique("candidate_id", keep="first")
    stored = pool.select("candidate_id").join(newest(rows).select("candidate_id", "status", "score"),
                                              on="candidate_id", how="left", maintain_order="left")
    return pool, stored


def _format_missing(pool: pl.DataFrame, prompts: pl.DataFrame) -> pl.Series:
    """Per row of `pool` (prompt_id, text): the last user message asks for a format in so many words
    (curate.audit.answer_checks.FORMATS: a final "The answer is" line, a code block) that the text lacks."""
    request = pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content")).list.last()
    asks = prompts.select("prompt_id", *[request.str.contains(f"(?i){pattern}").fill_null(False).alias(name)
                                         for name, (pattern, _) in FORMATS.items()])
    asks = asks.filter(pl.any_horizontal(*FORMATS))
    if asks.is_empty():  # no prompt asks for a format: nothing to look for in the texts
        return pl.repeat(False, pool.height, dtype=pl.Boolean, eager=True)
    joined = pool.select("prompt_id", "text").join(asks.unique("prompt_id"), on="prompt_id", how="left",
                                                   maintain_order="left")
    return joined.select(pl.any_horizontal(*[pl.col(name).fill_null(False) & ~pl.col("text").str.contains(f"(?i){has}")
                                             for name, (_, has) in FORMATS.items()]).alias("missing"))["missing"]


def candidate_facts(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
                    versions: dict[str, str] | None = None, with_text: bool = False) -> pl.DataFrame:
    """Per candidate with text: candidate_id, prompt_id, gated (bool), format_missing (bool: its prompt
    asks for a format it lacks, see _format_missing), verifier (the task's, when it
    scored a candidate of this prompt, else null), verifier_ok (bool), verifier_score. A verifier
    counts with its newest row per candidate, or with the version `versions` names for it.
    `with_text`: also `text`, where the facts are exactly the candidates with text (no candidate
    id and no prompt id twice among them); otherwise the column is left out."""
    versions = versions or {}
    with_texts = candidates.filter(pl.col("text").is_not_null()) if candidates["text"].null_count() else candidates
    pool, stored = _quality_rows(with_texts.select("candidate_id", "prompt_id", "text", "finish_reason"), scores)
    facts = pool.select("candidate_id", "prompt_id", _gated(pool, stored).alias("gated"),
                        _format_missing(pool, prompts).alias("format_missing"))
    one_per_prompt = prompts["prompt_id"].n_unique() == prompts.height
    verdicts = pl.concat([_latest(scores, name, versions.get(name)).with_columns(pl.lit(name).alias("verifier"))
                          for name in sorted(verifier_names())])
    if verdicts.is_empty() and one_per_prompt:  # no verifier scored anything: every candidate is without one
        facts = facts.with_columns(pl.lit(None, pl.Utf8).alias("verifier"), pl.lit(False).alias("verifier_ok"),
                                   pl.lit(None, scores.schema["score"]).alias("verifier_score"))
    else:
        facts = _with_verifiers(facts, prompts, candidates, verdicts)
    if with_text and pool.height == with_texts.height and one_per_prompt:  # the joins kept the pool's rows in order
        facts = facts.with_columns(pool["text"])
    return facts


def _with_verifiers(facts: pl.DataFrame, prompts: pl.DataFrame, owners: pl.DataFrame,
                    verdicts: pl.DataFrame) -> pl.DataFrame:
    """candidate_facts' verifier, verifier_ok and verifier_score from the verifiers' newest rows
    (`verdicts`: candidate_id, status, score, verifier) and the candidates (`owners`)."""
    owners = owners.select("candidate_id", "prompt_id")
    try:
        verdicts = verdicts.join(owners, on="candidate_id", validate="m:1")
    except pl.exceptions.ComputeError:  # a candidate twice: any of its rows names the prompt
        verdicts = verdicts.join(owners.unique("candidate_id"), on="candidate_id")
    present = verdicts.select("prompt_id", "verifier").unique().with_columns(pl.lit(True).alias("_present"))
    facts = (facts.join(prompts.select("prompt_id", "task"), on="prompt_id", how="left", maintain_order="left")
             .with_columns(pl.col("task").replace_strict(task_verifiers(), default=None, return_dtype=pl.Utf8)
                           .alias("verifier")))
    facts = (facts.join(present, on=["prompt_id", "verifier"], how="left", maintain_order="left")
             .with_columns(pl.when(pl.col("_present")).then(pl.col("verifier")).alias("verifier"))
             .join(verdicts.select("candidate_id", "verifier", pl.col("status").alias("_status"),
                                   pl.col("score").alias("verifier_score")),
                   on=["candidate_id", "verifier"], how="left", maintain_order="left"))
    ok = (pl.col("_status") == "ok") & pl.col("verifier_score").is_not_null()
    return facts.select("candidate_id", "prompt_id", "gated", "format_missing", "verifier",
                        ok.fill_null(False).alias("verifier_ok"),
                        pl.when(ok).then(pl.col("verifier_score")).alias("verifier_score"))


def may_stand(side: str, gated_rejected: bool = False, format_required: bool = True) -> pl.Expr:
    """Over candidate_facts' columns: the candidate may stand as `side` ("chosen" or "rejected")
    at all (see `eligible`)."""
    keep = pl.col("verifier").is_null() | pl.col("verifier_ok")
    if side == "chosen" or not gated_rejected:
        keep = keep & ~pl.col("gated")
    if side == "chosen" and format_required:
        keep = keep & ~pl.col("format_missing")
    return keep


def eligible(facts: pl.DataFrame, side: str, gated_rejected: bool = False, format_required: bool = True) -> pl.Series:
    """The candidate ids that may stand as `side` ("chosen" or "rejected") at all: not gated (a
    rejected only with gated_rejected true), verifier-scored ok where the task has one, and as a
    chosen with the format its prompt asks for (unless format_required is false: a step-wise
    chosen is one step of an answer)."""
    return facts.filter(may_stand(side, gated_rejected, format_required))["candidate_id"]


SIDE_FACTS = ("gated", "format_missing", "verifier", "verifier_ok", "verifier_score")


def enforce(picks: pl.DataFrame, facts: pl.DataFrame | None, *, gated_rejected: bool = False,
            scored: bool = True, format_required: bool = True) -> pl.DataFrame:
    """`picks` (chosen_id, rejected_id, chosen, rejected, chosen_score, rejected_score, ...) less
    every pick that breaks the rule, in their order; each refusal is counted under its first
    failing reason. A strategy that re-ran the task's verifier on the pair's own prompt (reversal
    rewrites it) passes those results as chosen_/rejected_verifier_on_pair_prompt; the stored
    verifier rows must still be ok. A strategy that carries each side's facts (SIDE_FACTS as
    <fact>__c and <fact>__r, null for a side that is no candidate) passes facts=None."""
    if picks.is_empty():
        return picks
    checked = picks = picks.with_row_index("_row")
    if facts is not None:
        side = facts.select("candidate_id", *SIDE_FACTS)
        checked = (picks
                   .join(side.rename(lambda c: f"{c}__c"), left_on="chosen_id", right_on="candidate_id__c",
                         how="left", maintain_order="left")
                   .join(side.rename(lambda c: f"{c}__r"), left_on="rejected_id", right_on="candidate_id__r",
                         how="left", maintain_order="left"))
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
         | (same_text_in(picks, "chosen") == same_text_in(picks, "rejected"))),
        ("unscored", pl.lit(scored) & (pl.col("chosen_score").is_null() | pl.col("rejected_score").is_null()
                                       | pl.col("chosen_score").is_nan() | pl.col("rejected_score").is_nan())),
        ("tie", pl.lit(scored) & ~(pl.col("chosen_score") > pl.col("rejected_score"))),
        ("gated_chosen", pl.col("gated__c").fill_null(False)),
        ("format_missing", pl.lit(format_required) & pl.col("format_missing__c").fill_null(False)),
        ("too_easy", pl.lit(not gated_rejected) & pl.col("gated__r").fill_null(False)),
        ("rejected_unverified", rejected_generation & pl.col("verifier__r").is_not_null() & ~pl.col("verifier_ok__r")),
        ("chosen_unverified", rejected_generation & pl.col("verifier__r").is_not_null()
         & chosen_generation & ~pl.col("verifier_ok__c").fill_null(False)),
        ("verifier_not_below", rejected_generation & pl.col("verifier__r").is_not_null()
         & ~(chosen_verifier > rejected_verifier).fill_null(False)),
    ]
    reason = pl.lit(None, dtype=pl.Utf8)
    for name, broken in reversed(checks):
        reason = pl.when(broken.fill_null(True)).then(pl.lit(name)).otherwise(reason)
    refused = checked.select(reason.alias("_refused"))["_refused"]
    for name, count in refused.drop_nulls().value_counts().iter_rows():
        _record(name, count)
    if checked.height == picks.height:  # one row per pick: its order
        return picks.filter(refused.is_null()).drop("_row")
    kept = checked.filter(refused.is_null())["_row"]  # facts holding a candidate twice: any row passing
    return picks.filter(pl.col("_row").is_in(kept.implode())).drop("_row")


def same_text(column: str) -> pl.Expr:
    """A text as the rule compares it: Unicode NFC, outer whitespace aside (curate.ids.same_text)."""
    return pl.col(column).str.normalize("NFC").str.strip_chars()


def same_text_in(frame: pl.DataFrame, column: str) -> pl.Expr:
    """`same_text` of a column of `frame`, without the NFC pass when every text in it is ASCII
    (NFC leaves ASCII as it is; the check costs a seventh of the pass)."""
    if frame.schema.get(column) == pl.String and not frame[column].str.contains(r"[^\x00-\x7F]").any():
        return pl.col(column).str.strip_chars()
    return same_text(column)


def refuse(reason: str, count: int = 1) -> None:
    """Count pairs a strategy refused by the rule before they became picks (see REASONS)."""
    _record(reason, count)
