"""Exact dedup: a hash of the normalised text (NFKC, case-folded, whitespace collapsed).

Whole pairs key on prompt + chosen + rejected (`pair_dedup_key`, stored as `pairs.dedup_key`);
prompts key on their messages (`prompt_dedup_key`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from curate.dedup.config import DedupConfig, drop_rows, drops_frame, prompt_text
from curate.ids import content_hash, normalise_text


def pair_dedup_key(prompt: list[dict], chosen: str, rejected: str) -> str:
    prompt_text = "\n".join(f"{m['role']}: {normalise_text(m['content'])}" for m in prompt)
    return content_hash("pair-exact", prompt_text, normalise_text(chosen), normalise_text(rejected))


def prompt_dedup_key(messages: list[dict]) -> str:
    """Equal for two prompts whose messages differ only in Unicode form, case or whitespace."""
    return content_hash("prompt-exact", prompt_text(messages))


def drop_exact_duplicates(
    pairs: pl.DataFrame,
    kept_keys: Callable[[list[str]], set[str]] = lambda keys: set(),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, dropped): one pair per dedup_key, none whose key is already kept in the lake.

    Within a batch the pair with the larger margin wins (then the smaller pair id).
    """
    if pairs.is_empty():
        return pairs, pairs
    ordered = pairs.sort(["margin", "pair_id"], descending=[True, False], nulls_last=True)
    first = ordered.unique(subset="dedup_key", keep="first", maintain_order=True)
    already = kept_keys(first["dedup_key"].to_list())
    kept = first.filter(~pl.col("dedup_key").is_in(list(already)))
    dropped = pairs.join(kept.select("pair_id"), on="pair_id", how="anti")
    return kept, dropped


def exact_duplicates(keys: Sequence[str], n_kept: int = 0) -> list[tuple[int, int]]:
    """(dropped index, kept index) for items in priority order; the first `n_kept` are never dropped.

    An item is dropped when an earlier item has the same key; it points at the first such item.
    """
    first: dict[str, int] = {}
    dropped = []
    for index, key in enumerate(keys):
        if key in first:
            if index >= n_kept:
                dropped.append((index, first[key]))
        else:
            first[key] = index
    return dropped


def _prompt_rank(frame: pl.DataFrame) -> pl.DataFrame:
    """New prompts in priority order: more verification fields first (a math prompt with its
    reference answer beats the same text as chat), then the smaller prompt_id."""
    present = [c for c in ("reference_answer", "reference_solution", "constraints_json", "task_fields_json")
               if c in frame.columns]
    richness = pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int32) for c in present]) if present else pl.lit(0)
    return frame.with_columns(_rich=richness).sort(["_rich", "prompt_id"], descending=[True, False]).drop("_rich")


def dedup_prompts(new_prompts: pl.DataFrame, kept_prompts: pl.DataFrame | None, config: DedupConfig | None = None,
                  run_id: str = "") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept new prompts, dedup_drops rows): exact duplicates of prompt text, within the batch and
    against `kept_prompts` (already kept, never dropped). New rows whose prompt_id is already kept
    are left out of both results. Rows keep their input order."""
    config = config or DedupConfig()
    kept_prompts = kept_prompts if kept_prompts is not None else new_prompts.clear()
    new = new_prompts.filter(~pl.col("prompt_id").is_in(kept_prompts["prompt_id"].implode()))
    if not config.exact or new.is_empty():
        return new, drops_frame([])
    columns = ["prompt_id", "messages"]
    ordered = pl.concat([kept_prompts.sort("prompt_id").select(columns), _prompt_rank(new).select(columns)])
    ids = ordered["prompt_id"].to_list()
    keys = [prompt_dedup_key(m) for m in ordered["messages"].to_list()]
    found = exact_duplicates(keys, kept_prompts.height)
    rows = drop_rows("prompt", [(ids[i], ids[j], 1.0, {"key": keys[i]}) for i, j in found], "exact", run_id)
    dropped = {ids[i] for i, _ in found}
    return new.filter(~pl.col("prompt_id").is_in(list(dropped))), drops_frame(rows)
