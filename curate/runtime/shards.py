"""Sharded stage work: split rows by a stable hash of their key, run one task per shard.

The pipeline hands shard work to a `Shards` runner: `InProcess` runs it in this process (plain
calls, tests and notebooks), `ProcessPool` in worker processes of this machine (`[runner] kind =
"processes"`: every core, not one), the Prefect flow's runner submits each shard as a task to the
flow's task runner (threads, processes or Ray; flows/build.py). The split depends only on the keys and the shard
count, never on the runner, so every runner computes the same rows; the caller commits all
shards' rows in one lake transaction.

Shard work functions are module-level and take plain data (frames, strings), so Ray can ship them
to another process: they build what they need (a verifier, the embedding model) where they run.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from typing import Protocol

import numpy as np
import polars as pl
import pyarrow as pa

from curate.dedup import Embedder, default_embedder
from curate.dedup.config import DedupConfig
from curate.dedup.minhash import sign_items
from curate.score import score_candidates
from curate.score.kind import ScorerKind

DEFAULT_SHARDS = 4
# Work on fewer items than this runs in one call in this process, whatever the runner: shipping it
# (a Prefect task per shard) costs more than it takes (MinHash signatures, the audit's checks).
# [runner] inline_below sets it for a run.
INLINE_BELOW = 2_000


def shard_of(key: str, shards: int) -> int:
    """The shard of one key: stable across processes, machines and versions (not Python's hash)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % shards


def split_frame(frame: pl.DataFrame, column: str, shards: int) -> list[pl.DataFrame]:
    """`frame`'s rows in `shards` parts by the hash of `column`; empty parts are left out."""
    if frame.is_empty():
        return []
    keys = frame[column].unique().to_list()  # each key hashed once (a prompt's candidates share it)
    index = frame[column].replace_strict(dict(zip(keys, (shard_of(k, shards) for k in keys))), return_dtype=pl.Int64)
    parts = frame.with_columns(index.alias("_shard")).partition_by("_shard", as_dict=True, maintain_order=True)
    return [parts[(s,)].drop("_shard") for s in range(shards) if (s,) in parts]


class Pending(Protocol):
    def results(self) -> list: ...


class Shards(Protocol):
    """`map` runs shard work and returns its results in the order of `calls`; `start` begins it
    and returns at once, so that the caller can commit the previous batch meanwhile (`results()`
    waits). Every shard of a call ends before a failure of one is raised: none is left running.
    `spreads(items)`: whether work on that many items is worth shipping to the shards (else the
    caller does it in one call, in its own process)."""

    count: int

    def spreads(self, items: int) -> bool: ...

    def map(self, work: Callable, calls: Sequence[tuple]) -> list: ...

    def start(self, work: Callable, calls: Sequence[tuple]) -> Pending: ...

    def close(self) -> None: ...


class _Later:
    """Work done when its results are asked for (InProcess: the calls run in this process anyway)."""

    def __init__(self, work: Callable, calls: Sequence[tuple]):
        self.work, self.calls = work, calls

    def results(self) -> list:
        return [self.work(*args) for args in self.calls]


class Done:
    """Results computed already (in this process), as a started call's."""

    def __init__(self, results: list):
        self._results = results

    def results(self) -> list:
        return self._results


class _Futures:
    def __init__(self, futures: list):
        self.futures = futures

    def results(self) -> list:
        wait(self.futures)
        return [future.result() for future in self.futures]


class InProcess:
    """Shard work as plain calls, one after the other, in this process."""

    def __init__(self, count: int = DEFAULT_SHARDS):
        self.count = count

    def spreads(self, items: int) -> bool:
        return False  # the shards would run here too, one after the other

    def map(self, work: Callable, calls: Sequence[tuple]) -> list:
        return self.start(work, calls).results()

    def start(self, work: Callable, calls: Sequence[tuple]) -> Pending:
        return _Later(work, calls)

    def close(self) -> None:
        pass


class ProcessPool:
    """Shard work in a pool of worker processes (started on first use, kept for the run): the
    arguments and results travel pickled, so a shard's frames are copied in and its rows out.
    Workers start from a fork server, never a fork of this process (its DuckDB and model threads)."""

    def __init__(self, count: int = DEFAULT_SHARDS, workers: int | None = None, inline_below: int = INLINE_BELOW):
        self.count = count
        self.workers = workers or multiprocessing.cpu_count()
        self.inline_below = inline_below
        self._pool: ProcessPoolExecutor | None = None

    def spreads(self, items: int) -> bool:
        return items >= self.inline_below

    def map(self, work: Callable, calls: Sequence[tuple]) -> list:
        return self.start(work, calls).results()

    def start(self, work: Callable, calls: Sequence[tuple]) -> Pending:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                             initializer=_end_with, initargs=(os.getpid(),))
        return _Futures([self._pool.submit(work, *args) for args in calls])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _end_with(parent: int) -> None:
    """A worker's initializer: the worker ends within a second of the process that started the
    pool (a killed run leaves no worker behind; the fork server, not it, is the worker's parent)."""
    def watch() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="curate-parent-watch", daemon=True).start()


# shard work -------------------------------------------------------------------------------

def score_shard(kind: ScorerKind, entry, prompts: pl.DataFrame, candidates: pl.DataFrame, run_id: str) -> pa.Table:
    """Scores of one shard's candidates (all unscored) by one scorer that needs no model, built here
    from its kind and its [[scorers]] entry."""
    return score_candidates(prompts, candidates, [kind.build_here(entry)], run_id)


def sign_shard(items: list[tuple[str, ...]], config: DedupConfig, parts: int) -> np.ndarray:
    """MinHash LSH signatures of one shard's items (curate.dedup.minhash.sign_items)."""
    return sign_items(items, config, parts)


def sharded_signatures(shards: Shards, config: DedupConfig, parts: int, items: list[tuple[str, ...]]) -> np.ndarray:
    """`sign_shard` over consecutive slices of `items`, one per shard, stacked in their order."""
    if not shards.spreads(len(items)):  # one call here: cheaper
        return sign_items(items, config, parts) if items else np.zeros((0, config.num_perm), np.uint32)
    size = -(-len(items) // shards.count)
    slices = [items[start:start + size] for start in range(0, len(items), size)] if items else []
    if len(slices) < 2:
        return sign_items(items, config, parts) if items else np.zeros((0, config.num_perm), np.uint32)
    return np.concatenate(shards.map(sign_shard, [(part, config, parts) for part in slices]))


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
