"""Re-curation at scale: `curate run` (the pipeline's steps, without Prefect) over imported
candidates from Parquet: ingest (with the imported ratings), the quality gates and a verifier
scorer, margin pairs on the verifier and on the imported rating with exact + MinHash dedup, the
audit and the export.

The input is synthetic and UltraFeedback-shaped: per prompt an instruction with one checkable
constraint (`punctuation:no_comma`) and 4 completions of 20-40 random words from a 5,000-word
vocabulary (half of them with a comma) with an `overall_score`. Ingest reads and commits the input
in batches; the score and pairs steps work `--batch-rows` prompts at a time ([runner]
batch_prompts), so what they hold follows the batch, not the input; dedup and the audit see the
run's pairs, the export streams them from the lake. Each size runs in a fresh process, so its peak
resident set size is its own; a sampler thread records the peak RSS during each step (this process
and its worker processes together, `--runner processes`).

    .venv/bin/python bench/recurate_scale.py [--candidates 100000,1000000] [--batch-rows 10000]
        [--workdir /tmp/recurate-scale]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PER_PROMPT = 4
STAGES = ("ingest", "generate", "score", "pairs", "audit", "export")  # the run's steps (pairs includes dedup)


def write_input(path: Path, prompts: int, seed: int = 0, chunk: int = 10_000) -> None:
    """`prompts` rows of 4 completions each, written row group by row group."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    vocabulary = [f"w{index}" for index in range(5_000)]
    writer = None
    for start in range(0, prompts, chunk):
        count = min(chunk, prompts - start)
        rows = []
        for index in range(start, start + count):
            topic = " ".join(vocabulary[i] for i in rng.integers(0, 5_000, 6))
            completions = []
            for sample in range(PER_PROMPT):
                words = [vocabulary[i] for i in rng.integers(0, 5_000, int(rng.integers(20, 41)))]
                if rng.random() < 0.5:
                    words[len(words) // 2] += ","
                completions.append({"model": f"model-{sample}", "response": " ".join(words) + ".",
                                    "overall_score": float(rng.integers(1, 11))})
            rows.append({"instruction": f"Request {index}: write about {topic} without using any commas.",
                         "task": "instruction", "constraints": [{"type": "punctuation:no_comma"}],
                         "completions": completions})
        table = pa.Table.from_pylist(rows)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


class RssSampler:
    """Peak resident set size per stage, sampled every 20 ms: this process and its worker
    processes together (psutil)."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.children: list = []
        self.ticks = 0
        self.stage = "setup"
        self.peaks: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss_mib(self) -> float:
        import psutil

        total = self.process.memory_info().rss
        if self.ticks % 25 == 0:  # the process table is scanned twice a second, each worker read every tick
            self.children = self.process.children(recursive=True)
        self.ticks += 1
        for child in self.children:
            with contextlib.suppress(psutil.Error):  # a worker that just ended
                total += child.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), self.rss_mib())

    @contextlib.contextmanager
    def measure(self, stage: str):
        previous, self.stage = self.stage, stage
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.monotonic() - began
            self.peaks[stage] = max(self.peaks.get(stage, 0.0), self.rss_mib())
            self.stage = previous

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


CONFIG = """
name = "recurate-scale"
generators = []
export_path = "export"
[[inputs]]
path = "{input}"
columns = {{ prompt = "instruction" }}
[[scorers]]
kind = "constraints"
[[pairs]]
strategy = "margin"
scorer = "constraints"
[[pairs]]
strategy = "margin"
scorer = "imported:overall_score"
[dedup]
semantic = false
[runner]
kind = "{runner}"
batch_prompts = {batch}
"""


def run_one(path: Path, data_dir: Path, batch_rows: int, runner: str) -> dict:
    """One `curate run` of the config above (Pipeline.run_all, no Prefect), each step measured."""
    from curate.config import load_config
    from curate.pipeline import Pipeline

    sampler = RssSampler()
    began = time.monotonic()
    config_path = data_dir.parent / "run.toml"
    config_path.write_text(CONFIG.format(input=path, batch=batch_rows, runner=runner))
    pipeline = Pipeline(load_config(config_path), data_dir)
    run_step = pipeline.run_step

    def measured(name: str, state) -> None:
        with sampler.measure(name):
            run_step(name, state)

    pipeline.run_step = measured
    state = pipeline.run_all()
    pipeline.close()
    sampler.stop()
    counts = state.counts
    return {"seconds": {step: round(sampler.seconds.get(step, 0.0), 1) for step in STAGES},
            "peak_rss_mib": {step: round(sampler.peaks.get(step, 0.0)) for step in STAGES},
            "total_seconds": round(time.monotonic() - began, 1),
            "max_rss_mib": round(max(sampler.peaks.values())),
            "batches": -(-len(state.prompt_ids) // batch_rows), "candidates": counts.get("candidates_imported_new", 0),
            "scores": counts.get("scores_new", 0), "pairs": counts.get("pairs_new", 0),
            "dropped": counts.get("pairs_duplicates_dropped", 0), "exported": counts.get("pairs_exported", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default="100000,1000000")
    parser.add_argument("--batch-rows", type=int, default=10_000, help="input rows (prompts) per batch")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recurate-scale"))
    parser.add_argument("--runner", default="processes", choices=("processes", "threads"),
                        help="[runner] kind: shard work in worker processes (every core) or in this process")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size_dir = args.workdir / str(args.child)
        print(json.dumps(run_one(size_dir / "input.parquet", size_dir / "data", args.batch_rows, args.runner)))
        return
    results = {}
    for size in (int(s) for s in args.candidates.split(",")):
        size_dir = args.workdir / str(size)
        shutil.rmtree(size_dir / "data", ignore_errors=True)
        size_dir.mkdir(parents=True, exist_ok=True)
        if not (size_dir / "input.parquet").exists():
            began = time.monotonic()
            write_input(size_dir / "input.parquet", size // PER_PROMPT)
            print(f"{size:,} candidates: input written in {time.monotonic() - began:.0f} s", flush=True)
        done = subprocess.run([sys.executable, __file__, "--child", str(size), "--batch-rows", str(args.batch_rows),
                               "--workdir", str(args.workdir), "--runner", args.runner], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{size:,} candidates failed:\n{done.stderr[-4000:]}")
        results[size] = json.loads(done.stdout.strip().splitlines()[-1])
        result = results[size]
        print(f"{size:,} candidates ({size // PER_PROMPT:,} prompts, {result['batches']} batches): "
              f"{result['total_seconds']} s = {size / result['total_seconds']:,.0f} candidates/s, "
              f"peak RSS {result['max_rss_mib']} MiB (load average {os.getloadavg()[0]:.1f}); "
              f"{result['candidates']:,} candidates, {result['scores']:,} scores, {result['pairs']:,} pairs "
              f"({result['dropped']:,} dropped by dedup), {result['exported']:,} exported", flush=True)
        for stage in STAGES:
            print(f"  {stage:7s} {result['seconds'][stage]:8.1f} s   peak RSS {result['peak_rss_mib'][stage]:6d} MiB",
                  flush=True)
    if len(results) > 1:
        small, large = min(results), max(results)
        ratio = results[large]["max_rss_mib"] / results[small]["max_rss_mib"]
        print(f"peak RSS {large:,} / {small:,}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
