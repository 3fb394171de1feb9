"""A pair strategy with an audit check of its own: per prompt, the longest candidate over the
shortest, when it is at least `min_ratio` times as long by the scorer's count.

Its audit check, `length_ratio`, measures both texts in characters, evidence the strategy did not
use when its scorer counts words; a confirmed verdict counts as evidence that the pair holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from curate.audit.verdicts import CONFIRMED, REFUTED, Verdict, json_object
from curate.options import as_floats, option, options_dict
from curate.pairs import rule
from curate.pairs.registry import register
from curate.pairs.rows import finish_pairs, usable_scores
from curate.pairs.strategy import AuditCheck, Strategy, StrategyAudit


@dataclass(frozen=True)
class LongestOptions:
    scorer: str = option("length:words", help="the scorer whose scores measure length")
    min_ratio: float = option(1.5, help="the longest must score at least this many times the shortest")

    def __post_init__(self):
        as_floats(self, "min_ratio")
        if self.min_ratio < 1:
            raise ValueError(f"min_ratio must be at least 1, not {self.min_ratio}")


def build(prompts, candidates, scores, options: LongestOptions, run_id: str = "") -> pl.DataFrame:
    scored = usable_scores(scores, candidates, options.scorer).sort("score", "candidate_id")
    ends = scored.group_by("prompt_id").agg(pl.all().last().name.suffix("_c"), pl.all().first().name.suffix("_r"))
    picks = (ends.filter(pl.col("score_c") >= options.min_ratio * pl.col("score_r"))
             .join(prompts.select("prompt_id", pl.col("messages").alias("prompt")), on="prompt_id")
             .select("prompt_id", "prompt", pl.col("text_c").alias("chosen"), pl.col("text_r").alias("rejected"),
                     pl.col("candidate_id_c").alias("chosen_id"), pl.col("candidate_id_r").alias("rejected_id"),
                     pl.lit(options.scorer).alias("scorer"), pl.col("score_c").alias("chosen_score"),
                     pl.col("score_r").alias("rejected_score"),
                     (pl.col("score_c") - pl.col("score_r")).alias("margin"),
                     pl.lit("the longest answer").alias("reason")))
    picks = rule.enforce(picks, rule.candidate_facts(prompts, candidates, scores))
    return finish_pairs(picks, "longest", options_dict(options), run_id)


def check_length_ratio(pair: dict, prompt: dict | None) -> Verdict:
    """The chosen is at least min_ratio times as long as the rejected, in characters."""
    min_ratio = json_object(pair, "params_json").get("min_ratio", 1.5)
    ratio = len(pair["chosen"] or "") / max(len(pair["rejected"] or ""), 1)
    detail = {"ratio": round(ratio, 3), "min_ratio": min_ratio}
    return Verdict("length_ratio", CONFIRMED if ratio >= min_ratio else REFUTED, detail)


STRATEGY = register(Strategy("longest", LongestOptions, build, per_prompt=lambda options: True, audit=StrategyAudit(
    checks=(AuditCheck("length_ratio", check_length_ratio, confirms=True),))))
