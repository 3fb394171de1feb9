"""Near-duplicates: MinHash (rensa) on word shingles, LSH band keys, verified on the estimated Jaccard.

An item is a text or a tuple of texts (a pair: prompt, chosen, rejected). Tuples are compared part
by part: the similarity of two items is the smallest of their per-part Jaccard estimates, so a long
shared prompt cannot make two different answers look alike. LSH candidates come from one MinHash of
the union of the parts' shingles (tagged by part, so the parts are disjoint sets): its Jaccard is a
weighted mean of the per-part ones, never below their minimum, so no qualifying pair is lost to it.
A MinHash keeps, per permutation, the least hashed value over its set, so the union's signature is
the element-wise minimum of the parts' (`PartSignatures.union`): each distinct text of a part is
shingled and hashed once, however many items hold it. The LSH buckets are `band_keys` (the keys the
lake stores for cross-run dedup, curate.dedup.lake_index): two items are candidates when they share
a band's signature values, as in rensa's RMinHashLSH (both hash a band to 64 bits).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence

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
    """MinHash signatures of items' parts, one per distinct text of a part: a text is shingled and
    hashed the first time it is seen, then kept as long as this object (the pairs step makes one
    per batch: curate.dedup.pairs.PairSignatures). With several parts, part p's shingles are tagged
    "p|", as the LSH union needs."""

    def __init__(self, config: DedupConfig, parts: int):
        self.config, self.parts = config, parts
        self._row: list[dict[str, int]] = [{} for _ in range(parts)]
        self._blocks: list[list[np.ndarray]] = [[] for _ in range(parts)]

    def rows(self, items: Sequence[tuple[str, ...]]) -> list[np.ndarray]:
        """Per part, each item's row in `matrix(part)` (its text's signature); new texts are signed."""
        found = []
        for p, row in enumerate(self._row):
            new = [text for text in dict.fromkeys(item[p] for item in items) if text not in row]
            if new:
                row.update(zip(new, range(len(row), len(row) + len(new))))
                self._blocks[p].append(self._sign(new, p))
            found.append(np.fromiter((row[item[p]] for item in items), np.int64, len(items)))
        return found

    def matrix(self, part: int) -> np.ndarray:
        """(texts seen, num_perm) uint32: the signatures of the part's texts, by row."""
        blocks = self._blocks[part]
        if len(blocks) > 1:
            blocks[:] = [np.concatenate(blocks)]
        return blocks[0] if blocks else np.zeros((0, self.config.num_perm), np.uint32)

    def union(self, rows: list[np.ndarray]) -> np.ndarray:
        """(n, num_perm) uint32: for `rows` (as `rows` gives them) the MinHash of each item's parts
        together, the element-wise minimum of the parts' signatures."""
        union = self.matrix(0)[rows[0]]
        for p in range(1, self.parts):
            np.minimum(union, self.matrix(p)[rows[p]], out=union)
        return union

    def _sign(self, texts: list[str], part: int) -> np.ndarray:
        tag = f"{part}|" if self.parts > 1 else ""
        sets = [shingles(text, self.config.shingle_size, tag) for text in texts]
        digests = RMinHash.digest_matrix_from_token_sets(sets, self.config.num_perm, self.config.minhash_seed)
        return np.array(digests.to_rows(), dtype=np.uint32)


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
    index = signatures.rows(rows)
    parts = [signatures.matrix(p) for p in range(n_parts)]
    members: dict[int, list[int]] = {}  # bucket -> its items kept so far
    found = []
    for i, buckets in sorted(_shared_buckets(band_keys(signatures.union(index), config)).items()):
        if i >= n_kept:  # (an item that shares no bucket has no candidate and is no one's)
            hit = _closest(i, sorted({j for b in buckets for j in members.get(b, ())}), parts, index, config)
            if hit:
                found.append(hit)
                continue
        for b in buckets:
            members.setdefault(b, []).append(i)
    return found


def _closest(i: int, candidates: list[int], parts: list[np.ndarray], rows: list[np.ndarray],
             config: DedupConfig) -> tuple[int, int, float, list[float]] | None:
    """(i, the most similar candidate (then the earliest), its similarity, per-part similarities)
    when a candidate is at least the threshold in every part, else None.

    Per part, i's signature is compared with all its candidates' at once (the Jaccard estimate is
    the share of equal values, as RMinHash.jaccard computes it; 32-bit values: half the bytes to
    compare). The answers go first: candidates that share the prompt are common, and one part under
    the threshold settles a candidate."""
    candidates = np.array(candidates, dtype=np.int64)
    sims = np.empty((len(candidates), len(parts)))
    for p in list(range(1, len(parts))) + [0]:
        if not len(candidates):
            return None
        sims[:, p] = np.count_nonzero(parts[p][rows[p][candidates]] == parts[p][rows[p][i]], axis=1) / config.num_perm
        close = sims[:, p] >= config.minhash_threshold
        candidates, sims = candidates[close], sims[close]
    if not len(candidates):
        return None
    lowest = sims.min(axis=1)
    best = int(np.argmax(lowest))  # the most similar, then the earliest
    return i, int(candidates[best]), float(lowest[best]), sims[best].tolist()
