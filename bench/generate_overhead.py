"""Pipeline generation vs one bare `LLM.generate` call over the same requests, same engine.

The pipeline adds chat templating, request planning against the lake, candidate rows and a lake
commit every `--chunk-size` finished candidates on a writer thread, while the engine keeps
generating (continuous admission, curate.generate.vllm_backend.VLLMBackend.generate_stream).
Output lengths are
long-tailed on purpose: most requests are short, a few run `--long-tokens`, the case where a
pipeline that drains the engine between commits leaves it idle. Prints wall times, output tokens/s
and the pipeline's tokens/s as a fraction of the bare call's.

    .venv/bin/python bench/generate_overhead.py [--n 4] [--chunk-size 64] [--long-tokens 512]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def long_tailed(requests, short: int, long: int, long_share: float):
    """Requests with per-request max_tokens: `long_share` of them long, the others spread below short."""
    rng = random.Random(0)
    out = []
    for r in requests:
        tokens = long if rng.random() < long_share else rng.randint(short // 4, short)
        out.append(replace(r, sampling=replace(r.sampling, max_tokens=tokens)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--short-tokens", type=int, default=96)
    parser.add_argument("--long-tokens", type=int, default=512)
    parser.add_argument("--long-share", type=float, default=0.08)
    args = parser.parse_args()

    from curate.runtime.env import apply_offline_env

    apply_offline_env(ROOT / "data")
    import polars as pl
    from vllm import SamplingParams

    from curate.generate import SamplingSettings, generate_candidates, plan_requests
    from curate.generate.vllm_backend import EngineSettings, VLLMBackend, chat_token_ids
    from curate.ingest.validate import ingest_file
    from curate.lake.background_commit import commit_while_producing
    from curate.lake.catalog import Lake
    from curate.runtime.models import embedded_model_dir

    model = embedded_model_dir(ROOT / "data" / "models")
    backend = VLLMBackend(EngineSettings(str(model), max_model_len=2048, kv_cache_memory_bytes=1 << 29))
    prompts = pl.concat([pl.from_arrow(ingest_file(ROOT / "data" / "demo" / f"{name}.jsonl", "bench")[0])
                         for name in ("math", "instruction", "chat")])
    sampling = SamplingSettings(n=args.n, temperature=1.0)
    planned = plan_requests(prompts, backend.fingerprint, lambda task: sampling)
    requests = long_tailed(planned, args.short_tokens, args.long_tokens, args.long_share)
    llm = backend.llm
    tokenizer = llm.get_tokenizer()

    def bare() -> tuple[float, int]:
        began = time.perf_counter()
        inputs = [{"prompt_token_ids": chat_token_ids(tokenizer, r.messages)} for r in requests]
        params = [SamplingParams(n=1, temperature=r.sampling.temperature, top_p=r.sampling.top_p, seed=r.seed,
                                 max_tokens=r.sampling.max_tokens, logprobs=0) for r in requests]
        llm.reset_prefix_cache()
        outputs = llm.generate(inputs, sampling_params=params, use_tqdm=False)
        elapsed = time.perf_counter() - began
        return elapsed, sum(len(o.outputs[0].token_ids) for o in outputs)

    def pipeline(chunk_size: int) -> tuple[float, int, int]:
        with tempfile.TemporaryDirectory() as tmp, Lake(Path(tmp) / "lake") as lake:
            began = time.perf_counter()
            stored = lake.existing_ids("candidates", [r.candidate_id for r in requests])
            todo = [r for r in requests if r.candidate_id not in stored]
            commits = []
            commit_while_producing(generate_candidates(todo, backend, "bench", chunk_size),
                                   lambda table: commits.append(lake.commit({"candidates": table})))
            elapsed = time.perf_counter() - began
            assert lake.count("candidates") == len(requests)
            tokens = lake.query("SELECT sum(completion_tokens) AS t FROM candidates")["t"][0]
        return elapsed, int(tokens), len(commits)

    bare()  # warm-up: first steps compile kernels
    base_s, base_tokens = bare()
    one_s, one_tokens, _ = pipeline(len(requests))
    chunked_s, chunked_tokens, commits = pipeline(args.chunk_size)
    lengths = sorted(r.sampling.max_tokens for r in requests)
    print(f"\n{len(requests)} requests, max_tokens median {lengths[len(lengths) // 2]}, max {lengths[-1]} "
          f"({sum(t == args.long_tokens for t in lengths)} long); model {backend.model_label}")
    print(f"{'':34s} {'seconds':>8s} {'out tok/s':>10s} {'vs bare':>8s}")
    for name, seconds, tokens in (("bare LLM.generate (one call)", base_s, base_tokens),
                                  ("pipeline, one commit", one_s, one_tokens),
                                  (f"pipeline, {commits} commits of {args.chunk_size}", chunked_s, chunked_tokens)):
        rate = tokens / seconds
        print(f"{name:34s} {seconds:8.2f} {rate:10.1f} {rate / (base_tokens / base_s):8.3f}")


if __name__ == "__main__":
    main()
