"""Scoring + dedup on 1 vs 2 Ray workers (prefect-ray, local cluster), on the same input.

The input is prompts (math with reference answers, IFEval with constraints, HumanEval with tests)
and candidates written straight into a fresh lake, so nothing is generated. Each configuration
runs the pipeline's real `score` and `pairs` steps (verifiers in the sandbox / math-verify /
constraint checker, margin pairs, exact + MinHash + semantic dedup with MiniLM) inside a Prefect
flow whose task runner is: threads in this process, or Ray with 1 or 2 worker CPUs. Shard work
(verifier scoring, embeddings) goes to the runner; the lake commit stays in the flow's process.
Each configuration runs twice on a fresh lake: the first pass starts the workers and loads
MiniLM in each, the second is the figure (warm workers, as in a long nightly run).

    .venv/bin/python bench/ray_scaling.py [--math 300] [--ifeval 150] [--humaneval 40] [--shards 4]

On this 2-core box the point is the ratio 1 worker / 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curate.dedup.synthetic import WORDS  # noqa: E402  (after the path tweak)


def write_prompts(path: Path, math_n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(math_n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        rows.append({"messages": [{"role": "user", "content": f"Problem {i}: what is {a} + {b}?"}],
                     "task": "math", "reference_answer": str(a + b)})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def write_config(path: Path, prompts: Path, ifeval_n: int, humaneval_n: int, shards: int) -> Path:
    pairs = "".join(f'\n[[pairs]]\nstrategy = "margin"\nscorer = "{s}"\npairing = "all_pairs_above_margin"\n'
                    f"min_margin = 0.1\n" for s in ("math_verify", "constraints", "code_tests"))
    path.write_text(
        f'name = "ray-scaling"\n\n[[inputs]]\npath = "{prompts}"\nsource = "bench-math"\n\n'
        f'[[inputs]]\nbuiltin = "ifeval"\nlimit = {ifeval_n}\n\n[[inputs]]\nbuiltin = "humaneval"\nlimit = {humaneval_n}\n\n'
        '[[scorers]]\nkind = "math_verify"\n\n[[scorers]]\nkind = "constraints"\n\n[[scorers]]\nkind = "code_tests"\n'
        + pairs + f"\n[runner]\nshards = {shards}\n")
    return path


def candidate_text(task: str, prompt: dict, k: int, rng: random.Random) -> str:
    filler = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))
    if task == "math":
        right = int(prompt["reference_answer"])
        return f"{filler}. The answer is {right if k % 2 == 0 else right + k}."
    if task == "code":
        fields = json.loads(prompt.get("task_fields_json") or "{}")
        solution = prompt.get("reference_solution") or fields["reference_solution"]
        if k % 2:  # a broken variant: the signature and docstring, then a wrong body
            solution = solution[:solution.rindex('"""') + 3] + "\n    return None\n"
        return f"```python\n{solution}\n```"
    return filler.upper() if k == 3 else filler


def fill_lake(data_dir: Path, config_path: Path, per_prompt: int) -> tuple[list[str], list[str]]:
    """Ingest the prompts and write `per_prompt` candidates each; returns (prompt ids, candidate ids)."""
    from curate import ids
    from curate.config import load_config
    from curate.pipeline import Pipeline

    pipeline = Pipeline(load_config(config_path), data_dir)
    state = pipeline.start()
    pipeline.run_step("ingest", state)
    prompts = pipeline.lake.read("prompts")
    rng = random.Random(1)
    now = datetime.now(timezone.utc)
    rows = []
    for prompt in prompts.iter_rows(named=True):
        for k in range(per_prompt):
            rows.append({"candidate_id": ids.candidate_id(prompt["prompt_id"], "bench", {}, k, 0),
                         "prompt_id": prompt["prompt_id"], "model": "bench", "sampling_json": "{}",
                         "sample_index": k, "seed": 0, "text": candidate_text(prompt["task"], prompt, k, rng),
                         "finish_reason": "stop", "run_id": state.run_id, "created_at": now})
    pipeline.lake.commit({"candidates": rows})
    pipeline.finish(state)
    pipeline.close()
    return prompts["prompt_id"].to_list(), [r["candidate_id"] for r in rows]


def timed_pass(config_path: Path, data_dir: Path, prompt_ids: list[str], candidate_ids: list[str]) -> dict:
    """The score and pairs steps, inside the current flow (its task runner runs the shards)."""
    from curate.config import load_config
    from curate.pipeline import Pipeline, RunState
    from flows.runners import TaskShards

    pipeline = Pipeline(load_config(config_path), data_dir)
    pipeline.shards = TaskShards(pipeline.config.runner.shards)
    state = RunState(run_id="bench", prompt_ids=prompt_ids, candidate_ids=list(candidate_ids))
    began = time.perf_counter()
    pipeline.run_step("score", state)
    scored = time.perf_counter()
    pipeline.run_step("pairs", state)
    done = time.perf_counter()
    rows = {"score_rows": set(pipeline.lake.query("SELECT score_id, score, status FROM scores").iter_rows()),
            "pair_ids": set(pipeline.lake.read("pairs")["pair_id"])}
    pipeline.close()
    return {"score_s": scored - began, "pairs_dedup_s": done - scored, "total_s": done - began,
            "scores": state.counts.get("scores_new", 0), "pairs": state.counts.get("pairs_new", 0),
            "dropped": state.counts.get("pairs_duplicates_dropped", 0), **rows}


def run_config(label: str, task_runner, config_path: Path, work: Path, per_prompt: int) -> dict:
    from prefect import flow

    from flows.runners import shared_prefect_api

    @flow(name="ray-scaling")
    def two_passes() -> list[dict]:
        results = []
        for attempt in range(2):  # each on a fresh lake holding the same input
            data = work / f"{label.split()[0]}{label.split()[1]}-{attempt}"
            prompt_ids, candidate_ids = fill_lake(data, config_path, per_prompt)
            results.append(timed_pass(config_path, data, prompt_ids, candidate_ids))
        return results

    with shared_prefect_api(task_runner):
        cold, warm = two_passes.with_options(task_runner=task_runner)()
    print(f"{label:>16}: cold {cold['total_s']:6.1f} s | warm {warm['total_s']:6.1f} s "
          f"(score {warm['score_s']:5.1f} s, pairs+dedup {warm['pairs_dedup_s']:5.1f} s; "
          f"{warm['scores']} scores, {warm['pairs']} pairs kept, {warm['dropped']} dropped)", flush=True)
    return warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--math", type=int, default=300, help="math prompts")
    parser.add_argument("--ifeval", type=int, default=150, help="IFEval prompts")
    parser.add_argument("--humaneval", type=int, default=40, help="HumanEval prompts")
    parser.add_argument("--per-prompt", type=int, default=4, help="candidates per prompt")
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ray-scaling-", dir="/tmp"))
    from curate.runtime.env import apply_offline_env

    apply_offline_env(work)
    from prefect.task_runners import ThreadPoolTaskRunner

    from curate.config import RunnerConfig
    from flows.runners import task_runner_for

    config_path = write_config(work / "run.toml", write_prompts(work / "math.jsonl", args.math),
                               args.ifeval, args.humaneval, args.shards)
    prompt_ids, candidate_ids = fill_lake(work / "input", config_path, args.per_prompt)
    print(f"input: {len(prompt_ids)} prompts, {len(candidate_ids)} candidates, {args.shards} shards; "
          f"{os.cpu_count()} CPUs here", flush=True)

    results = {"threads": run_config("threads (here)", ThreadPoolTaskRunner(), config_path, work, args.per_prompt)}
    for workers in (1, 2):
        runner = task_runner_for(RunnerConfig(kind="ray", workers=workers, shards=args.shards), work)
        results[workers] = run_config(f"ray {workers} worker{'s' if workers > 1 else ''}", runner, config_path,
                                      work, args.per_prompt)
    one, two = results[1]["total_s"], results[2]["total_s"]
    print(f"scoring+dedup, 1 vs 2 Ray workers: {one:.1f} s vs {two:.1f} s, speed-up {one / two:.2f}x "
          f"(score {results[1]['score_s'] / results[2]['score_s']:.2f}x, "
          f"pairs+dedup {results[1]['pairs_dedup_s'] / results[2]['pairs_dedup_s']:.2f}x); "
          f"threads in-process: {results['threads']['total_s']:.1f} s")
    same = all(results[k]["pair_ids"] == results["threads"]["pair_ids"] and
               results[k]["score_rows"] == results["threads"]["score_rows"] for k in (1, 2))
    print(f"same score rows (id, score, status) and pair ids on every runner: {same}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
