"""Near-duplicates: MinHash LSH (rensa) on word shingles, verified on the estimated Jaccard.

An item is a text or a tuple of texts (a pair: prompt, chosen, rejected). Tuples are compared part
by part: the similarity of two items is the smallest of their per-part Jaccard estimates, so a long
shared prompt cannot make two different answers look alike. LSH candidates come from one MinHash of
the union of the parts' shingles (tagged by part, so the parts are disjoint sets): its Jaccard is a
weighted mean of the per-part ones, never below their minimum, so no qualifying pair is lost to it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
from rensa import RMinHash, RMinHashLSH

from curate.dedup.config import DedupConfig

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Words of the text after NFKC and case folding (as `normalise_text`); punctuation and spacing
    are ignored."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def shingles(text: str, size: int, tag: str = "") -> list[str]:
    """Word `size`-grams of `text`; a text with fewer words is one shingle (itself)."""
    w = words(text)
    if len(w) < size:
        return [tag + " ".join(w)]
    return [tag + " ".join(gram) for gram in zip(*(w[j:] for j in range(size)))]


def _items(items: Sequence) -> list[tuple[str, ...]]:
    return [(item,) if isinstance(item, str) else tuple(item) for item in items]


def minhash_duplicates(items: Sequence[str | Sequence[str]], n_kept: int = 0,
                       config: DedupConfig | None = None) -> list[tuple[int, int, float, list[float]]]:
    """(dropped index, kept index, similarity, per-part similarities) for items in priority order.

    The first `n_kept` items are already kept: they are never dropped and win every collision. Each
    later item is dropped when an earlier, still kept item has an estimated Jaccard of at least
    `config.minhash_threshold` in every part; it points at the most similar one (then the earliest).
    """
    config = config or DedupConfig()
    rows = _items(items)
    if len(rows) <= n_kept:
        return []
    n_parts = len(rows[0])
    if any(len(r) != n_parts for r in rows):
        raise ValueError("every item needs the same number of parts")
    k, perm, seed = config.shingle_size, config.num_perm, config.minhash_seed
    # One signature per distinct text of each part (a prompt is shared by many pairs).
    part_index: list[list[int]] = []
    part_shingles: list[list[list[str]]] = []
    part_hashes: list[list] = []
    for p in range(n_parts):
        tag = f"{p}|" if n_parts > 1 else ""
        position: dict[str, int] = {}
        index = [position.setdefault(r[p], len(position)) for r in rows]
        sh = [shingles(text, k, tag) for text in position]
        part_index.append(index)
        part_shingles.append(sh)
        part_hashes.append(RMinHash.from_token_sets(sh, perm, seed))
    if n_parts == 1:
        union = [part_hashes[0][i] for i in part_index[0]]
    else:
        union = RMinHash.from_token_sets(
            [[s for p in range(n_parts) for s in part_shingles[p][part_index[p][i]]] for i in range(len(rows))],
            perm, seed)
    lsh = RMinHashLSH(config.minhash_threshold, perm, config.bands)
    if n_kept:
        lsh.insert_many(union[:n_kept], 0)
    threshold = config.minhash_threshold
    # Per part, each item's signature as a row: the Jaccard estimates of one item against all its
    # LSH candidates in one comparison (the share of equal values, as RMinHash.jaccard computes it).
    # (MinHash values are 32-bit: half the bytes to compare.) The answers go first: candidates that
    # share the prompt are common, and one part under the threshold settles a candidate.
    signatures = [np.array([h.digest() for h in part_hashes[p]], dtype=np.uint32) for p in range(n_parts)]
    rows_of = [np.array(part_index[p], dtype=np.int64) for p in range(n_parts)]
    order = list(range(1, n_parts)) + [0]
    found = []
    for i in range(n_kept, len(rows)):
        candidates = np.array(sorted(lsh.query(union[i])), dtype=np.int64)
        sims = np.empty((len(candidates), n_parts))
        for p in order:
            if not len(candidates):
                break
            sims[:, p] = np.count_nonzero(
                signatures[p][rows_of[p][candidates]] == signatures[p][rows_of[p][i]], axis=1) / perm
            close = sims[:, p] >= threshold
            candidates, sims = candidates[close], sims[close]
        if len(candidates):
            lowest = sims.min(axis=1)
            best = int(np.argmax(lowest))  # the most similar, then the earliest
            found.append((i, int(candidates[best]), float(lowest[best]), sims[best].tolist()))
        else:
            lsh.insert(i, union[i])
    return found
