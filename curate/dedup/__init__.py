"""Dedup and decontamination: plain functions over Polars frames, no lake access (but for
`lake_index.KeptPairs`, which picks the kept pairs a batch can collide with through the named reads
of curate.lake.dedup_reads).

Stages run in order exact -> near-duplicate (MinHash LSH) -> semantic (embeddings); a row dropped at
one stage is not seen by the next. Every function takes the rows already kept (in the lake) besides
the new ones: kept rows always win, so tonight's rows are deduplicated against everything kept before.
Each returns (kept new rows, drops), drops being `dedup_drops` rows: drop_id = content_hash(
"dedup-drop", item_kind, item_id, reason), reason exact/minhash/semantic/contamination, kept_id the
row it collided with, similarity (1.0, estimated Jaccard, cosine, n-gram overlap), detail_json the
method's parameters and per-part evidence. When that row was itself dropped at a later stage, kept_id
is the row that finally survived and detail_json.via names the one the similarity was measured to.

API
- `DedupConfig`: exact, minhash, minhash_threshold (0.5), num_perm (256), bands (64; must divide
  num_perm, else ValueError), shingle_size (3 words), minhash_seed, semantic, semantic_threshold
  (0.9 cosine), semantic_cluster_size (500: k = ceil(n / 500)), semantic_probes (2: each item sits
  in its 2 nearest clusters), embed_batch_size,
  contamination_ngram (13), contamination_min_ngram (3), contamination_threshold (0.5),
  contamination_boilerplate (10), benchmarks (paths or "humaneval"/"ifeval").
  `DedupConfig.from_mapping(dict)` rejects unknown keys and wrong types (curate.options).
- `dedup_pairs(new_pairs, kept_pairs, config, embed=None, run_id="") -> (kept_new_pairs, drops)`:
  among new pairs the larger margin wins, then the smaller pair_id. Exact compares `dedup_key`
  (`pair_dedup_key`: normalised prompt + chosen + rejected). MinHash and semantic compare pairs part
  by part (prompt, chosen, rejected; `pair_texts`) and take the smallest part similarity: two pairs
  are near duplicates only when all three parts are. Rejected is included because a pair with the
  same prompt and chosen but another rejected is another preference signal (as in the exact key);
  parts are compared separately because in one concatenated text a long shared prompt would swamp
  the responses (and MiniLM reads only 256 word pieces), and because a prompt's embedding is then
  shared, and cached, across all its pairs. `embed(texts) -> (n, d) unit float32 array`; default: a
  process-wide `Embedder` without lake cache.
- `dedup_prompts(new_prompts, kept_prompts, config, run_id) -> (kept, drops)`: exact duplicates of
  prompt text (`prompt_dedup_key`); among new prompts the one with more verification fields wins.
- `Embedder(lookup=None, batch_size=64, model_path=None)`: `embed(texts)` / `embedder(texts)`;
  `lookup(text_hashes) -> {text_hash: vector}` reads the `embeddings` table; `take_new_rows()`
  returns `embeddings` rows (embedding_id = content_hash("embedding", model, text_hash)) for what the
  model embedded; `model_calls` / `texts_encoded` count model work. `text_hash(text)` is the key.
- `decontaminate_prompts(prompts, benchmark_texts, config, run_id) -> (kept, drops)` and
  `load_benchmark_texts(paths) -> [(id, text)]` (JSONL / Parquet / HF dataset dir / "humaneval" /
  "ifeval"; ids "benchmark:<stem>:<row index>").
- Lower level, over items in priority order with the first n_kept already kept, each returning
  (dropped index, kept index, ...): `exact_duplicates(keys, n_kept)`,
  `minhash_duplicates(texts_or_tuples, n_kept, config)`, `semantic_duplicates(part_vectors, n_kept, ...)`.
- Unchanged: `pair_dedup_key(prompt, chosen, rejected)`, `drop_exact_duplicates(pairs, kept_keys)`.

A caller (the pipeline's dedup step) reads kept rows and cached vectors from the lake, e.g.
    embedder = Embedder(lookup=lambda hashes: lake.embeddings_of(MODEL_NAME, hashes))
    kept, drops = dedup_pairs(new, lake.read("pairs"), config, embed=embedder, run_id=run_id)
    lake.commit({"pairs": kept.to_arrow(), "dedup_drops": drops.to_arrow(),
                 "embeddings": embedder.take_new_rows()})
(tests/test_dedup_lake.py runs exactly this over two nights.)
"""

from curate.dedup.config import DedupConfig, drop_id, prompt_text
from curate.dedup.contamination import decontaminate_prompts, load_benchmark_texts
from curate.dedup.exact import (dedup_prompts, drop_exact_duplicates, exact_duplicates, pair_dedup_key,
                                prompt_dedup_key)
from curate.dedup.minhash import minhash_duplicates, shingles
from curate.dedup.pairs import dedup_pairs, pair_texts
from curate.dedup.semantic import MODEL_NAME, Embedder, default_embedder, embedding_id, semantic_duplicates, text_hash

__all__ = [
    "DedupConfig", "Embedder", "MODEL_NAME", "decontaminate_prompts", "dedup_pairs", "dedup_prompts",
    "default_embedder", "drop_exact_duplicates", "drop_id", "embedding_id", "exact_duplicates",
    "load_benchmark_texts", "minhash_duplicates", "pair_dedup_key", "pair_texts",
    "prompt_dedup_key", "prompt_text", "semantic_duplicates", "shingles", "text_hash",
]
