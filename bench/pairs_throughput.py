"""Margin-pair throughput: build pairs from synthetic scored candidates shaped like the lake tables.

By default 125,000 prompts x 8 candidates = 1,000,000 candidates, uniform random scores (rounded to
0.01, so ties occur), short texts. Each mode runs in a fresh process so its peak resident set size
is its own (after a small warm-up build). It prints, each on its own line: wall time, candidates/s,
pairs built, the time in finish_pairs, the build's wall time again with finish_pairs' per-pair
pair_id / dedup_key hashing (over whole columns, curate.bulk_ids) swapped for plain concatenation, and peak
RSS (ru_maxrss) before and after the build.

    .venv/bin/python bench/pairs_throughput.py [--prompts 125000] [--per-prompt 8]
        [--modes best_vs_worst,all_pairs_above_margin]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("best_vs_worst", "best_vs_random", "all_pairs_above_margin")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def synthetic(prompts_count: int, per_prompt: int, seed: int = 0):
    """(prompts, candidates, scores) as Polars frames with the lake schemas (curate.schemas)."""
    import numpy as np
    import polars as pl

    from curate import schemas

    now = datetime(2024, 7, 8, tzinfo=timezone.utc)
    n = prompts_count * per_prompt
    rng = np.random.default_rng(seed)
    prompt_index = pl.Series("p", np.arange(prompts_count))
    prompts = pl.DataFrame({"p": prompt_index}).select(
        pl.format("{}", pl.col("p")).str.zfill(32).alias("prompt_id"),
        pl.lit("bench").alias("source"), pl.lit("math").alias("task"),
        pl.concat_list(pl.struct(pl.lit("user").alias("role"),
                                 pl.format("What is {} + {}?", pl.col("p"), pl.col("p") % 97).alias("content")))
        .alias("messages"),
        pl.lit("0").alias("reference_answer"), pl.lit("r0").alias("run_id"), pl.lit(now).alias("created_at"))
    frame = pl.DataFrame({"i": np.arange(n), "score": np.round(rng.random(n), 2),
                          "words": rng.integers(1, 30, n)})
    candidates = frame.select(
        pl.format("c{}", pl.col("i")).str.zfill(32).alias("candidate_id"),
        pl.format("{}", pl.col("i") // per_prompt).str.zfill(32).alias("prompt_id"),
        pl.lit("bench-model").alias("model"), pl.lit("{}").alias("sampling_json"),
        (pl.col("i") % per_prompt).cast(pl.Int32).alias("sample_index"), pl.col("i").alias("seed"),
        pl.concat_str([pl.lit("The answer is "), pl.col("i").cast(pl.Utf8), pl.lit(". "),
                       pl.lit("step ").repeat_by(pl.col("words")).list.join("")]).alias("text"),
        pl.lit("r0").alias("run_id"), pl.lit(now).alias("created_at"))
    # the reward scores, and the quality rows the pipeline always stores first (every candidate
    # passes): without them the pairing rule runs the quality gates on every text itself
    scores = pl.concat([frame.select(
        pl.format("s{}{}", pl.lit(scorer[0]), pl.col("i")).str.zfill(32).alias("score_id"),
        pl.format("c{}", pl.col("i")).str.zfill(32).alias("candidate_id"),
        pl.format("{}", pl.col("i") // per_prompt).str.zfill(32).alias("prompt_id"),
        pl.lit(scorer).alias("scorer"), pl.lit("1").alias("scorer_version"),
        (pl.col("score") if scorer.startswith("reward") else pl.lit(1.0)).alias("score"),
        pl.lit("ok").alias("status"), pl.lit("r0").alias("run_id"), pl.lit(now).alias("created_at"))
        for scorer in ("reward:bench", "quality")])

    def shaped(name, df):
        missing = [f for f in schemas.table(name).arrow_schema() if f.name not in df.columns]
        df = df.with_columns(pl.lit(None).alias(f.name) for f in missing)
        return pl.from_arrow(schemas.conform(name, df.to_arrow()))

    return shaped("prompts", prompts), shaped("candidates", candidates), shaped("scores", scores)


def finish_without_hashing(picked, strategy: str, params: dict, run_id: str):
    """finish_pairs with pair_id and dedup_key as plain concatenations instead of per-pair sha256:
    the same rows otherwise, to measure what the hashing costs."""
    import polars as pl

    from curate.pairs.rows import finish_pairs

    plain = [pl.concat_str("chosen_id", "rejected_id", "prompt_id").alias("pair_id"),
             pl.concat_str("chosen_id", "rejected_id").alias("dedup_key")]
    return finish_pairs(picked, strategy, params, run_id, keys=plain)


def run_mode(mode: str, prompts_count: int, per_prompt: int) -> None:
    import polars as pl

    import curate.pairs.margin as margin

    began = time.perf_counter()
    prompts, candidates, scores = synthetic(prompts_count, per_prompt)
    made = time.perf_counter() - began
    rss_before = rss_mib()
    finish_seconds = []
    finish = margin.finish_pairs

    def timed_finish(*args, **kwargs):
        start = time.perf_counter()
        result = finish(*args, **kwargs)
        finish_seconds.append(time.perf_counter() - start)
        return result

    margin.finish_pairs = timed_finish
    config = margin.MarginOptions(scorer="reward:bench", pairing=mode)
    margin.build(prompts.head(1000), candidates.head(8000), scores.filter(pl.col("candidate_id").is_in(
        candidates.head(8000)["candidate_id"].implode())), config, run_id="warm-up")
    finish_seconds.clear()
    began = time.perf_counter()
    pairs = margin.build(prompts, candidates, scores, config, run_id="bench")
    wall = time.perf_counter() - began
    rss_after = rss_mib()
    margin.finish_pairs = finish_without_hashing
    began = time.perf_counter()
    unhashed = margin.build(prompts, candidates, scores, config, run_id="bench")
    wall_unhashed = time.perf_counter() - began
    assert unhashed.height == pairs.height
    n = candidates.height
    print(f"\nmode {mode}: {prompts.height} prompts x {per_prompt} candidates (synthetic data built in {made:.1f} s)")
    print(f"wall time            {wall:.2f} s")
    print(f"candidates/s         {n / wall:,.0f}")
    print(f"pairs built          {pairs.height:,}")
    print(f"finish_pairs         {finish_seconds[0]:.2f} s = {finish_seconds[0] / wall:.0%} of wall "
          f"(selection in Polars: {wall - finish_seconds[0]:.2f} s)")
    print(f"without hashing      {wall_unhashed:.2f} s wall (pair_id/dedup_key not hashed), "
          f"so hashing ~ {wall - wall_unhashed:.2f} s = {(wall - wall_unhashed) / wall:.0%}")
    print(f"peak RSS before      {rss_before:,.0f} MiB")
    print(f"peak RSS after       {rss_after:,.0f} MiB")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=125_000)
    parser.add_argument("--per-prompt", type=int, default=8)
    parser.add_argument("--modes", default="best_vs_worst,all_pairs_above_margin")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode in this process
    args = parser.parse_args()
    if args.one:
        run_mode(args.one, args.prompts, args.per_prompt)
        return
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r} ({', '.join(MODES)})")
        subprocess.run([sys.executable, __file__, "--one", mode, "--prompts", str(args.prompts),
                        "--per-prompt", str(args.per_prompt)], check=True)


if __name__ == "__main__":
    main()
