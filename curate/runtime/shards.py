"""Sharded stage work: split rows by a stable hash of their key, run one task per shard.

The pipeline hands shard work to a `Shards` runner: `InProcess` runs it in this process (plain
calls, tests and notebooks), the Prefect flow's runner submits each shard as a task to the flow's
task runner (threads or Ray; flows/build.py). The split depends only on the keys and the shard
count, never on the runner, so every runner computes the same rows; the caller commits all
shards' rows in one lake transaction.

Shard work functions are module-level and take plain data (frames, strings), so Ray can ship them
to another process: they build what they need (a verifier, the embedding model) where they run.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import polars as pl
import pyarrow as pa

from curate.dedup import Embedder, default_embedder
from curate.score import score_candidates
from curate.score.registry import build_portable

DEFAULT_SHARDS = 4


def shard_of(key: str, shards: int) -> int:
    """The shard of one key: stable across processes, machines and versions (not Python's hash)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % shards


def split_frame(frame: pl.DataFrame, column: str, shards: int) -> list[pl.DataFrame]:
    """`frame`'s rows in `shards` parts by the hash of `column`; empty parts are left out."""
    if frame.is_empty():
        return []
    index = pl.Series([shard_of(k, shards) for k in frame[column].to_list()], dtype=pl.Int64)
    parts = frame.with_columns(index.alias("_shard")).partition_by("_shard", as_dict=True, maintain_order=True)
    return [parts[(s,)].drop("_shard") for s in range(shards) if (s,) in parts]


class Shards(Protocol):
    count: int

    def map(self, work: Callable, calls: Sequence[tuple]) -> list: ...


class InProcess:
    """Shard work as plain calls, one after the other, in this process."""

    def __init__(self, count: int = DEFAULT_SHARDS):
        self.count = count

    def map(self, work: Callable, calls: Sequence[tuple]) -> list:
        return [work(*args) for args in calls]


# shard work -------------------------------------------------------------------------------

def score_shard(kind: str, prompts: pl.DataFrame, candidates: pl.DataFrame, run_id: str) -> pa.Table:
    """Scores of one shard's candidates (all unscored) by one scorer that needs no model, built here
    from its kind (nothing shipped but the name)."""
    return score_candidates(prompts, candidates, [build_portable(kind)], run_id)


_embedder_lock = threading.Lock()


def embed_shard(texts: list[str], batch_size: int) -> np.ndarray:
    """Unit vectors of normalised texts with this process's MiniLM (loaded once per process)."""
    with _embedder_lock:  # one load, even when shards run in threads
        embedder = default_embedder(batch_size)
        embedder.model  # noqa: B018 (loads it)
    return embedder.encode(texts)


def sharded_encode(shards: Shards, texts: list[str], batch_size: int) -> np.ndarray:
    """`embed_shard` over shards of `texts` (by text), reassembled in the order given."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    groups: dict[int, list[int]] = {}
    for position, text in enumerate(texts):
        groups.setdefault(shard_of(text, shards.count), []).append(position)
    order = sorted(groups)
    results = shards.map(embed_shard, [([texts[p] for p in groups[s]], batch_size) for s in order])
    vectors = np.empty((len(texts), results[0].shape[1]), dtype=np.float32)
    for s, part in zip(order, results):
        vectors[groups[s]] = part
    return vectors


class ShardedEmbedder(Embedder):
    """An `Embedder` (lake cache, new `embeddings` rows) whose model work runs as shard tasks."""

    def __init__(self, shards: Shards, **kwargs):
        super().__init__(**kwargs)
        self.shards = shards

    def encode(self, texts: list[str]) -> np.ndarray:
        self.model_calls += 1
        self.texts_encoded += len(texts)
        return sharded_encode(self.shards, texts, self.batch_size)
