"""Reward scoring through vLLM's pooling runner agrees with transformers on a tiny classifier."""

from __future__ import annotations

import pytest

from curate.score import ScoreItem

pytestmark = pytest.mark.slow


def test_pooling_scores_match_transformers(tiny_reward):
    import torch
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    from curate.generate.vllm_backend import EngineSettings, load_engine
    from curate.score.reward import RewardModelScorer

    settings = EngineSettings(str(tiny_reward), dtype="float32", max_model_len=512,
                              kv_cache_memory_bytes=64 << 20, runner="pooling")
    scorer = RewardModelScorer(settings, "tiny")
    items = [
        ScoreItem(f"c{i}", "p", "chat", [{"role": "user", "content": "Say something."}], text, {})
        for i, text in enumerate(["Hello!", "No.", "A much longer answer with several words in it."])
    ]
    results = scorer.score(items)
    assert all(r.status == "ok" for r in results)
    assert scorer.name == "reward:tiny" and len(scorer.version) == 16

    tokenizer = AutoTokenizer.from_pretrained(tiny_reward)
    model = LlamaForSequenceClassification.from_pretrained(tiny_reward, dtype=torch.float32).eval()
    llm = load_engine(settings)
    for item, result in zip(items, results):
        text = scorer.conversation_text(llm, item)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            expected = model(**ids).logits[0, 0].item()
        assert result.score == pytest.approx(expected, abs=1e-4)
    assert len({r.score for r in results}) == 3


def test_over_long_conversation_is_cut_from_the_left_and_flagged(tiny_reward):
    from curate.generate.vllm_backend import EngineSettings
    from curate.score.reward import RewardModelScorer

    settings = EngineSettings(str(tiny_reward), dtype="float32", max_model_len=512,
                              kv_cache_memory_bytes=64 << 20, runner="pooling")
    scorer = RewardModelScorer(settings, "tiny")
    long_prompt = [{"role": "user", "content": "tell me more " * 400}]
    items = [ScoreItem("c1", "p", "chat", long_prompt, "Short answer.", {}),
             ScoreItem("c2", "p", "chat", [{"role": "user", "content": "hi"}], "Short answer.", {})]
    long_result, short_result = scorer.score(items)
    assert long_result.status == "ok" and long_result.detail["truncated"] is True
    assert long_result.detail["tokens"] > 512
    assert short_result.detail == {}
