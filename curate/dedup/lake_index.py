"""Cross-run dedup without reading the lake: which kept pairs can collide with tonight's.

`dedup_pairs(new, kept)` decides; this module only picks `kept`, the kept pairs that can change a
decision, so the decisions are the ones the whole `pairs` table would give:
- exact: kept pairs with one of the new dedup keys (a semi-join in DuckDB);
- MinHash: kept pairs sharing an LSH band key with a new pair. Every kept pair's band keys are
  stored in `pair_dedup_index.band_keys` (a key hashes the settings, the band index and the band's
  signature values, so equal bands give equal keys: the buckets of minhash_duplicates' LSH);
- semantic (looked up for the new pairs that pass the exact and MinHash stages only: dedup_pairs'
  `semantic_kept`): kept pairs whose joined part vector (the three unit part vectors over sqrt 3) has an
  inner product >= the threshold with a new pair's, found by usearch HNSW indexes kept on disk next
  to the lake (`<lake>/index/semantic-<model>/NNNNNN.usearch`). The joined product is the mean of
  the part cosines, never below their minimum, so every pair that could pass the threshold is a
  neighbour. HNSW is approximate, as the k-means probes it replaces.
The index is segmented: each save adds the new vectors to the newest segment file while it holds
under SEGMENT_VECTORS, else starts a new one. A search maps one segment at a time, and only the
newest segments that hold the newest `semantic_window` kept pairs (DedupConfig; 0: all), so a
night's time and memory for the semantic probe do not grow with the lake past that window; exact
and MinHash candidates come from the whole lake. Embeddings stay cached by text in `embeddings`. A segment is written after the lake commit
that records its keys; vectors that missed their commit's segment (a crash) are re-indexed from the
lake on the next sync, and pairs kept before the index existed are indexed once, in batches.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from curate.dedup.config import DedupConfig
from curate.dedup.minhash import PartSignatures, band_keys, minhash_params_id  # noqa: F401 (band_keys: for callers)
from curate.dedup.pairs import PairSignatures, pair_texts
from curate.lake import dedup_reads, schemas
from curate.lake.dedup_reads import TABLE

# Vectors per segment file: the nights' vectors go into the newest segment until it holds this many.
# A search maps one segment at a time, so this bounds the index's share of a night's memory
# (a 384-dim model's joined vectors take 2.3 KB each in f16: about 1.1 GiB per full segment).
SEGMENT_VECTORS = 500_000


def union_signatures(texts: list[tuple[str, str, str]], config: DedupConfig,
                     signatures: PartSignatures | None = None) -> np.ndarray:
    """(n, num_perm) uint32: the MinHash of each pair's part-tagged shingles, as minhash_duplicates
    builds it for LSH (`signatures`, of three parts, may hold some texts' already)."""
    return (signatures or PartSignatures(config, 3)).union(texts)


def _distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values of `keys`, sorted (np.unique, without its slower path in numpy 2.3)."""
    ordered = np.sort(keys, axis=None)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def _list_column(rows: np.ndarray) -> pa.ListArray:
    """A 2-d array as an Arrow list column, one list per row (without a Python object per row)."""
    offsets = np.arange(0, rows.size + 1, max(rows.shape[1], 1), dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(rows.ravel()))


def vector_key(pair_id: str) -> int:
    return int(hashlib.sha256(pair_id.encode()).hexdigest()[:15], 16)


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-")


class KeptPairs:
    """The lake's kept pairs as dedup needs them: `candidates(fresh)` before dedup_pairs,
    `index_rows(kept)` committed with the kept pairs, `save(kept)` after that commit."""

    def __init__(self, lake, config: DedupConfig, embed=None, model: str | None = None,
                 index_dir: Path | None = None):
        self.lake, self.config, self.embed = lake, config, embed
        self.model = model or getattr(embed, "model_name", None) or "embed"
        self.params = minhash_params_id(config)
        self.index_dir = Path(index_dir or Path(lake.root) / "index") / f"semantic-{_slug(self.model)}"
        self._new: list[tuple[np.ndarray, np.ndarray]] = []  # added since the last save: (keys, vectors)
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    # the semantic index ---------------------------------------------------------------

    def _vectors(self, texts: list[tuple[str, str, str]]) -> np.ndarray:
        unique = list(dict.fromkeys(t for triple in texts for t in triple))
        vectors = np.asarray(self.embed(unique), dtype=np.float32)
        where = {t: k for k, t in enumerate(unique)}
        joined = np.hstack([vectors[[where[t[p]] for t in texts]] for p in range(3)])
        return joined / np.float32(np.sqrt(3.0))

    def _segment_files(self) -> list[Path]:
        return sorted(self.index_dir.glob("*.usearch")) if self.index_dir.exists() else []

    @staticmethod
    def _view(path: Path):
        """A segment memory-mapped: its pages count in this process's memory only while it is open."""
        from usearch.index import Index

        return Index.restore(str(path), view=True)

    @staticmethod
    def _size(path: Path) -> int:
        from usearch.index import Index

        return Index.metadata(str(path))["count_present"]

    def indexed(self) -> int:
        """Vectors in the saved segments."""
        return sum(self._size(f) for f in self._segment_files())

    def _searched_files(self) -> list[Path]:
        """The newest segments that hold the newest `semantic_window` kept pairs (all when 0)."""
        files, window = self._segment_files(), self.config.semantic_window
        if not window:
            return files
        chosen, held = [], 0
        for path in reversed(files):
            if held >= window:
                break
            chosen.append(path)
            held += self._size(path)
        return chosen[::-1]

    def _contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for path in self._segment_files():
            segment = self._view(path)
            if len(segment):
                found |= np.asarray(segment.contains(keys), dtype=bool).reshape(-1)
            del segment
        for added, _ in self._new:
            found |= np.isin(keys, added)
        return found

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if not len(keys):
            return
        fresh = ~self._contains(keys)
        if fresh.any():
            self._new.append((keys[fresh], vectors[fresh]))

    def _flush(self) -> None:
        """Write the vectors added since the last save: into the newest segment while it stays
        under SEGMENT_VECTORS (so segments stay few and a search stays one per segment), else as
        a new segment. Either way the file appears whole under its name (rename)."""
        if not self._new:
            return
        from usearch.index import Index

        keys = np.concatenate([k for k, _ in self._new])
        vectors = np.vstack([v for _, v in self._new])
        self.index_dir.mkdir(parents=True, exist_ok=True)
        files = self._segment_files()
        if files and self._size(files[-1]) + len(keys) <= SEGMENT_VECTORS:
            path, segment = files[-1], Index.restore(str(files[-1]))
        else:
            path = self.index_dir / f"{(int(files[-1].stem) + 1 if files else 0):06d}.usearch"
            segment = Index(ndim=vectors.shape[1], metric="ip", dtype="f16")
        segment.add(keys, vectors)
        partial = path.with_name(path.name + ".partial")
        segment.save(str(partial))
        partial.replace(path)
        self._new = []

    # keeping the index in step with the lake -------------------------------------------

    def sync(self) -> int:
        """Index the kept pairs the index lacks (pairs kept before it existed, or a file that missed
        a commit); returns how many. Cheap when nothing is missing: two counts."""
        lake, done = self.lake, 0
        if dedup_reads.indexed_pairs(lake, self.params) < lake.count("pairs"):
            missing = dedup_reads.unindexed_pair_ids(lake, self.params)
            for frame in dedup_reads.pair_texts(lake, missing):
                lake.commit({TABLE: self.index_rows(frame)})
                self.save()
                done += frame.height
        if self.config.semantic and self.embed is not None:
            done += self._repair_file()
        return done

    def _repair_file(self) -> int:
        if dedup_reads.indexed_vectors(self.lake, self.model) == self.indexed():
            return 0
        keys = dedup_reads.vector_keys(self.lake, self.model).to_numpy().astype(np.uint64)
        present = self._contains(keys)
        missing = pl.DataFrame({"vector_key": keys[~present].astype(np.int64)})
        for frame in dedup_reads.pair_texts_of_vectors(self.lake, missing, self.model):
            texts = [pair_texts(*row) for row in frame.select("prompt", "chosen", "rejected").iter_rows()]
            self._add(frame["vector_key"].to_numpy().astype(np.uint64), self._vectors(texts))
        self._flush()
        return len(missing)

    # what dedup reads and writes ----------------------------------------------------------

    def semantic_candidates(self, fresh: pl.DataFrame, signatures: PairSignatures | None = None) -> pl.DataFrame:
        """The kept pairs that the semantic stage can find close to `fresh`: dedup_pairs'
        `semantic_kept`, called with only the new pairs that passed exact and MinHash."""
        return self.candidates(fresh, exact_and_minhash=False, signatures=signatures)

    def candidates(self, fresh: pl.DataFrame, semantic: bool = True, exact_and_minhash: bool = True,
                   signatures: PairSignatures | None = None) -> pl.DataFrame:
        """The kept pairs (all `pairs` columns) that can collide with `fresh` at some stage (with
        `semantic` false: at the exact and MinHash stages; `exact_and_minhash` false: at the semantic one).
        `signatures`: the batch's texts and MinHashes, shared with dedup_pairs and index_rows."""
        if fresh.is_empty():
            return self.lake.no_rows("pairs")
        exact, minhash = self.config.exact and exact_and_minhash, self.config.minhash and exact_and_minhash
        semantic = self.config.semantic and semantic
        signatures = signatures or PairSignatures(self.config)
        texts = signatures.texts(fresh) if minhash or semantic else None
        near = None
        if semantic and self.embed is not None and self._segment_files():
            near = pa.table({"vector_key": self._neighbours(self._vectors(texts))})
        if not (exact or minhash or near is not None):
            return self.lake.no_rows("pairs")
        ids = dedup_reads.colliding_pair_ids(
            self.lake, fresh.select("dedup_key").to_arrow() if exact else None,
            pa.table({"band_key": _distinct(signatures.band_keys(texts))}) if minhash else None, near, self.params)
        return self.lake.rows_where_in("pairs", "pair_id", ids)  # the rows of those pairs' runs only

    def _neighbours(self, vectors: np.ndarray, k: int = 16) -> np.ndarray:
        """Keys of indexed pairs within the window with an inner product >= the threshold with some
        row of `vectors`; one segment mapped at a time."""
        found = []
        for path in self._searched_files():
            segment = self._view(path)
            todo, size, k_here = np.arange(len(vectors)), len(segment), k
            while len(todo) and size:
                k_here = min(k_here, size)
                matches = segment.search(vectors[todo], k_here)
                keys = np.asarray(matches.keys).reshape(len(todo), -1)
                close = (1.0 - np.asarray(matches.distances).reshape(len(todo), -1)
                         >= self.config.semantic_threshold - 1e-3)
                found.append(keys[close])
                if k_here >= size:
                    break
                todo, k_here = todo[close.all(axis=1)], k_here * 4  # every neighbour was close: look further
            del segment
        return np.unique(np.concatenate(found)).astype(np.int64) if found else np.zeros(0, np.int64)

    def index_rows(self, kept: pl.DataFrame, signatures: PairSignatures | None = None) -> pa.Table:
        """`pair_dedup_index` rows for `kept` pairs (to commit with them); their vectors wait for save().
        `signatures`: the batch's, when dedup_pairs computed theirs."""
        signatures = signatures or PairSignatures(self.config)
        texts = signatures.texts(kept)
        keys = np.array([vector_key(p) for p in kept["pair_id"].to_list()], dtype=np.uint64)
        semantic = self.config.semantic and self.embed is not None and kept.height > 0
        if semantic:
            self._pending = (keys, self._vectors(texts))
        bands = signatures.band_keys(texts)
        return schemas.conform(TABLE, pa.table({
            "pair_id": kept["pair_id"].to_arrow(), "minhash_params": pa.array([self.params] * kept.height),
            "band_keys": _list_column(bands),
            "vector_model": pa.array([self.model if semantic else None] * kept.height, pa.string()),
            "vector_key": pa.array(keys.astype(np.int64)),
            "created_at": pa.array([datetime.now(timezone.utc)] * kept.height, pa.timestamp("us", tz="UTC"))}))

    def save(self) -> None:
        """After the commit of index_rows: add the kept pairs' vectors to the index file."""
        if self._pending is not None:
            self._add(*self._pending)
            self._pending = None
            self._flush()
