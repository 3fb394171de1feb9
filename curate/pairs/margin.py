"""Margin selection (docs/methods.md §1): pairs of a prompt's candidates ranked by one scorer.

Options (MarginOptions; every key optional; anything else is a ValueError naming the key):

- `scorer` (default "math_verify"), `scorer_version` (default: the newest row per candidate),
  `normalise` ("none" | "z": scores standardised per scorer, margins in standard deviations),
  `min_margin` (default 0).
- `pairing`:
  - "best_vs_worst" (default): the best vs the worst candidate of each prompt.
  - "best_vs_random": the best vs one rejected drawn from the candidates at least `min_margin` below
    the best (and strictly lower). The draw is deterministic: the pool, sorted by candidate id, is
    indexed by sha256("{prompt_id}:{seed}") mod its size (`seed`, default 0).
  - "all_pairs_above_margin": every ordered (i, j) of a prompt with s_i - s_j >= min_margin and
    s_i > s_j; at most `max_pairs_per_prompt` (default 8) per prompt, the largest margins kept
    (ties: smaller chosen id, then smaller rejected id).
  Ties never form a pair and chosen_id != rejected_id always. Among equal best (or worst) scores
  the smallest candidate id wins.
- The pairing rule (curate/pairs/rule.py) holds in every mode: only candidates with an ok score
  take part; a candidate gated by the quality scorer is never chosen; where the prompt's task has
  a verifier (math_verify, constraints, code_tests) a candidate it did not score ok is never
  rejected, and a pair also needs the verifier to score the rejected strictly below the chosen.
  `gated_rejected` (default false: a gated candidate, truncated or degenerate, is too easy a
  negative); true lets it be the rejected when it scores lower.
- `required_verifier` (a scorer name) with `required_verifier_min` (default 1.0): the chosen needs
  an ok score >= the min from that scorer. best_vs_*: a prompt whose best fails yields no pair
  (METHODS step 3); all_pairs: that chosen is skipped; length_control "closest": only passing
  candidates can be chosen.
- `length_control`: "none" (default) | "closest": the rejected is picked as `pairing` says (the
  worst, or the random draw); the chosen is then, among the candidates that beat it by >= min_margin
  (and pass the required verifier), the one whose character length is closest to the rejected's
  (ties: higher score, then smaller id). Only with best_vs_worst / best_vs_random.
- `length_penalty` (default 0): candidates are ranked by score - length_penalty * len(text) / 1000
  when choosing; a pair also needs the chosen to rank strictly above the rejected. The stored
  scores and margins stay the raw scores (s_i - s_j, which must still be >= min_margin and > 0).
- `implicit_margin` = {policy, reference, beta=0.1}, `dual_normalise`, `dual_combine`,
  `keep_top_fraction`: the dual margin of "Less is More", see curate/pairs/margin_dual.py.
  `keep_top_fraction` alone keeps the top fraction by the external margin.
- `madpo` = {scale=1.0} (or true): a per-pair `weight` (MADPO-style),

      weight = 2 * sigmoid(-scale * z) = 2 / (1 + exp(scale * z)),
      z = (margin - mean(margin)) / std(margin)   over this build's (kept) pairs, population std,

  z = 0 (weight 1) when all margins are equal. Hard (small-margin) pairs get weights up to 2,
  easy ones down to 0; the weights average about 1.

An option set in the config that would have no effect under the others (a `seed` without
best_vs_random, `max_pairs_per_prompt` without all_pairs_above_margin, `required_verifier_min`
without `required_verifier`, `dual_*` without `implicit_margin`, "closest" with all_pairs) is a
ValueError too, so a config never silently means less than it says.

Every pair's details_json records chosen_length, rejected_length and length_ratio
(chosen / rejected characters; null for an empty rejected), plus the evidence of the options in
use (rank scores, verifier score, draw pool size, dual margins, margin z).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl
import polars_hash as plh

from curate import bulk_ids
from curate.options import as_floats, option, options_dict
from curate.pairs import rule
from curate.pairs.margin_dual import (DualCombine, DualNormalise, ImplicitMargin, Madpo, add_madpo_weight,
                                      apply_dual_margin)
from curate.pairs.rows import ID_PARTS, KEY_PARTS, PICK_COLUMNS, finish_pairs, ok_scores, row_for_row, usable_scores
from curate.pairs.strategy import Strategy
from curate.score import with_z_scores

Pairing = Literal["best_vs_worst", "best_vs_random", "all_pairs_above_margin"]
SIDES = ("candidate_id", "score", "rank", "length", "_i")  # per-candidate columns a pair carries per side
# (_i: the candidate's row in the scored frame, where the rest of its columns are fetched from)


@dataclass(frozen=True)
class MarginOptions:
    scorer: str = option("math_verify", help="the scorer whose scores rank a prompt's candidates")
    scorer_version: str | None = option(None, help="that scorer's version; default: the newest score per candidate")
    normalise: Literal["none", "z"] = option(
        "none", help='"z": scores standardised per scorer, margins in standard deviations')
    min_margin: float = option(0.0, help="smallest score difference of a pair")
    pairing: Pairing = option("best_vs_worst", help="which pairs of a prompt: best vs worst, best vs a seeded "
                                                    "random lower one, or every pair above min_margin")
    seed: int = option(0, help="best_vs_random: the draw's seed")
    max_pairs_per_prompt: int = option(8, help="all_pairs_above_margin: pairs kept per prompt, largest margins first")
    required_verifier: str | None = option(None, help="a scorer the chosen must pass (score >= required_verifier_min)")
    required_verifier_min: float = option(1.0, help="the chosen's least score from required_verifier")
    implicit_margin: ImplicitMargin | None = option(
        None, help="dual margin (Less is More): {policy, reference, beta} log-prob scorers")
    dual_normalise: DualNormalise = option("minmax", help="dual margin: how both margins are normalised")
    dual_combine: DualCombine = option("sum", help="dual margin: how the normalised margins combine")
    keep_top_fraction: float = option(1.0, help="keep this top fraction of pairs by dual (or plain) margin")
    madpo: Madpo | Literal[True] | None = option(
        None, help="MADPO per-pair weight, {scale} (true: scale 1.0): 2 * sigmoid(-scale * z) of the margin")
    length_control: Literal["none", "closest"] = option(
        "none", help='"closest": the chosen closest in length to the rejected among those beating it')
    length_penalty: float = option(0.0, help="rank by score - length_penalty * characters / 1000")
    gated_rejected: bool = option(False, help="a candidate gated by the quality scorer may be the rejected (off: too easy a negative)")
    one_per_text: bool = option(True, help="one candidate per text of a prompt (Unicode NFC, outer whitespace aside, "
                                           "the best ranked): a pick is never refused as identical when another text is left")

    def __post_init__(self) -> None:
        as_floats(self, "min_margin", "required_verifier_min", "keep_top_fraction", "length_penalty")
        if self.madpo is True:
            object.__setattr__(self, "madpo", Madpo())
        if self.max_pairs_per_prompt < 1:
            raise ValueError("max_pairs_per_prompt must be at least 1")
        if not 0 < self.keep_top_fraction <= 1:
            raise ValueError(f"keep_top_fraction must be in (0, 1], not {self.keep_top_fraction}")
        if self.length_control == "closest" and self.pairing == "all_pairs_above_margin":
            raise ValueError("length_control 'closest' picks one chosen per rejected; "
                             "use it with best_vs_worst or best_vs_random, not all_pairs_above_margin")

    def without_effect(self) -> list[tuple[str, str]]:
        all_pairs = "pairing = 'all_pairs_above_margin'"
        rules = [("seed", self.pairing != "best_vs_random", "pairing = 'best_vs_random'"),
                 ("max_pairs_per_prompt", self.pairing != "all_pairs_above_margin", all_pairs),
                 ("required_verifier_min", self.required_verifier is None, "required_verifier"),
                 ("dual_normalise", self.implicit_margin is None, "implicit_margin"),
                 ("dual_combine", self.implicit_margin is None, "implicit_margin")]
        return [(key, f"has no effect without {needs}") for key, useless, needs in rules if useless]

    def params(self) -> dict:
        """What params_json records: every option, scorer_version only when set."""
        return {k: v for k, v in options_dict(self).items() if k != "scorer_version" or v is not None}


def _eligible(min_margin: float, chosen: str = "_c", rejected: str = "_r", ids: str = "candidate_id") -> pl.Expr:
    """chosen may be paired against rejected: raw margin >= min_margin and > 0 (ties never pair),
    strictly higher rank score, different candidates (`ids`: a column equal where the ids are)."""
    margin = pl.col(f"score{chosen}") - pl.col(f"score{rejected}")
    return ((margin >= min_margin) & (margin > 0) & (pl.col(f"rank{chosen}") > pl.col(f"rank{rejected}"))
            & (pl.col(f"{ids}{chosen}") != pl.col(f"{ids}{rejected}")))


def _side(frame: pl.DataFrame, suffix: str, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    return frame.select("prompt_id", *[pl.col(c).alias(f"{c}{suffix}") for c in (*SIDES, *extra)])


def _extremes(scored: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per prompt, the candidate ranking highest among those that may be chosen, and the one ranking
    lowest among those that may be rejected (curate.pairs.rule); ties: smallest candidate id."""
    if scored["rank"].is_nan().any():  # NaN sorts above every number: the general way
        return _extreme(scored, True), _extreme(scored, False)
    choose, reject, rank = pl.col("can_choose"), pl.col("can_reject"), pl.col("rank")
    ends = scored.with_columns(rank.filter(choose).max().over("prompt_id").alias("_top"),
                               rank.filter(reject).min().over("prompt_id").alias("_bottom"))
    best = ends.filter(choose & (rank == pl.col("_top")))
    worst = ends.filter(reject & (rank == pl.col("_bottom")))
    return tuple(ties.filter(pl.col("candidate_id") == pl.col("candidate_id").min().over("prompt_id"))
                 for ties in (best, worst))


def _extreme(scored: pl.DataFrame, best: bool) -> pl.DataFrame:
    pool = scored.filter(pl.col("can_choose" if best else "can_reject"))
    winners = pool.group_by("prompt_id").agg(
        pl.col("candidate_id").sort_by(["rank", "candidate_id"], descending=[best, False]).first())
    return pool.join(winners.select("candidate_id"), on="candidate_id", how="semi")


def _draw_key(prompt_ids: pl.Series, seed: int) -> pl.Series:
    """A stable per-prompt draw: the first 8 bytes of sha256("prompt_id:seed"), big-endian, >> 1
    (one hash per prompt, not per candidate)."""
    payload = pl.select(pl.concat_str([pl.lit(prompt_ids), pl.lit(f":{seed}")]).alias("p"))
    digest = payload.select(plh.col("p").chash.sha2_256())["p"]
    return (digest.str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64) // 2).cast(pl.Int64)


def _random_rejected(scored: pl.DataFrame, best: pl.DataFrame, min_margin: float, seed: int) -> pl.DataFrame:
    pool = (best.join(_side(scored.filter(pl.col("can_reject")), "_r"), on="prompt_id").filter(_eligible(min_margin))
            .with_columns(pl.len().over("prompt_id").alias("pool_size"),
                          (pl.col("candidate_id_r").rank("ordinal").over("prompt_id") - 1).alias("index")))
    prompt_ids = pool.select("prompt_id").unique()
    keys = prompt_ids.with_columns(_draw_key(prompt_ids["prompt_id"], seed).alias("draw"))
    return (pool.join(keys, on="prompt_id")
            .filter(pl.col("index") == pl.col("draw") % pl.col("pool_size"))
            .drop("index", "draw"))


def _closest_chosen(scored: pl.DataFrame, rejected: pl.DataFrame, min_margin: float) -> pl.DataFrame:
    """Per rejected (one per prompt), the passing candidate beating it whose length is closest."""
    pool = (_side(scored.filter(pl.col("verified") & pl.col("can_choose")), "_c", ("verified",))
            .join(rejected, on="prompt_id").filter(_eligible(min_margin))
            .with_columns((pl.col("length_c") - pl.col("length_r")).abs().alias("length_gap")))
    return (pool.sort(["length_gap", "score_c", "candidate_id_c"], descending=[False, True, False])
            .group_by("prompt_id", maintain_order=True).first().drop("length_gap"))


def _all_pairs(scored: pl.DataFrame, min_margin: float, cap: int, penalty: float,
               prompts: pl.DataFrame) -> pl.DataFrame:
    # The candidates numbered (_n) in (prompt_id, candidate_id) order, their prompts (_g) too: the
    # pairs are formed (a merge join on sorted _g), filtered and ranked on numbers, and their
    # strings fetched once at the end. _k is equal where the candidate id is (a candidate twice).
    numbered = (scored.select("prompt_id", "candidate_id", "_i", "score", "rank", "verified", "can_choose", "can_reject")
                .sort("prompt_id", "candidate_id").with_row_index("_n")
                .with_columns(pl.col("prompt_id").rle_id().set_sorted().alias("_g")))
    # the facts-joined scores hold each candidate once; others are counted
    twice = "fact_gated" not in scored.columns and numbered["candidate_id"].n_unique() < numbered.height
    numbered = numbered.with_columns((pl.col("candidate_id").rle_id() if twice else pl.col("_n")).alias("_k"))
    columns = ["_n", "score", *(["_k"] if twice else []), *(["rank"] if penalty else [])]

    def side(pool: pl.Expr, suffix: str) -> pl.DataFrame:
        return numbered.filter(pool).select("_g", *[pl.col(c).alias(f"{c}{suffix}") for c in columns])

    pairs = (side(pl.col("verified") & pl.col("can_choose"), "_c")
             .join(side(pl.col("can_reject"), "_r"), on="_g", maintain_order="left_right"))
    if not penalty:  # rank is the score: a positive margin is a higher rank
        pairs = pairs.with_columns(pl.col("score_c").alias("rank_c"), pl.col("score_r").alias("rank_r"))
    pairs = (pairs.filter(_eligible(min_margin, ids="_k" if twice else "_n"))
             .with_columns((pl.col("score_c") - pl.col("score_r")).alias("margin")))
    if twice or pairs["margin"].is_nan().any():  # NaN sorts above every number: the general way
        ids = "_k" if twice else "_n"
        pairs = pairs.sort(["_g", "margin", f"{ids}_c", f"{ids}_r"], descending=[False, True, False, False])
        pair_rank = pl.int_range(pl.len()).over("_g") + 1
    else:  # in (_g, chosen, rejected) order already: the ordinal rank breaks ties by candidate ids
        pair_rank = pl.col("margin").rank("ordinal", descending=True).over("_g").cast(pl.Int64)
    pairs = (pairs.with_columns(pl.len().over("_g").alias("eligible_pairs"), pair_rank.alias("pair_rank"))
             .filter(pl.col("pair_rank") <= cap))
    rows = {side: numbered["_i"].gather(pairs[f"_n{side}"]) for side in ("_c", "_r")}
    if prompts["prompt_id"].n_unique() == prompts.height:  # each pair's prompt row (_p), fetched per prompt
        group_rows = (numbered.filter(pl.col("_g").is_first_distinct()).select("prompt_id")
                      .join(prompts.select("prompt_id").with_row_index("_p"), on="prompt_id", how="left",
                            maintain_order="left"))["_p"]
        pairs = pairs.with_columns(group_rows.gather(pairs["_g"]).alias("_p"))
    return pairs.select(
        scored["prompt_id"].gather(rows["_c"]).alias("prompt_id"),
        scored["candidate_id"].gather(rows["_c"]).alias("candidate_id_c"), "score_c",
        scored["rank"].gather(rows["_c"]).alias("rank_c"), scored["length"].gather(rows["_c"]).alias("length_c"),
        rows["_c"].alias("_i_c"), pl.lit(True).alias("verified_c"),
        scored["candidate_id"].gather(rows["_r"]).alias("candidate_id_r"), "score_r",
        scored["rank"].gather(rows["_r"]).alias("rank_r"), scored["length"].gather(rows["_r"]).alias("length_r"),
        rows["_r"].alias("_i_r"), "margin", "eligible_pairs", "pair_rank", *(["_p"] if "_p" in pairs.columns else []))


def _pick(scored: pl.DataFrame, options: MarginOptions, prompts: pl.DataFrame) -> pl.DataFrame:
    """Pairs as columns <side>_c / <side>_r (SIDES) and verified_c, plus per-mode evidence."""
    min_margin, pairing = options.min_margin, options.pairing
    if pairing == "all_pairs_above_margin":
        return _all_pairs(scored, min_margin, options.max_pairs_per_prompt, options.length_penalty, prompts)
    # what the selection reads (the texts and facts stay behind, fetched for the picks by _i)
    scored = scored.select("prompt_id", *SIDES, "verified", "can_choose", "can_reject")
    best, worst = _extremes(scored)
    best = _side(best.sort("prompt_id"), "_c", ("verified",))
    if pairing == "best_vs_worst":
        rejected = _side(worst.sort("prompt_id"), "_r")
        picked = best.join(rejected, on="prompt_id").filter(_eligible(min_margin))
    else:
        picked = _random_rejected(scored, best, min_margin, options.seed)
    if options.length_control == "closest":
        extra = ["pool_size"] if "pool_size" in picked.columns else []
        rejected = picked.select("prompt_id", *[f"{c}_r" for c in SIDES], *extra)
        return _closest_chosen(scored, rejected, min_margin)
    return picked.filter(pl.col("verified_c"))


def _reason(options: MarginOptions, columns: list[str]) -> pl.Expr:
    scorer, pairing = options.scorer, options.pairing
    scores = [pl.col("chosen_score").round(3).cast(pl.Utf8), pl.lit(" vs "),
              pl.col("rejected_score").round(3).cast(pl.Utf8)]
    if pairing == "best_vs_worst":
        head = [pl.lit("best vs worst")]
    elif pairing == "best_vs_random":
        head = [pl.lit(f"best vs random (seed {options.seed}, one of "), pl.col("pool_size").cast(pl.Utf8),
                pl.lit(f" at least {options.min_margin:g} below)")]
    else:
        head = [pl.lit("pair "), pl.col("pair_rank").cast(pl.Utf8), pl.lit(" of "),
                pl.col("eligible_pairs").cast(pl.Utf8), pl.lit(f" with margin >= {options.min_margin:g}")]
    if options.length_control == "closest":
        head = [pl.lit("closest-length chosen ("), pl.col("chosen_length").cast(pl.Utf8), pl.lit(" vs "),
                pl.col("rejected_length").cast(pl.Utf8), pl.lit(" chars) against the "),
                pl.lit("worst" if pairing == "best_vs_worst" else "random rejected")]
    parts = [*head, pl.lit(f" by {scorer}: "), *scores]
    if options.length_penalty:
        parts.append(pl.lit(f"; ranked by score - {options.length_penalty:g}*chars/1000"))
    if options.required_verifier is not None:
        parts.append(pl.lit(f"; chosen passes {options.required_verifier} >= {options.required_verifier_min:g}"))
    if "combined_margin" in columns:
        parts += [pl.lit("; dual margin "), pl.col("combined_margin").round(3).cast(pl.Utf8),
                  pl.lit(f" in the top {options.keep_top_fraction:g}")]
    elif options.keep_top_fraction < 1:
        parts.append(pl.lit(f"; margin in the top {options.keep_top_fraction:g}"))
    return pl.concat_str(parts).alias("reason")


def _scored(facts: pl.DataFrame, scores: pl.DataFrame, candidates: pl.DataFrame,
            options: MarginOptions) -> pl.DataFrame:
    """_i (the row number), candidate_id, prompt_id, text, score, length, rank (score less the
    length penalty), the candidate's facts (rule.SIDE_FACTS as fact_<name>), can_choose and
    can_reject (curate.pairs.rule.eligible), verified and verifier_score (the required verifier's)."""
    raw = scores
    if options.normalise == "z":  # margins in standard deviations of this scorer
        scores = with_z_scores(scores).with_columns(pl.col("score_z").alias("score"))
    if "text" in facts.columns:  # the facts are the candidates with text, one row each: usable_scores' rows
        scored = _joined_scores(facts.select(
            "candidate_id", "prompt_id", "text", *[pl.col(f).alias(f"fact_{f}") for f in rule.SIDE_FACTS],
            rule.may_stand("chosen").alias("can_choose"),
            rule.may_stand("rejected", options.gated_rejected).alias("can_reject"),
        ), scores, options)
    else:  # a candidate or prompt twice: the general way (rule.enforce joins the facts to the picks)
        scored = usable_scores(scores, candidates, options.scorer, options.scorer_version).with_columns(
            pl.col("candidate_id").is_in(rule.eligible(facts, "chosen").implode()).alias("can_choose"),
            pl.col("candidate_id").is_in(rule.eligible(facts, "rejected", options.gated_rejected).implode())
            .alias("can_reject"))
    scored = scored.with_columns(pl.col("text").str.len_chars().cast(pl.Int64).alias("length"))
    scored = scored.with_columns((pl.col("score") - options.length_penalty * pl.col("length") / 1000).alias("rank"))
    if options.one_per_text:
        scored = _one_per_text(scored)
    if options.required_verifier is None:
        scored = scored.with_columns(pl.lit(True).alias("verified"), pl.lit(None, pl.Float64).alias("verifier_score"))
    else:
        verifier = usable_scores(raw, candidates, options.required_verifier).select(
            "candidate_id", pl.col("score").alias("verifier_score"))
        scored = scored.join(verifier, on="candidate_id", how="left", maintain_order="left").with_columns(
            (pl.col("verifier_score") >= options.required_verifier_min).fill_null(False).alias("verified"))
    return scored.with_row_index("_i")


def _one_per_text(scored: pl.DataFrame) -> pl.DataFrame:
    """One candidate per text of a prompt (rule.same_text: NFC, outer whitespace aside), the best
    ranked (then the smallest id); the others are counted as same_text. Paired, they would be refused
    as identical and their prompt would get no pair; so the pick falls to the next distinct text."""
    keyed = scored.with_columns(rule.same_text_in(scored, "text").hash().alias("_text"))
    if keyed.select(pl.struct("prompt_id", "_text").is_unique().all()).item():
        return scored
    ordered = keyed.with_row_index("_order").sort(["prompt_id", "_text", "rank", "candidate_id"],
                                                  descending=[False, False, True, False], nulls_last=True)
    kept = ordered.unique(["prompt_id", "_text"], keep="first", maintain_order=True).sort("_order")
    rule.refuse("same_text", scored.height - kept.height)
    return kept.drop("_order", "_text")


def _joined_scores(sides: pl.DataFrame, scores: pl.DataFrame, options: MarginOptions) -> pl.DataFrame:
    """`sides` (one row per candidate) with the scorer's ok score (rows.ok_scores), in their order;
    prompt_id marked sorted where it is (Polars then groups by slices)."""
    rows = scores.filter(pl.col("scorer") == options.scorer)
    if options.scorer_version is not None:
        rows = rows.filter(pl.col("scorer_version") == options.scorer_version)
    found = row_for_row(sides["candidate_id"], rows, ["status", "score"])
    if found is not None:  # one row per candidate: the newest is the only one
        usable = found.select(((pl.col("status") == "ok") & pl.col("score").is_not_null()).fill_null(False))
        scored = sides.with_columns(found["score"]).filter(usable.to_series())
    else:
        scored = sides.join(ok_scores(scores, options.scorer, options.scorer_version), on="candidate_id",
                            maintain_order="left")
    if scored["prompt_id"].is_sorted():
        scored = scored.with_columns(pl.col("prompt_id").set_sorted())
    return scored


def _fetch(picked: pl.DataFrame, scored: pl.DataFrame, columns: dict[str, str], side: str) -> list[pl.Series]:
    """The scored frame's columns (name -> output name) at the picks' `side` rows (_i_c or _i_r)."""
    rows = picked[f"_i{side}"]
    return [scored[column].gather(rows).alias(name) for column, name in columns.items()]


def _with_prompt(picked: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """The picks with their prompt's messages (`prompt`), those without a prompt row dropped: fetched
    by the prompt's row where the picks carry it (_p), else joined."""
    if "_p" not in picked.columns:
        return picked.join(prompts.select("prompt_id", pl.col("messages").alias("prompt")), on="prompt_id")
    picked = picked.filter(pl.col("_p").is_not_null())
    return picked.with_columns(prompts["messages"].gather(picked["_p"]).alias("prompt"))


def _with_key_parts(picked: pl.DataFrame, scored: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """The parts of the pair ids and dedup keys (rows.ID_PARTS, KEY_PARTS): once per candidate and
    per prompt where the picks outnumber them, else per pick."""
    if picked.height * 2 <= scored.height or prompts["prompt_id"].n_unique() < prompts.height:
        return picked.with_columns(bulk_ids.prompt_keys(picked["prompt"]).alias("prompt_key"),
                                   bulk_ids.text_keys(picked["chosen"]).alias("chosen_key"),
                                   bulk_ids.text_keys(picked["rejected"]).alias("rejected_key"))
    texts, ids = bulk_ids.text_keys(scored["text"]), bulk_ids.json_string(scored["candidate_id"])
    per_prompt = prompts.select("prompt_id", bulk_ids.prompt_keys(prompts["messages"]).alias("prompt_key"),
                                bulk_ids.json_string(prompts["prompt_id"]).alias("prompt_id_json"))
    chosen, rejected = picked["_i_c"], picked["_i_r"]
    if "_p" in picked.columns:
        picked = picked.with_columns(per_prompt[column].gather(picked["_p"]) for column in ("prompt_key", "prompt_id_json"))
    else:
        picked = picked.join(per_prompt, on="prompt_id", how="left", maintain_order="left")
    return picked.with_columns(
        texts.gather(chosen).alias("chosen_key"), texts.gather(rejected).alias("rejected_key"),
        ids.gather(chosen).alias("chosen_id_json"), ids.gather(rejected).alias("rejected_id_json"))


def _checked(picked: pl.DataFrame, scored: pl.DataFrame, options: MarginOptions) -> pl.DataFrame:
    """The picks with their texts (and the chosen's verifier score), less what the pairing rule
    refuses; each side's facts fetched from its scored row."""
    carried = {f"fact_{fact}": fact for fact in rule.SIDE_FACTS}
    picked = picked.with_columns(
        *_fetch(picked, scored, {"text": "chosen", **{c: f"{f}__c" for c, f in carried.items()}}, "_c"),
        *_fetch(picked, scored, {"text": "rejected", **{c: f"{f}__r" for c, f in carried.items()}}, "_r"))
    picked = rule.enforce(picked, None, gated_rejected=options.gated_rejected)
    picked = picked.drop([f"{f}__{s}" for f in carried.values() for s in "cr"])
    if options.required_verifier is not None:  # the chosen's verifier score, as evidence
        picked = picked.with_columns(_fetch(picked, scored, {"verifier_score": "chosen_verifier_score"}, "_c"))
    return picked


def _checked_by_joins(picked: pl.DataFrame, scored: pl.DataFrame, facts: pl.DataFrame,
                      options: MarginOptions) -> pl.DataFrame:
    """As _checked, where a candidate id or prompt id is in the input twice: every side joined by
    id, each of its rows making a row (as the strategy always did)."""
    texts = scored.select("candidate_id", "text")
    picked = (picked.join(texts.rename({"candidate_id": "chosen_id", "text": "chosen"}), on="chosen_id")
              .join(texts.rename({"candidate_id": "rejected_id", "text": "rejected"}), on="rejected_id"))
    picked = rule.enforce(picked, facts, gated_rejected=options.gated_rejected)
    if options.required_verifier is not None:
        picked = picked.join(scored.select(pl.col("candidate_id").alias("chosen_id"),
                                           pl.col("verifier_score").alias("chosen_verifier_score")),
                             on="chosen_id", how="left")
    return picked


def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, options: MarginOptions,
          run_id: str = "") -> pl.DataFrame:
    pinned = {options.scorer: options.scorer_version} if options.scorer_version else {}
    facts = rule.candidate_facts(prompts, candidates, scores, pinned, with_text=True)
    scored = _scored(facts, scores, candidates, options)
    picked = _pick(scored, options, prompts).rename({"candidate_id_c": "chosen_id", "candidate_id_r": "rejected_id",
                                           "score_c": "chosen_score", "score_r": "rejected_score",
                                           "length_c": "chosen_length", "length_r": "rejected_length"})
    picked = picked.with_columns((pl.col("chosen_score") - pl.col("rejected_score")).alias("margin"),
                                 pl.lit(options.scorer).alias("scorer"))
    picked = (_checked(picked, scored, options) if "fact_gated" in scored.columns
              else _checked_by_joins(picked, scored, facts, options))
    picked, details = apply_dual_margin(picked, scores, candidates, options)
    picked, weight_details = add_madpo_weight(picked, options.madpo)
    details = ["chosen_length", "rejected_length", "length_ratio", *details, *weight_details]
    if options.length_penalty:
        details += ["chosen_rank_score", "rejected_rank_score"]
    if options.required_verifier is not None:
        details.append("chosen_verifier_score")
    if "pool_size" in picked.columns:
        details.append("pool_size")
    picked = (
        picked.rename({"rank_c": "chosen_rank_score", "rank_r": "rejected_rank_score"})
        .with_columns(pl.when(pl.col("rejected_length") > 0)
                      .then(pl.col("chosen_length") / pl.col("rejected_length")).alias("length_ratio"))
    )
    picked = _with_prompt(picked, prompts)
    picked = picked.with_columns(_reason(options, picked.columns),
                                 pl.struct(details).struct.json_encode().alias("details_json"))
    picked = _with_key_parts(picked, scored, prompts)
    keep = [*PICK_COLUMNS, "details_json", *KEY_PARTS, *[c for c in ID_PARTS if c in picked.columns]]
    keep += ["weight"] if "weight" in picked.columns else []
    return finish_pairs(picked.select(keep), "margin", options.params(), run_id)


def _per_prompt(options: MarginOptions) -> bool:
    """No option that looks across prompts: z-scores, dual margins, MADPO weights, a top fraction."""
    return (options.normalise == "none" and options.implicit_margin is None and options.madpo is None
            and options.keep_top_fraction == 1)


STRATEGY = Strategy("margin", MarginOptions, build, per_prompt=_per_prompt)
