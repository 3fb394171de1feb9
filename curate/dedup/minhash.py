"""Near-duplicates: MinHash (rensa) on word shingles, LSH on band keys, verified on the estimated Jaccard.

An item is a text or a tuple of texts (a pair: prompt, chosen, rejected). Tuples are compared part
by part: the similarity of two items is the smallest of their per-part Jaccard estimates, so a long
shared prompt cannot make two different answers look alike. LSH candidates come from one MinHash of
the union of the parts' shingles (tagged by part, so the parts are disjoint sets): its Jaccard is a
weighted mean of the per-part ones, never below their minimum, so no qualifying pair is lost to it.
The LSH buckets are that signature's `band_keys` (the keys the lake stores for cross-run dedup,
curate.dedup.lake_index): two items are candidates when they share a band's signature values, as in
rensa's RMinHashLSH (both hash a band to 64 bits). Candidates are verified with RMinHash.jaccard on
the parts' MinHashes, so only the union signatures leave rensa as arrays (turning a signature into
Python ints costs more than computing it). `PartSignatures` computes each item's union signature and
band keys once, for as long as it is kept (the pairs step: a batch, curate.dedup.pairs.PairSignatures),
and a part's MinHash only for the texts of items that share a bucket.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np
from rensa import RMinHash

from curate.dedup.config import DedupConfig

_WORD = re.compile(r"\w+")
# ASCII characters outside \w ([A-Za-z0-9_]) map to spaces: then str.split() gives _WORD's matches.
_ASCII_NON_WORD = str.maketrans({chr(c): " " for c in range(128) if not _WORD.fullmatch(chr(c))})
_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def words(text: str) -> list[str]:
    """Words of the text after NFKC and case folding (as `normalise_text`); punctuation and spacing
    are ignored."""
    if text.isascii():  # NFKC leaves ASCII as it is and casefold is lower: the same words, faster
        return text.lower().translate(_ASCII_NON_WORD).split()
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def shingles(text: str, size: int, tag: str = "") -> list[str]:
    """Word `size`-grams of `text`; a text with fewer words is one shingle (itself)."""
    w = words(text)
    if len(w) < size:
        return [tag + " ".join(w)]
    return [tag + " ".join(gram) for gram in zip(*(w[j:] for j in range(size)))]


def minhash_params_id(config: DedupConfig) -> str:
    return hashlib.sha256(json.dumps(config.minhash_params(), sort_keys=True).encode()).hexdigest()[:16]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M2
        x = (x ^ (x >> np.uint64(27))) * _M3
        return x ^ (x >> np.uint64(31))


def band_keys(signatures: np.ndarray, config: DedupConfig) -> np.ndarray:
    """(n, bands) int64: per band a hash of the settings, the band index and its rows' values."""
    n, rows = signatures.shape[0], config.num_perm // config.bands
    salt = np.uint64(int(minhash_params_id(config), 16) & 0xFFFFFFFFFFFFFFFF)
    key = np.broadcast_to(_mix(salt ^ np.arange(config.bands, dtype=np.uint64)), (n, config.bands)).copy()
    banded = signatures.astype(np.uint64, copy=False).reshape(n, config.bands, rows)
    with np.errstate(over="ignore"):
        for r in range(rows):
            key = _mix(key * _M1 + banded[:, :, r])
    return key.view(np.int64)


class PartSignatures:
    """MinHashes of items (tuples of `parts` texts), each computed once and kept as long as this
    object (the pairs step makes one per batch: curate.dedup.pairs.PairSignatures): per distinct
    item the LSH signature of its parts together and that signature's band keys, and per text of a
    part that is compared its MinHash (an RMinHash, made when first needed). With several parts,
    part p's shingles are tagged "p|"."""

    def __init__(self, config: DedupConfig, parts: int,
                 sign: Callable[[list[tuple[str, ...]]], np.ndarray] | None = None):
        self.config, self.parts = config, parts
        # items -> their union signatures: sign_items here, or the same work spread over shards
        self._sign = sign or (lambda items: sign_items(items, config, parts))
        self._part: list[dict[str, RMinHash]] = [{} for _ in range(parts)]
        self._row: dict[tuple[str, ...], int] = {}  # item -> its row of _union and _keys
        self._union = np.zeros((0, config.num_perm), np.uint32)
        self._keys = np.zeros((0, config.bands), np.int64)

    def union(self, items: Sequence[tuple[str, ...]]) -> np.ndarray:
        """(n, num_perm) uint32: each item's LSH signature, the MinHash of its parts' shingles together."""
        rows = self._rows(items)  # (first: it may sign new items)
        return self._union[rows]

    def band_keys(self, items: Sequence[tuple[str, ...]]) -> np.ndarray:
        """(n, bands) int64: the `band_keys` of each item's LSH signature."""
        rows = self._rows(items)
        return self._keys[rows]

    def warm(self, items: Sequence[tuple[str, ...]]) -> None:
        """Make the part MinHashes of `items` (those that will be compared) in one call per part."""
        k, perm, seed = self.config.shingle_size, self.config.num_perm, self.config.minhash_seed
        for part, minhashes in enumerate(self._part):
            tag = f"{part}|" if self.parts > 1 else ""
            texts = [text for text in dict.fromkeys(item[part] for item in items) if text not in minhashes]
            if texts:
                minhashes.update(zip(texts, RMinHash.from_token_sets([shingles(t, k, tag) for t in texts], perm, seed)))

    def part_minhash(self, text: str, part: int) -> RMinHash:
        """The MinHash of one part's text, computed when first asked: only the items that share an
        LSH bucket are ever compared part by part, so most texts never need one."""
        found = self._part[part].get(text)
        if found is None:
            tag = f"{part}|" if self.parts > 1 else ""
            found = RMinHash.from_token_sets([shingles(text, self.config.shingle_size, tag)], self.config.num_perm,
                                             self.config.minhash_seed)[0]
            self._part[part][text] = found
        return found

    def _rows(self, items: Sequence[tuple[str, ...]]) -> np.ndarray:
        """Each item's row of the union signatures and band keys; new items are signed."""
        new = [item for item in dict.fromkeys(items) if item not in self._row]
        if new:
            self._row.update(zip(new, range(len(self._row), len(self._row) + len(new))))
            union = self._sign(new)
            self._union = np.concatenate([self._union, union])
            self._keys = np.concatenate([self._keys, band_keys(union, self.config)])
        return np.fromiter((self._row[item] for item in items), np.int64, len(items))


def sign_items(items: Sequence[tuple[str, ...]], config: DedupConfig, parts: int) -> np.ndarray:
    """(n, num_perm) uint32: each item's LSH signature, the MinHash of its parts' shingles together
    (part p's tagged "p|" when there are several), each distinct text of a part shingled once."""
    k, perm, seed = config.shingle_size, config.num_perm, config.minhash_seed
    sets = []  # per part: text -> shingles
    for p in range(parts):
        tag = f"{p}|" if parts > 1 else ""
        sets.append({text: shingles(text, k, tag) for text in dict.fromkeys(item[p] for item in items)})
    union = [[s for p in range(parts) for s in sets[p][item[p]]] for item in items]
    return np.array(RMinHash.digest_matrix_from_token_sets(union, perm, seed).to_rows(), dtype=np.uint32)


def _items(items: Sequence) -> list[tuple[str, ...]]:
    return [(item,) if isinstance(item, str) else tuple(item) for item in items]


def _shared_buckets(keys: np.ndarray) -> dict[int, list[int]]:
    """Item -> the LSH buckets (ids of equal band keys) that it shares with another item, by item;
    an item that shares none is left out."""
    flat = keys.ravel()
    order = np.argsort(flat)
    ordered = flat[order]
    bucket = np.empty(len(flat), np.int64)
    bucket[order] = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
    where = np.flatnonzero(np.bincount(bucket)[bucket] > 1)
    shared: dict[int, list[int]] = {}
    for item, b in zip((where // keys.shape[1]).tolist(), bucket[where].tolist()):
        shared.setdefault(item, []).append(b)
    return shared


def minhash_duplicates(items: Sequence[str | Sequence[str]], n_kept: int = 0,
                       config: DedupConfig | None = None,
                       signatures: PartSignatures | None = None) -> list[tuple[int, int, float, list[float]]]:
    """(dropped index, kept index, similarity, per-part similarities) for items in priority order.

    The first `n_kept` items are already kept: they are never dropped and win every collision. Each
    later item is dropped when an earlier, still kept item has an estimated Jaccard of at least
    `config.minhash_threshold` in every part; it points at the most similar one (then the earliest).
    `signatures` (of the items' number of parts, made with this config) may already hold some texts'.
    """
    config = config or DedupConfig()
    rows = _items(items)
    if len(rows) <= n_kept:
        return []
    n_parts = len(rows[0])
    if any(len(r) != n_parts for r in rows):
        raise ValueError("every item needs the same number of parts")
    if signatures is None:
        signatures = PartSignatures(config, n_parts)
    elif signatures.parts != n_parts or signatures.config.minhash_params() != config.minhash_params():
        raise ValueError("signatures made for other items or settings")
    keys = signatures.band_keys(rows)
    shared = _shared_buckets(keys)
    signatures.warm([rows[i] for i in shared])
    minhashes = [_PartMinHashes(signatures, rows, p) for p in range(n_parts)]
    members: dict[int, list[int]] = {}  # bucket -> its items kept so far
    found = []
    for i, buckets in sorted(shared.items()):
        if i >= n_kept:  # (an item that shares no bucket has no candidate and is no one's)
            hit = _closest(i, sorted({j for b in buckets for j in members.get(b, ())}), minhashes, config)
            if hit:
                found.append(hit)
                continue
        for b in buckets:
            members.setdefault(b, []).append(i)
    return found


class _PartMinHashes:
    """minhashes[p][j]: item j's MinHash of part p, computed on first use (PartSignatures.part_minhash)."""

    def __init__(self, signatures: PartSignatures, rows: list[tuple[str, ...]], part: int):
        self.signatures, self.rows, self.part = signatures, rows, part

    def __getitem__(self, index: int) -> RMinHash:
        return self.signatures.part_minhash(self.rows[index][self.part], self.part)


def _closest(i: int, candidates: list[int], minhashes: list[_PartMinHashes],
             config: DedupConfig) -> tuple[int, int, float, list[float]] | None:
    """(i, the most similar candidate (then the earliest), its similarity, per-part similarities)
    when a candidate is at least the threshold in every part, else None. The answers are compared
    first: candidates that share the prompt are common, and one part under the threshold settles
    a candidate."""
    candidates = np.array(candidates, dtype=np.int64)
    sims = np.empty((len(candidates), len(minhashes)))
    for p in list(range(1, len(minhashes))) + [0]:
        if not len(candidates):
            return None
        mine, theirs = minhashes[p][i], minhashes[p]
        sims[:, p] = [mine.jaccard(theirs[j]) for j in candidates.tolist()]
        close = sims[:, p] >= config.minhash_threshold
        candidates, sims = candidates[close], sims[close]
    if not len(candidates):
        return None
    lowest = sims.min(axis=1)
    best = int(np.argmax(lowest))  # the most similar, then the earliest
    return i, int(candidates[best]), float(lowest[best]), sims[best].tolist()
