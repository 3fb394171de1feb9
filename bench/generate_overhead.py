"""Pipeline generation vs bare `LLM.generate` on the same requests, same engine.

The pipeline adds: chat templating, request planning against the lake, candidate rows,
and one lake commit per chunk. Prints wall times and the ratio pipeline / bare.

    .venv/bin/python bench/generate_overhead.py [--max-tokens 128] [--n 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=64)
    args = parser.parse_args()

    from curate.env import apply_offline_env

    apply_offline_env(ROOT / "data")
    import polars as pl
    from vllm import SamplingParams

    from curate.generate import SamplingSettings, generate_candidates, plan_requests
    from curate.generate.vllm_backend import EngineSettings, VLLMBackend, chat_token_ids
    from curate.ingest import ingest_file
    from curate.lake import Lake
    from curate.models import embedded_model_dir

    model = embedded_model_dir(ROOT / "data" / "models")
    backend = VLLMBackend(EngineSettings(str(model), max_model_len=2048, kv_cache_memory_bytes=1 << 29))
    prompts = pl.concat([pl.from_arrow(ingest_file(ROOT / "data" / "demo" / f"{name}.jsonl", "bench")[0])
                         for name in ("math", "instruction", "chat")])
    sampling = SamplingSettings(n=args.n, max_tokens=args.max_tokens)
    requests = plan_requests(prompts, backend.fingerprint, lambda task: sampling)
    llm = backend.llm
    tokenizer = llm.get_tokenizer()

    def bare() -> float:
        began = time.perf_counter()
        inputs = [{"prompt_token_ids": chat_token_ids(tokenizer, r.messages)} for r in requests]
        params = [SamplingParams(n=1, temperature=sampling.temperature, top_p=sampling.top_p, seed=r.seed,
                                 max_tokens=sampling.max_tokens, logprobs=0) for r in requests]
        llm.reset_prefix_cache()
        outputs = llm.generate(inputs, sampling_params=params, use_tqdm=False)
        assert len(outputs) == len(requests)
        return time.perf_counter() - began

    def pipeline(chunk_size: int) -> float:
        with tempfile.TemporaryDirectory() as tmp, Lake(Path(tmp) / "lake") as lake:
            began = time.perf_counter()
            todo = plan_requests(prompts, backend.fingerprint, lambda task: sampling,
                                 existing=lambda ids: lake.existing_ids("candidates", ids))
            for table in generate_candidates(todo, backend, "bench", chunk_size):
                lake.commit({"candidates": table})
            elapsed = time.perf_counter() - began
            assert lake.count("candidates") == len(requests)
        return elapsed

    bare()  # warm-up: first steps compile kernels
    results = {"bare LLM.generate": bare(), "pipeline (one chunk)": pipeline(len(requests)),
               f"pipeline (chunks of {args.chunk_size})": pipeline(args.chunk_size)}
    base = results["bare LLM.generate"]
    print(f"\n{len(requests)} requests, max_tokens={args.max_tokens}, model {backend.model_label}")
    for name, seconds in results.items():
        print(f"{name:28s} {seconds:7.2f} s   ratio {seconds / base:5.2f}")


if __name__ == "__main__":
    main()
