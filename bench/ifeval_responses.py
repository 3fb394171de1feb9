"""The embedded SmolLM2 model's answers to IFEval's 541 prompts, generated once and cached as JSONL.

`bench/constraint_agreement.py` checks these real responses with our constraint checkers and
with lm-eval's reference ones. One sample per prompt through curate's own vLLM backend (the
demo's sampling: temperature 0.8, top_p 0.95, seed 0), appended in chunks so a stopped run
resumes. About 15-25 minutes on 2 idle CPU cores.

    .venv/bin/python bench/ifeval_responses.py [--max-tokens 256] [--out data/bench/ifeval_smollm2.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "data" / "bench" / "ifeval_smollm2.jsonl"


def ifeval_records() -> list[dict]:
    from curate.score.verify.constraints import ifeval_data_path

    with ifeval_data_path().open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def generate(out: Path, max_tokens: int, chunk: int = 48) -> None:
    """Generate in chunks appended to `out`, skipping prompts already there (a stopped run resumes)."""
    from curate.generate import Request, SamplingSettings
    from curate.generate.vllm_backend import EngineSettings, VLLMBackend
    from curate.runtime.models import embedded_model_dir

    done = {r["key"] for r in load(out)} if out.exists() else set()
    records = [r for r in ifeval_records() if r["key"] not in done]
    if not records:
        print(f"{out}: all {len(done)} responses are there")
        return
    # a shared, busy CPU can take minutes for one engine step: vLLM's 300 s limit kills the engine
    os.environ.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "3600")
    models_dir = Path(os.environ.get("CURATE_MODELS_DIR", ROOT / "data" / "models"))
    backend = VLLMBackend(EngineSettings(str(embedded_model_dir(models_dir)), max_model_len=4096,
                                         kv_cache_memory_bytes=1 << 29), label="smollm2")
    sampling = SamplingSettings(n=1, temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        requests = [Request(str(r["key"]), str(r["key"]), [{"role": "user", "content": r["prompt"]}],
                            0, 0, sampling) for r in part]
        generations = backend.generate(requests)
        with out.open("a", encoding="utf-8") as sink:
            for record, generation in zip(part, generations, strict=True):
                sink.write(json.dumps({
                    "key": record["key"], "prompt": record["prompt"],
                    "instruction_id_list": record["instruction_id_list"], "kwargs": record["kwargs"],
                    "response": generation.text or "", "finish_reason": generation.finish_reason,
                    "model": backend.model_label, "max_tokens": max_tokens}) + "\n")
        print(f"{len(done) + start + len(part)} of {len(done) + len(records)} responses in {out}", flush=True)


def load(path: Path = DEFAULT_OUT) -> list[dict]:
    """The cached responses; a line cut short by a killed run is skipped."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    generate(args.out, args.max_tokens)
