"""dedup_pairs: exact -> MinHash -> semantic over new pairs and the pairs already kept."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from curate.dedup.config import DedupConfig, drop_rows, drops_frame
from curate.dedup.exact import exact_duplicates
from curate.dedup.minhash import PartSignatures, minhash_duplicates
from curate.dedup.semantic import default_embedder, semantic_duplicates
from curate.ids import normalise_text

Embed = Callable[[list[str]], np.ndarray]


def pair_texts(prompt: list[dict], chosen: str, rejected: str) -> tuple[str, str, str]:
    """What near-duplicate and semantic dedup compare, part by part: the prompt (its messages'
    normalised contents, one per line), the chosen and the rejected response (normalised)."""
    return _part_texts([m["content"] for m in prompt], chosen, rejected, normalise_text)


def _part_texts(contents: list[str], chosen: str, rejected: str,
                normalise: Callable[[str], str]) -> tuple[str, str, str]:
    return "\n".join(map(normalise, contents)), normalise(chosen), normalise(rejected)


class PairSignatures:
    """A batch's pair texts and their MinHash signatures, each computed once per distinct text
    however often the batch's lake probe, dedup and index rows ask for them: make one per batch
    (it keeps every text it sees) and pass it to each (curate.steps.pairs)."""

    def __init__(self, config: DedupConfig, sign: Callable[[list[tuple[str, str, str]]], np.ndarray] | None = None):
        self.minhashes = PartSignatures(config, parts=3, sign=sign)  # sign: as PartSignatures' (shards)
        self._normalised: dict[str, str] = {}

    def normalise(self, text: str) -> str:
        """normalise_text, remembered."""
        found = self._normalised.get(text)
        if found is None:
            # ASCII: NFKC leaves it as it is, casefold is lower, and \s+ runs are str.split's separators
            found = " ".join(text.split()).lower() if text.isascii() else normalise_text(text)
            self._normalised[text] = found
        return found

    def texts(self, pairs: pl.DataFrame) -> list[tuple[str, str, str]]:
        """pair_texts of each row of `pairs` (the prompts' contents read without their messages' dicts)."""
        contents = pairs.select(pl.col("prompt").list.eval(pl.element().struct.field("content")))["prompt"]
        return [_part_texts(c, chosen, rejected, self.normalise) for c, chosen, rejected
                in zip(contents.to_list(), pairs["chosen"].to_list(), pairs["rejected"].to_list())]

    def band_keys(self, texts: list[tuple[str, str, str]]) -> np.ndarray:
        """(n, bands) int64: the LSH band keys of each pair's texts (as minhash_duplicates and the lake have them)."""
        return self.minhashes.band_keys(texts)


def _priority(new: pl.DataFrame) -> pl.DataFrame:
    return new.sort(["margin", "pair_id"], descending=[True, False], nulls_last=True)


def dedup_pairs(new_pairs: pl.DataFrame, kept_pairs: pl.DataFrame | None = None,
                config: DedupConfig | None = None, embed: Embed | None = None,
                run_id: str = "", semantic_kept: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
                signatures: PairSignatures | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept new pairs, dedup_drops rows).

    `kept_pairs` (already in the lake) always win and are never dropped; among new pairs the larger
    margin wins, then the smaller pair_id. Each stage sees only what earlier stages kept. New rows
    whose pair_id is already kept are left out of both results. Kept rows keep their input order.
    `semantic_kept(new pairs still in)`, called after the MinHash stage, gives more kept pairs for
    the semantic stage alone: a lake's semantic neighbours need only be looked up for the new pairs
    that got that far (curate.dedup.lake_index: exact and MinHash neighbours are complete without).
    `signatures` may hold texts and signatures already computed for these pairs (made with `config`).
    """
    config = config or DedupConfig()
    signatures = signatures or PairSignatures(config)
    if kept_pairs is None:
        kept_pairs = new_pairs.clear()
    new = new_pairs.filter(~pl.col("pair_id").is_in(kept_pairs["pair_id"].implode()))
    if new.is_empty():
        return new, drops_frame([])
    columns = ["pair_id", "dedup_key", "prompt", "chosen", "rejected"]
    ordered = pl.concat([kept_pairs.sort("pair_id").select(columns), _priority(new).select(columns)])
    n_kept = kept_pairs.height
    ids = ordered["pair_id"].to_list()
    alive = list(range(ordered.height))
    collisions: list[tuple[int, int, float, dict, str]] = []  # (dropped, kept, similarity, detail, reason)

    def record(found, positions, reason, detail):
        gone = set()
        for i, j, sim, extra in found:
            gone.add(positions[i])
            collisions.append((positions[i], positions[j], sim, {**detail, **extra}, reason))
        return [x for x in positions if x not in gone]

    if config.exact:
        keys = ordered["dedup_key"].to_list()
        found = [(i, j, 1.0, {"dedup_key": keys[i]}) for i, j in exact_duplicates(keys, n_kept)]
        alive = record(found, alive, "exact", {})
    texts: dict[int, tuple[str, str, str]] = {}
    if (config.minhash or config.semantic) and len(alive) > n_kept:
        of_row = signatures.texts(ordered)
        texts = {x: of_row[x] for x in alive}
    if config.minhash and len(alive) > n_kept:
        found = [(i, j, sim, {"parts": dict(zip(("prompt", "chosen", "rejected"), parts))})
                 for i, j, sim, parts in minhash_duplicates([texts[x] for x in alive], n_kept, config,
                                                            signatures.minhashes)]
        alive = record(found, alive, "minhash", config.minhash_params())
    if config.semantic and len(alive) > n_kept and semantic_kept is not None:
        ordered, ids, texts, alive, n_kept = _with_semantic_kept(
            ordered, ids, texts, alive, n_kept, semantic_kept(new.filter(pl.col("pair_id").is_in(
                [ids[x] for x in alive[n_kept:]]))).select(columns))
    if config.semantic and len(alive) > n_kept:
        embed = embed or default_embedder(config.embed_batch_size)
        unique = list(dict.fromkeys(t for x in alive for t in texts[x]))
        vectors = np.asarray(embed(unique), dtype=np.float32)
        where = {t: k for k, t in enumerate(unique)}
        parts = [vectors[[where[texts[x][p]] for x in alive]] for p in range(3)]
        found = [(i, j, sim, {"parts": dict(zip(("prompt", "chosen", "rejected"), per))})
                 for i, j, sim, per in semantic_duplicates(
                     parts, n_kept, config.semantic_threshold, config.semantic_cluster_size,
                     config.semantic_probes)]
        alive = record(found, alive, "semantic", {"threshold": config.semantic_threshold,
                                                  "model": getattr(embed, "model_name", None)})
    survivors = {ids[x] for x in alive[n_kept:]}
    return new.filter(pl.col("pair_id").is_in(list(survivors))), drops_frame(_drop_rows(collisions, ids, run_id))


def _with_semantic_kept(ordered, ids, texts, alive, n_kept, extra: pl.DataFrame):
    """The stage's rows with `extra` kept pairs added (those not in yet): every kept row first, in
    pair_id order as the kept rows come, then the new rows still in."""
    extra = extra.filter(~pl.col("pair_id").is_in(ids)).unique("pair_id")
    if extra.is_empty():
        return ordered, ids, texts, alive, n_kept
    start = ordered.height
    ordered = pl.concat([ordered, extra])
    ids = ids + extra["pair_id"].to_list()
    positions = list(range(start, ordered.height))
    for x, (prompt, chosen, rejected) in zip(positions, extra.select("prompt", "chosen", "rejected").iter_rows()):
        texts[x] = pair_texts(prompt, chosen, rejected)
    kept = sorted(alive[:n_kept] + positions, key=lambda x: ids[x])
    return ordered, ids, texts, kept + alive[n_kept:], len(kept)


def _drop_rows(collisions, ids, run_id) -> list[dict]:
    """Drop rows; a row that collided with one dropped at a later stage points at the final survivor
    (kept_id), with the row it collided with, and whose similarity is given, in detail_json.via."""
    target = {dropped: kept for dropped, kept, _, _, _ in collisions}
    rows = []
    for reason in ("exact", "minhash", "semantic"):
        drops = []
        for dropped, kept, sim, detail, why in collisions:
            if why != reason:
                continue
            final = kept
            while final in target:
                final = target[final]
            if final != kept:
                detail = {**detail, "via": ids[kept]}
            drops.append((ids[dropped], ids[final], sim, detail))
        rows.extend(drop_rows("pair", drops, reason, run_id))
    return rows
