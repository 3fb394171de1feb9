"""Dedup throughput on synthetic texts: MinHash LSH (rensa) and semantic dedup (MiniLM, CPU).

Texts: 40-80 words drawn (Zipf-weighted, fixed seed) from a list of common English words; 5% are
near-duplicates (1-4 words edited) of another text. It prints, each on its own line:

- MinHash, n texts: shingling + signatures (rensa), LSH insert/query + verification, texts/s overall
  (`minhash_duplicates`, default config), and the drops found.
- Semantic, on the first --semantic-n texts (embedding 100k texts on 2 CPU cores takes hours): bare
  `model.encode` (batch 64, normalised) vs the end-to-end semantic stage (an uncached `Embedder`:
  normalisation, hashing, the same encode, then `semantic_duplicates`: k-means + within-cluster
  cosine); the ratio of the two; and an extrapolation to n, linear in the text count (encode is per
  text; the cluster stage is n x cluster_size x dim). The cluster stage alone is also timed at full n
  on synthetic unit vectors, so the extrapolation of its share is checked, not assumed.

    .venv/bin/python bench/dedup_throughput.py [--n 100000] [--semantic-n 100000] [--repeats 3] [--skip-semantic]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curate.dedup.synthetic import WORDS as SHARED_WORDS  # noqa: E402  (after the path tweak)

WORDS = SHARED_WORDS[:287]  # the list this benchmark was first measured with


def synthetic_texts(n: int, seed: int = 0, dup_share: float = 0.05) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 0.8 for i in range(len(WORDS))]
    texts: list[list[str]] = []
    for _ in range(n):
        if texts and rng.random() < dup_share:
            words = list(rng.choice(texts))
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(words))
                words[at] = rng.choice(WORDS)
        else:
            words = rng.choices(WORDS, weights=weights, k=rng.randint(40, 80))
        texts.append(words)
    return [" ".join(w) for w in texts]


def bench_minhash(texts: list[str]) -> None:
    from rensa import RMinHash, RMinHashLSH

    from curate.dedup import DedupConfig, minhash_duplicates, shingles

    config = DedupConfig()
    began = time.perf_counter()
    sets = [shingles(t, config.shingle_size) for t in texts]
    hashes = RMinHash.from_token_sets(sets, config.num_perm, config.minhash_seed)
    signed = time.perf_counter()
    lsh = RMinHashLSH(config.minhash_threshold, config.num_perm, config.bands)
    for i, h in enumerate(hashes):
        lsh.query(h)
        lsh.insert(i, h)
    indexed = time.perf_counter()
    found = minhash_duplicates(texts, 0, config)
    total = time.perf_counter() - indexed
    n = len(texts)
    print(f"minhash: {n} texts, num_perm {config.num_perm}, bands {config.bands}, "
          f"shingles of {config.shingle_size} words")
    print(f"minhash: shingles + signatures {signed - began:.2f} s, LSH query + insert {indexed - signed:.2f} s")
    print(f"minhash: minhash_duplicates end to end {total:.2f} s = {n / total:,.0f} texts/s, {len(found)} drops")


def bench_semantic(texts: list[str], full_n: int, batch_size: int, repeats: int) -> None:
    import statistics

    import numpy as np
    import torch

    from curate.dedup import DedupConfig, Embedder, semantic_duplicates

    config = DedupConfig()
    model = Embedder(batch_size=batch_size).model
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    n = len(texts)
    bare, embed, cluster, drops = [], [], [], 0
    for _ in range(repeats):  # interleaved, so load from other processes hits both alike
        began = time.perf_counter()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False)
        bare.append(time.perf_counter() - began)
        began = time.perf_counter()
        embedder = Embedder(batch_size=batch_size)  # uncached: every text reaches the model
        embedder._model = model
        vectors = embedder.embed(texts)
        embedded = time.perf_counter()
        drops = len(semantic_duplicates([vectors], 0, config.semantic_threshold, config.semantic_cluster_size,
                                        config.semantic_probes))
        embed.append(embedded - began)
        cluster.append(time.perf_counter() - embedded)
    bare_s, embed_s, cluster_s = (statistics.median(x) for x in (bare, embed, cluster))
    e2e = embed_s + cluster_s
    print(f"semantic: {n} texts, batch {batch_size}, torch threads {torch.get_num_threads()}, "
          f"median of {repeats} interleaved runs")
    print(f"semantic: bare model.encode {bare_s:.2f} s ({n / bare_s:,.1f} texts/s)")
    print(f"semantic: end to end {e2e:.2f} s (embed {embed_s:.2f} s, cluster + compare {cluster_s:.2f} s, "
          f"{drops} drops); ratio to bare encode {e2e / bare_s:.3f}")
    rng = np.random.default_rng(0)
    fake = rng.normal(size=(full_n, vectors.shape[1])).astype(np.float32)
    fake /= np.linalg.norm(fake, axis=1, keepdims=True)
    began = time.perf_counter()
    semantic_duplicates([fake], 0, config.semantic_threshold, config.semantic_cluster_size, config.semantic_probes)
    cluster_full = time.perf_counter() - began
    scale = full_n / n
    print(f"semantic: cluster + compare at n={full_n} (synthetic unit vectors) {cluster_full:.2f} s")
    print(f"semantic: extrapolated to n={full_n}: bare encode {bare_s * scale:,.0f} s, end to end "
          f"{embed_s * scale + cluster_full:,.0f} s (embed scaled linearly + the measured cluster stage), "
          f"ratio {(embed_s * scale + cluster_full) / (bare_s * scale):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--semantic-n", type=int, default=None, help="texts to embed (default: --n)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-semantic", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = synthetic_texts(args.n)
    print(f"cpu cores {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}")
    bench_minhash(texts)
    if not args.skip_semantic:
        bench_semantic(texts[: args.semantic_n or args.n], args.n, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
