"""Dual margin ("Less is More") and MADPO weights for the margin strategy (curate/pairs/margin.py).

Dual margin, config `implicit_margin = {policy, reference, beta = 0.1}`: `policy` and `reference`
name scorers whose ok scores are sequence log-probs, sum of log π(response | prompt), under the
policy and the reference model. For a pair (w chosen, l rejected)

    implicit_margin = beta * ((pol(w) - ref(w)) - (pol(l) - ref(l)))

A pair lacking either log-prob for either side is dropped. Over all pairs of the build, the
external margin (the pair's `margin`) and the implicit margin are each normalised
(`dual_normalise`): "minmax" (x - min) / (max - min), 1.0 for every pair when all are equal (a
constant carries no ranking and must not zero a product); or "rank": average rank (1 = smallest)
/ n. They are combined (`dual_combine`): "sum" or "product", and the top `keep_top_fraction`
(ceil(fraction * count) pairs) by the combined value are kept, ties by smaller pair id.
details_json records implicit_margin, external_margin_norm, implicit_margin_norm, combined_margin.
Without `implicit_margin`, `keep_top_fraction` < 1 keeps the top fraction by the margin alone.

MADPO weight: see the margin module docstring (2 * sigmoid(-scale * z) of the standardised margin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import polars as pl

from curate import bulk_ids
from curate.options import as_floats, option
from curate.pairs.rows import usable_scores

DualNormalise = Literal["minmax", "rank"]
DualCombine = Literal["sum", "product"]


def _finite(options, *names: str) -> None:
    for key in names:
        if not math.isfinite(getattr(options, key)):
            raise ValueError(f"{key} must be a finite number, not {getattr(options, key)!r}")
    as_floats(options, *names)


@dataclass(frozen=True)
class ImplicitMargin:
    policy: str = option(help="scorer of sequence log-probs under the policy model")
    reference: str = option(help="scorer of sequence log-probs under the reference model")
    beta: float = option(0.1, help="scale of the implicit margin")

    def __post_init__(self) -> None:
        for key in ("policy", "reference"):
            if not getattr(self, key):
                raise ValueError(f"{key} must name a scorer of sequence log-probs")
        _finite(self, "beta")


@dataclass(frozen=True)
class Madpo:
    scale: float = option(1.0, help="weight = 2 * sigmoid(-scale * z) of the standardised margin")

    def __post_init__(self) -> None:
        _finite(self, "scale")


def normalised(column: str, how: str) -> pl.Expr:
    x = pl.col(column)
    if how == "rank":
        return x.rank("average") / pl.len()
    spread = x.max() - x.min()
    return pl.when(spread > 0).then((x - x.min()) / spread).otherwise(pl.lit(1.0))


def keep_top(picked: pl.DataFrame, by: str, fraction: float) -> pl.DataFrame:
    """The ceil(fraction * n) rows largest in `by`; among rows tied at the cut, smaller pair ids."""
    count = math.ceil(round(fraction * picked.height, 9))
    if count >= picked.height:
        return picked
    threshold = picked[by].sort(descending=True)[count - 1]
    above = picked.filter(pl.col(by) > threshold)
    tied = picked.filter(pl.col(by) == threshold)
    tied = tied.with_columns(  # pair ids only for the rows that need the tie broken
        bulk_ids.pair_ids("margin", tied["chosen_id"], tied["rejected_id"], tied["prompt_id"]).alias("_pair_id")
    ).sort("_pair_id").head(count - above.height).drop("_pair_id")
    return pl.concat([above, tied])


def apply_dual_margin(picked: pl.DataFrame, scores: pl.DataFrame, candidates: pl.DataFrame,
                      options) -> tuple[pl.DataFrame, list[str]]:
    """(pairs, detail columns added): the dual-margin filter, or the margin-only top fraction."""
    implicit = options.implicit_margin
    if implicit is None:
        return keep_top(picked, "margin", options.keep_top_fraction), []
    policy = usable_scores(scores, candidates, implicit.policy).select("candidate_id", pl.col("score").alias("pol"))
    reference = usable_scores(scores, candidates, implicit.reference).select(
        "candidate_id", pl.col("score").alias("ref"))
    delta = policy.join(reference, on="candidate_id").select("candidate_id", (pl.col("pol") - pl.col("ref")).alias("d"))
    picked = (
        picked.join(delta.rename({"candidate_id": "chosen_id", "d": "delta_w"}), on="chosen_id")
        .join(delta.rename({"candidate_id": "rejected_id", "d": "delta_l"}), on="rejected_id")
        .with_columns((implicit.beta * (pl.col("delta_w") - pl.col("delta_l"))).alias("implicit_margin"))
        .drop("delta_w", "delta_l")
    )
    if picked.is_empty():
        return picked.with_columns(*(pl.lit(None, pl.Float64).alias(c) for c in
                                     ("external_margin_norm", "implicit_margin_norm", "combined_margin"))), []
    how = options.dual_normalise
    picked = picked.with_columns(normalised("margin", how).alias("external_margin_norm"),
                                 normalised("implicit_margin", how).alias("implicit_margin_norm"))
    a, b = pl.col("external_margin_norm"), pl.col("implicit_margin_norm")
    picked = picked.with_columns((a + b if options.dual_combine == "sum" else a * b).alias("combined_margin"))
    picked = keep_top(picked, "combined_margin", options.keep_top_fraction)
    return picked, ["implicit_margin", "external_margin_norm", "implicit_margin_norm", "combined_margin"]


def add_madpo_weight(picked: pl.DataFrame, madpo: Madpo | None) -> tuple[pl.DataFrame, list[str]]:
    """weight = 2 * sigmoid(-scale * z), z the margin standardised over these pairs (population std)."""
    if madpo is None:
        return picked, []
    margin = pl.col("margin")
    ordered = margin.sort()  # sums in margin order: the same bits whatever order the pairs come in
    std = ordered.std(ddof=0)
    z = pl.when(std > 0).then((margin - ordered.mean()) / std).otherwise(pl.lit(0.0))
    picked = picked.with_columns(z.alias("margin_z"))
    weight = 2.0 / (1.0 + (madpo.scale * pl.col("margin_z")).exp())
    return picked.with_columns(weight.alias("weight")), ["margin_z"]
