"""One night against lakes of growing size: does a night cost the same whatever the lake holds?

For each size, a synthetic lake of that many existing pairs (bench/synthetic_lake.py: prompts,
candidates, quality and math_verify scores, pairs, audits, written in SQL) with their dedup index:
MinHash band keys in `pair_dedup_index` and synthetic unit vectors in the usearch index (random
band keys and vectors: embedding millions of pairs for real would take days here). The lake is
built once under --workdir and copied for each night. The night, in a fresh process: `--prompts`
math prompts x 8 candidates committed (no LLM: "The answer is N." texts), scored (quality gates and
math_verify), paired (margin, best vs worst and all pairs above the margin), deduplicated against
the lake (exact, MinHash, semantic; curate.dedup.lake_index), audited as `curate run` audits
(curate.audit.checks.audit_run: the run's pairs, math_verify re-run on their texts) and exported (this
run's pairs, curate.publish.stream). The night's embedder is a bag-of-words hash (no model) with the real
embedder's shape. Prints time and peak RSS per stage, the index sizes on disk, and every view's
time on each lake after its night.

    .venv/bin/python bench/nightly_scale.py [--sizes 100000,1000000] [--prompts 10000]
        [--workdir /tmp/nightly-scale]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.recurate_scale import RssSampler  # noqa: E402

STAGES = ("candidates", "score", "pairs", "dedup", "audit", "export")
PER_PROMPT = 8
DIM = 384


def hash_embed(texts):
    """A bag-of-words embedding with MiniLM's shape (unit rows of 384 floats), no model."""
    import numpy as np

    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.split():
            out[i, zlib.crc32(word.encode()) % DIM] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


hash_embed.model_name = "bench-hash"


def build_lake(root: Path, pairs: int) -> None:
    """The synthetic lake (its pair_facts included), its pair_dedup_index rows and the usearch
    segments of its pairs.

    Segments are written as the index writes them (SEGMENT_VECTORS vectors each). The newest
    segments holding the default semantic window (the only ones a night searches) get a random
    unit vector per pair; older segments, never searched, are links to the first of those, so that
    the segments hold as many vectors as the lake has pairs (as `sync` checks) without building an
    HNSW graph over vectors nobody reads (a graph takes about 4 minutes per 500,000 vectors here)."""
    import os

    import numpy as np
    from usearch.index import Index

    from bench.synthetic_lake import fill
    from curate.dedup import DedupConfig
    from curate.dedup.lake_index import SEGMENT_VECTORS, KeptPairs
    from curate.lake.catalog import Lake

    with Lake(root) as lake:
        kept = KeptPairs(lake, DedupConfig(), embed=hash_embed)
        for offset in range(0, pairs, 1_000_000):  # a million pairs per snapshot
            run_id = f"history-{offset}"
            fill(lake, min(1_000_000, pairs - offset), run_id=run_id, offset=offset // 2)
            lake.con.execute(f"""INSERT INTO lake.pair_dedup_index
                SELECT pair_id, '{kept.params}', list_transform(range(64), b -> (hash(pair_id, b) >> 1)::BIGINT),
                       'bench-hash', (hash(pair_id) >> 1)::BIGINT, created_at FROM lake.pairs WHERE run_id = '{run_id}'""")
        sizes = [SEGMENT_VECTORS] * (pairs // SEGMENT_VECTORS) + ([pairs % SEGMENT_VECTORS] if pairs % SEGMENT_VECTORS else [])
        searched = 1
        while searched < len(sizes) and sum(sizes[-searched:]) < DedupConfig().semantic_window:
            searched += 1
        built, linked = sizes[-searched:], len(sizes) - searched
        assert not linked or built[0] == SEGMENT_VECTORS, "older segments are links to a full one"
        keys = lake.query(f"SELECT vector_key FROM pair_dedup_index ORDER BY pair_id "
                          f"LIMIT {sum(built)}")["vector_key"].to_numpy().astype(np.uint64)
        kept.index_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        real, start = [], 0
        for number, size in enumerate(built, start=linked):
            # lighter HNSW settings than the library's for the history only: building it is setup,
            # not the night, and the default settings take over an hour for a million vectors here
            index = Index(ndim=3 * DIM, metric="ip", dtype="f16", connectivity=8, expansion_add=16)
            for part in np.array_split(keys[start:start + size], max(1, size // 100_000)):
                vectors = rng.standard_normal((len(part), 3 * DIM)).astype(np.float32)
                index.add(part, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
            start += size
            real.append(kept.index_dir / f"{number:06d}.usearch")
            index.save(str(real[-1]))
        for number in range(linked):  # never searched: links to one real segment
            os.link(real[0], kept.index_dir / f"{number:06d}.usearch")
        assert kept.indexed() == lake.count("pairs")


def link_copy(source: Path, target: Path) -> None:
    """A copy of a built lake for one night: the catalog copied, data and index files hard-linked
    (both are written once and replaced, never changed in place)."""
    import os

    for folder, _, files in os.walk(source):
        into = target / Path(folder).relative_to(source)
        into.mkdir(parents=True, exist_ok=True)
        for name in files:
            (shutil.copy2 if name.startswith("catalog") else os.link)(Path(folder) / name, into / name)


def night(data_dir: Path, prompts_count: int) -> dict:
    import polars as pl

    from bench.synthetic_lake import TS  # noqa: F401  (same lake shape)
    from curate.audit.checks import audit_run
    from curate.dedup import DedupConfig, dedup_pairs
    from curate.dedup.lake_index import KeptPairs
    from curate.lake.catalog import Lake
    from curate.lake.views import views
    from curate.pairs import rule
    from curate.pairs.registry import build_pairs
    from curate.publish.export import ExportOptions
    from curate.publish.stream import export_lake
    from curate.score import score_candidates
    from curate.score.quality import QualityScorer
    from curate.score.verifiers import MathAnswerScorer

    sampler, run_id = RssSampler(), "tonight"
    lake = Lake(data_dir / "lake")
    counts = {}
    with sampler.measure("candidates"):
        lake.con.execute("BEGIN")
        lake.con.execute(f"""INSERT INTO lake.runs (run_id, started_at, status, config_json)
            VALUES ('{run_id}', now(), 'running', '{{}}')""")
        lake.con.execute(f"""INSERT INTO lake.prompts (prompt_id, source, task, messages, reference_answer, run_id, created_at)
            SELECT md5('night-p' || i), 'night', 'math',
                   [{{'role': 'user', 'content': 'Tonight ' || i || ': what is ' || i || ' plus ' || (i % 7) || '?'}}],
                   (i + i % 7)::VARCHAR, '{run_id}', now() FROM range({prompts_count}) t(i)""")
        lake.con.execute(f"""INSERT INTO lake.candidates (candidate_id, prompt_id, model, sampling_json, sample_index,
                                seed, text, finish_reason, run_id, created_at)
            SELECT md5('night-c' || i || '-' || s), md5('night-p' || i), 'bench', '{{}}', s, s,
                   'We add ' || i || ' and ' || (i % 7) || ' step by step, sample ' || s || '. The answer is '
                   || (i + i % 7 + CASE WHEN s % 3 = 0 THEN 0 ELSE s END) || '.', 'stop', '{run_id}', now()
            FROM range({prompts_count}) t(i), range({PER_PROMPT}) u(s)""")
        lake.con.execute("COMMIT")
        prompts = lake.query("SELECT * FROM prompts WHERE run_id = ?", [run_id])
        candidates = lake.query("SELECT * FROM candidates WHERE run_id = ?", [run_id])
        counts["candidates"] = candidates.height
    with sampler.measure("score"):
        scores = score_candidates(prompts, candidates, [QualityScorer(), MathAnswerScorer()], run_id)
        counts["scores"] = lake.commit({"scores": scores})["scores"]
        scores = pl.from_arrow(scores)
    with sampler.measure("pairs"):
        with rule.counting():
            built = pl.concat([build_pairs("margin", prompts, candidates, scores,
                                           {"scorer": "math_verify", "pairing": pairing}, run_id)
                               for pairing in ("best_vs_worst", "all_pairs_above_margin")])
        counts["pairs_built"] = built.height
    with sampler.measure("dedup"):
        config = DedupConfig()
        stored = lake.existing_ids("pairs", built["pair_id"].to_list())
        fresh = built.filter(~pl.col("pair_id").is_in(list(stored))).unique("pair_id")
        kept_pairs = KeptPairs(lake, config, embed=hash_embed)
        kept_pairs.sync()
        probed = kept_pairs.candidates(fresh, semantic=False)
        kept, drops = dedup_pairs(fresh, probed, config, embed=hash_embed, run_id=run_id,
                                  semantic_kept=kept_pairs.semantic_candidates)
        counts["kept_pairs_read"] = probed.height
        counts["pairs_new"] = lake.commit({"pairs": kept.to_arrow(), "dedup_drops": drops.to_arrow(),
                                           "pair_dedup_index": kept_pairs.index_rows(kept)})["pairs"]
        kept_pairs.save()
        counts["dropped"] = drops.height
    with sampler.measure("audit"):
        audited = audit_run(lake, run_id)
        counts["audited"] = audited["audited"]
        counts["audit_refuted"] = sum(row["refuted"] for row in audited["summary"].to_dicts())
    with sampler.measure("export"):
        written = export_lake(lake, data_dir / "export", ExportOptions(format="parquet", runs=[run_id]))
        counts["exported"] = written["total"]
    sampler.stop()
    index_files = sorted((data_dir / "lake" / "files").rglob("*.parquet"))
    counts["band_table_mib"] = round(sum(f.stat().st_size for f in index_files if "pair_dedup_index" in str(f)) / 2**20, 1)
    segments = kept_pairs._segment_files()
    counts["usearch_mib"] = round(sum(f.stat().st_size for f in segments) / 2**20, 1)
    counts["usearch_searched_mib"] = round(sum(f.stat().st_size for f in kept_pairs._searched_files()) / 2**20, 1)
    counts["usearch_segments"] = len(segments)
    counts["facts_mib"] = round(sum(f.stat().st_size for f in index_files
                                    if any(t in str(f) for t in ("pair_facts", "pair_stats_parts", "pair_audit_facts")))
                             / 2**20, 1)
    view_seconds = {}
    for name in views():  # every row fetched (as Arrow), as a reader would
        began = time.monotonic()
        lake.con.execute(f"SELECT * FROM {name}").to_arrow_table()
        view_seconds[name] = round(time.monotonic() - began, 2)
    lake.close()
    return {"seconds": {s: round(sampler.seconds.get(s, 0.0), 1) for s in STAGES},
            "peak_rss_mib": {s: round(sampler.peaks.get(s, 0.0)) for s in STAGES}, "views": view_seconds, **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/nightly-scale"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(night(Path(args.child), args.prompts)))
        return
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        built = args.workdir / f"lake-{size}"
        if not (built / "done").exists():
            shutil.rmtree(built, ignore_errors=True)
            began = time.monotonic()
            build_lake(built / "lake", size)
            (built / "done").write_text("")
            print(f"{size:,} pairs: lake built in {time.monotonic() - began:.0f} s", flush=True)
        work = args.workdir / f"night-{size}"
        shutil.rmtree(work, ignore_errors=True)
        link_copy(built / "lake", work / "lake")
        with sqlite3.connect(work / "lake" / "catalog.sqlite") as catalog:  # the copy's own files
            catalog.execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'",
                            [f"{(work / 'lake' / 'files').resolve()}/"])
        done = subprocess.run([sys.executable, __file__, "--child", str(work), "--prompts", str(args.prompts)],
                              capture_output=True, text=True, cwd=work)
        if done.returncode:
            sys.exit(f"{size:,} pairs failed:\n{done.stderr[-4000:]}")
        result = results[size] = json.loads(done.stdout.strip().splitlines()[-1])
        total = sum(result["seconds"].values())
        print(f"\nlake of {size:,} pairs, night of {args.prompts:,} prompts x {PER_PROMPT}: {total:.1f} s; "
              f"{result['candidates']:,} candidates, {result['scores']:,} scores, {result['pairs_built']:,} pairs built, "
              f"{result['kept_pairs_read']:,} kept pairs read for dedup, {result['dropped']:,} dropped, "
              f"{result['pairs_new']:,} new, {result['audited']:,} audited ({result['audit_refuted']:,} refuted in the "
              f"lake), {result['exported']:,} exported", flush=True)
        for stage in STAGES:
            print(f"  {stage:10s} {result['seconds'][stage]:8.1f} s   peak RSS {result['peak_rss_mib'][stage]:6d} MiB")
        print(f"  dedup index on disk: pair_dedup_index {result['band_table_mib']} MiB, usearch "
              f"{result['usearch_mib']} MiB in {result['usearch_segments']} segments ({result['usearch_searched_mib']} "
              f"MiB searched); pair_facts + pair_stats_parts + pair_audit_facts {result['facts_mib']} MiB")
        print("  views: " + ", ".join(f"{name} {s:.2f} s" for name, s in result["views"].items()), flush=True)
        shutil.rmtree(work, ignore_errors=True)
    if len(results) > 1:
        small, large = min(results), max(results)
        ratio = sum(results[large]["seconds"].values()) / sum(results[small]["seconds"].values())
        print(f"night at {large:,} / night at {small:,}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
