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
import numbers

import polars as pl

from curate import bulk_ids
from curate.pairs.rows import usable_scores

DUAL_NORMALISE = ("minmax", "rank")
DUAL_COMBINE = ("sum", "product")


def _real(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"margin: {what} must be a finite number, not {value!r}")
    return float(value)


def check_implicit_margin(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"margin: implicit_margin must be a table {{policy, reference, beta}}, not {value!r}")
    for key in value:
        if key not in ("policy", "reference", "beta"):
            raise ValueError(f"margin: unknown implicit_margin key {key!r} (known: beta, policy, reference)")
    for key in ("policy", "reference"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise ValueError(f"margin: implicit_margin needs `{key}`, a scorer name of sequence log-probs")
    return {"policy": value["policy"], "reference": value["reference"],
            "beta": _real(value.get("beta", 0.1), "implicit_margin.beta")}


def check_madpo(value) -> dict:
    if value is True:
        return {"scale": 1.0}
    if not isinstance(value, dict):
        raise ValueError(f"margin: madpo must be a table {{scale}} or true, not {value!r}")
    for key in value:
        if key != "scale":
            raise ValueError(f"margin: unknown madpo key {key!r} (known: scale)")
    return {"scale": _real(value.get("scale", 1.0), "madpo.scale")}


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
                      params: dict) -> tuple[pl.DataFrame, list[str]]:
    """(pairs, detail columns added): the dual-margin filter, or the margin-only top fraction."""
    implicit = params["implicit_margin"]
    if implicit is None:
        return keep_top(picked, "margin", params["keep_top_fraction"]), []
    policy = usable_scores(scores, candidates, implicit["policy"]).select("candidate_id", pl.col("score").alias("pol"))
    reference = usable_scores(scores, candidates, implicit["reference"]).select(
        "candidate_id", pl.col("score").alias("ref"))
    delta = policy.join(reference, on="candidate_id").select("candidate_id", (pl.col("pol") - pl.col("ref")).alias("d"))
    picked = (
        picked.join(delta.rename({"candidate_id": "chosen_id", "d": "delta_w"}), on="chosen_id")
        .join(delta.rename({"candidate_id": "rejected_id", "d": "delta_l"}), on="rejected_id")
        .with_columns((implicit["beta"] * (pl.col("delta_w") - pl.col("delta_l"))).alias("implicit_margin"))
        .drop("delta_w", "delta_l")
    )
    if picked.is_empty():
        return picked.with_columns(*(pl.lit(None, pl.Float64).alias(c) for c in
                                     ("external_margin_norm", "implicit_margin_norm", "combined_margin"))), []
    how = params["dual_normalise"]
    picked = picked.with_columns(normalised("margin", how).alias("external_margin_norm"),
                                 normalised("implicit_margin", how).alias("implicit_margin_norm"))
    a, b = pl.col("external_margin_norm"), pl.col("implicit_margin_norm")
    picked = picked.with_columns((a + b if params["dual_combine"] == "sum" else a * b).alias("combined_margin"))
    picked = keep_top(picked, "combined_margin", params["keep_top_fraction"])
    return picked, ["implicit_margin", "external_margin_norm", "implicit_margin_norm", "combined_margin"]


def add_madpo_weight(picked: pl.DataFrame, madpo: dict | None) -> tuple[pl.DataFrame, list[str]]:
    """weight = 2 * sigmoid(-scale * z), z the margin standardised over these pairs (population std)."""
    if madpo is None:
        return picked, []
    margin = pl.col("margin")
    std = margin.std(ddof=0)
    z = pl.when(std > 0).then((margin - margin.mean()) / std).otherwise(pl.lit(0.0))
    picked = picked.with_columns(z.alias("margin_z"))
    weight = 2.0 / (1.0 + (madpo["scale"] * pl.col("margin_z")).exp())
    return picked.with_columns(weight.alias("weight")), ["margin_z"]
