"""Scoring overhead: the reward scorer vs bare `LLM.classify`, and sandbox executions per second.

Reward: a SmolLM2-135M backbone with a random one-label head (a real model's size and shape; the
scores mean nothing, only the time counts), over the same conversations both ways. The scorer
adds chat templating, tokenising with left truncation, and result rows.

    .venv/bin/python bench/score_overhead.py [--items 512] [--sandbox-runs 40]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def reward_model_dir() -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    from curate.runtime.models import embedded_model_dir

    target = ROOT / "data" / "bench-models" / "smollm2-135m-random-reward"
    if (target / "config.json").exists():
        return target
    base = embedded_model_dir(ROOT / "data" / "models")
    torch.manual_seed(0)
    model = LlamaForSequenceClassification.from_pretrained(base, num_labels=1, pad_token_id=2,
                                                           dtype=torch.bfloat16)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(base).save_pretrained(target)
    return target


def bench_reward(items_count: int) -> None:
    from vllm import PoolingParams

    from curate.generate.vllm_backend import EngineSettings, load_engine
    from curate.score import ScoreItem
    from curate.score.reward import RewardModelScorer

    settings = EngineSettings(str(reward_model_dir()), max_model_len=2048, kv_cache_memory_bytes=1 << 29,
                              runner="pooling")
    scorer = RewardModelScorer(settings, "bench")
    items = [ScoreItem(f"c{i}", f"p{i % 50}", "chat",
                       [{"role": "user", "content": f"Question {i}: explain topic {i % 50} briefly."}],
                       f"Answer {i}. " + "This is a sentence of the answer. " * (5 + i % 20), {})
             for i in range(items_count)]
    llm = load_engine(settings)
    texts = [scorer.conversation_text(item) for item in items]
    params = PoolingParams(use_activation=False)
    llm.classify(texts[:16], pooling_params=params, use_tqdm=False)  # warm-up

    began = time.perf_counter()
    llm.classify(texts, pooling_params=params, use_tqdm=False)
    bare = time.perf_counter() - began
    began = time.perf_counter()
    results = scorer.score(items)
    piped = time.perf_counter() - began
    assert len(results) == items_count and all(r.status == "ok" for r in results)
    print(f"\nreward scoring, {items_count} conversations, SmolLM2-135M-sized classifier")
    print(f"bare LLM.classify        {bare:7.2f} s  {items_count / bare:7.1f} items/s")
    print(f"RewardModelScorer.score  {piped:7.2f} s  {items_count / piped:7.1f} items/s   ratio {piped / bare:.2f}")


def bench_sandbox(runs: int) -> None:
    try:
        from curate.sandbox.isolation import run_tests
    except ImportError:
        print("\nsandbox: curate.sandbox.isolation not available")
        return
    code = "def add(a, b):\n    return a + b\n"
    tests = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
    run_tests(code, tests)  # warm-up
    for workers in (1, 2):
        began = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda _: run_tests(code, tests), range(runs)))
        elapsed = time.perf_counter() - began
        assert all(r.status == "passed" for r in results), {r.status for r in results}
        print(f"sandbox, {workers} thread(s): {runs} runs in {elapsed:.2f} s = {runs / elapsed:.1f} executions/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--sandbox-runs", type=int, default=40)
    parser.add_argument("--skip-reward", action="store_true")
    args = parser.parse_args()
    from curate.runtime.env import apply_offline_env

    apply_offline_env(ROOT / "data")
    if not args.skip_reward:
        bench_reward(args.items)
    bench_sandbox(args.sandbox_runs)


if __name__ == "__main__":
    main()
