"""Dedup: exact duplicates of whole pairs (normalised prompt + chosen + rejected).

Near-duplicate (MinHash) and semantic stages come later; the key here is the contract:
among kept pairs, `dedup_key` is unique, within a run and across runs.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from curate.ids import content_hash, normalise_text


def pair_dedup_key(prompt: list[dict], chosen: str, rejected: str) -> str:
    prompt_text = "\n".join(f"{m['role']}: {normalise_text(m['content'])}" for m in prompt)
    return content_hash("pair-exact", prompt_text, normalise_text(chosen), normalise_text(rejected))


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
