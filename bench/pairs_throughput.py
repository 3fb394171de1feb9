"""Margin-pair throughput: build pairs from synthetic scored candidates shaped like the lake tables.

By default 125,000 prompts x 8 candidates = 1,000,000 candidates, uniform random scores (rounded to
0.01, so ties occur), short texts, and the quality rows the pipeline always stores (every candidate
passes; without them the pairing rule would run the quality gates on every text). Each mode runs in
a fresh process so its peak resident set size is its own (after a small warm-up build), and builds
`--runs` times; the fastest counts. It prints, each on its own line: wall time, candidates/s, pairs
built, pairs/s, the seconds in each stage of the build (STAGES), the same selection in bare Polars
(`raw_polars`: no pairing rule, evidence, ids or schema) and the build's time as a multiple of it,
and peak RSS (ru_maxrss) before and after. The machine's load average is printed before and after.

    .venv/bin/python bench/pairs_throughput.py [--prompts 125000] [--per-prompt 8] [--runs 2]
        [--modes best_vs_worst,all_pairs_above_margin]
"""

from __future__ import annotations

import argparse
import os
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
    """(prompts, candidates, scores) as Polars frames with the lake schemas (curate.lake.schemas)."""
    import numpy as np
    import polars as pl

    from curate.lake import schemas
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


def raw_polars(prompts, candidates, scores, mode: str, cap: int = 8):
    """The same selection in bare Polars, without the pairing rule, evidence, ids or schema: the
    scorer's rows joined to the candidates, then per prompt the arg max / arg min (best_vs_worst)
    or every ordered pair with a positive margin, the `cap` largest kept (all_pairs_above_margin),
    and the texts and prompt joined on. What this costs is what Polars itself needs."""
    import polars as pl

    scored = (scores.filter(pl.col("scorer") == "reward:bench").select("candidate_id", "score")
              .join(candidates.select("candidate_id", "prompt_id", "text"), on="candidate_id"))
    if mode == "best_vs_worst":
        picks = scored.group_by("prompt_id").agg(
            pl.col("candidate_id").get(pl.col("score").arg_max()).alias("chosen_id"),
            pl.col("candidate_id").get(pl.col("score").arg_min()).alias("rejected_id"),
            pl.col("score").max().alias("chosen_score"), pl.col("score").min().alias("rejected_score"))
    else:
        side = scored.select("prompt_id", "candidate_id", "score")
        picks = (side.join(side, on="prompt_id", suffix="_r").filter(pl.col("score") > pl.col("score_r"))
                 .with_columns((pl.col("score") - pl.col("score_r")).alias("margin"))
                 .sort(["prompt_id", "margin"], descending=[False, True])
                 .group_by("prompt_id", maintain_order=True).head(cap)
                 .rename({"candidate_id": "chosen_id", "candidate_id_r": "rejected_id"}))
    texts = scored.select("candidate_id", "text")
    return (picks.join(texts.rename({"candidate_id": "chosen_id", "text": "chosen"}), on="chosen_id")
            .join(texts.rename({"candidate_id": "rejected_id", "text": "rejected"}), on="rejected_id")
            .join(prompts.select("prompt_id", "messages"), on="prompt_id"))


STAGES = {  # where a build's time goes: (module, function) -> label; nested stages are not subtracted
    ("curate.pairs.rule", "candidate_facts"): "facts (quality gates, verifiers)",
    ("curate.pairs.margin", "_scored"): "scored candidates",
    ("curate.pairs.margin", "_pick"): "selection",
    ("curate.pairs.margin", "_checked"): "texts + pairing rule",
    ("curate.pairs.margin", "_with_key_parts"): "dedup-key / id parts",
    ("curate.pairs.margin", "finish_pairs"): "finish_pairs (ids hashed, sorted)",
}


def timed_stages(timings: dict):
    """Wrap the STAGES functions so that each call adds its seconds to timings[label]."""
    import importlib

    def wrap(function, label):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timings[label] = timings.get(label, 0.0) + time.perf_counter() - start
        return timed

    for (module_name, name), label in STAGES.items():
        module = importlib.import_module(module_name)
        if hasattr(module, name):  # (an older checkout, measured for comparison, may lack a stage)
            setattr(module, name, wrap(getattr(module, name), label))


def best_of(runs: int, build):
    """(seconds, result) of the fastest of `runs` calls."""
    best = None
    for _ in range(runs):
        began = time.perf_counter()
        result = build()
        seconds = time.perf_counter() - began
        if best is None or seconds < best[0]:
            best = (seconds, result)
    return best


def run_mode(mode: str, prompts_count: int, per_prompt: int, runs: int) -> None:
    import polars as pl

    import curate.pairs.margin as margin

    began = time.perf_counter()
    prompts, candidates, scores = synthetic(prompts_count, per_prompt)
    made = time.perf_counter() - began
    rss_before = rss_mib()
    config = margin.MarginOptions(scorer="reward:bench", pairing=mode)
    margin.build(prompts.head(1000), candidates.head(8000), scores.filter(pl.col("candidate_id").is_in(
        candidates.head(8000)["candidate_id"].implode())), config, run_id="warm-up")
    timings_of_run: dict[str, float] = {}
    timed_stages(timings_of_run)
    walls = []
    for _ in range(runs):
        timings_of_run.clear()
        began = time.perf_counter()
        pairs = margin.build(prompts, candidates, scores, config, run_id="bench")
        walls.append((time.perf_counter() - began, dict(timings_of_run)))
    wall, stages = min(walls, key=lambda run: run[0])
    rss_after = rss_mib()
    raw_wall, raw = best_of(runs, lambda: raw_polars(prompts, candidates, scores, mode))
    n = candidates.height
    print(f"\nmode {mode}: {prompts.height} prompts x {per_prompt} candidates (synthetic data built in {made:.1f} s), "
          f"best of {runs} builds (all: {', '.join(f'{w:.2f}' for w, _ in walls)} s)")
    print(f"wall time            {wall:.2f} s")
    print(f"candidates/s         {n / wall:,.0f}")
    print(f"pairs built          {pairs.height:,}")
    print(f"pairs/s              {pairs.height / wall:,.0f}")
    for label, seconds in stages.items():
        print(f"  {label:34s} {seconds:.2f} s = {seconds / wall:.0%}")
    print(f"raw Polars baseline  {raw_wall:.2f} s ({raw.height:,} pairs: the selection, texts and prompt only); "
          f"this build takes {wall / raw_wall:.1f}x")
    print(f"peak RSS before      {rss_before:,.0f} MiB")
    print(f"peak RSS after       {rss_after:,.0f} MiB")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=125_000)
    parser.add_argument("--per-prompt", type=int, default=8)
    parser.add_argument("--modes", default="best_vs_worst,all_pairs_above_margin")
    parser.add_argument("--runs", type=int, default=2, help="builds per mode; the fastest is reported")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode in this process
    args = parser.parse_args()
    if args.one:
        run_mode(args.one, args.prompts, args.per_prompt, args.runs)
        return
    print(f"load before: {os.getloadavg()[0]:.2f} (1-minute average, {os.cpu_count()} CPUs)")
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r} ({', '.join(MODES)})")
        subprocess.run([sys.executable, __file__, "--one", mode, "--prompts", str(args.prompts),
                        "--per-prompt", str(args.per_prompt), "--runs", str(args.runs)], check=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
