"""Sequence log-probs through vLLM's prompt_logprobs equal a transformers forward pass."""

from __future__ import annotations

import pytest

from curate.score import ScoreItem

pytestmark = pytest.mark.slow


def test_sequence_logprob_matches_transformers(tiny_generator):
    import torch
    from transformers import AutoModelForCausalLM

    from curate.generate.vllm_backend import EngineSettings, VLLMBackend
    from curate.score.logprob import SequenceLogprobScorer

    backend = VLLMBackend(EngineSettings(str(tiny_generator), dtype="float32", max_model_len=512,
                                         kv_cache_memory_bytes=64 << 20), label="tiny32")
    scorer = SequenceLogprobScorer(backend, "policy")
    items = [ScoreItem(f"c{i}", "p", "chat", [{"role": "user", "content": "Say hi."}], text, {})
             for i, text in enumerate(["Hi there!", "Hello, how are you today?"])]
    long_item = ScoreItem("c9", "p", "chat", [{"role": "user", "content": "x " * 600}], "ok", {})
    results = scorer.score(items + [long_item])
    assert results[2].status == "error" and "max_model_len" in results[2].detail["reason"]

    model = AutoModelForCausalLM.from_pretrained(tiny_generator, dtype=torch.float32).eval()
    for item, result in zip(items, results):
        ids, prompt_length = scorer.sequence_tokens(item)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        expected = sum(logprobs[t - 1, ids[t]].item() for t in range(prompt_length, len(ids)))
        assert result.status == "ok" and result.score == pytest.approx(expected, abs=1e-3)
        assert result.detail["response_tokens"] == len(ids) - prompt_length
    assert scorer.name == "logprob:policy" and scorer.version == backend.fingerprint
