"""Reward scoring through vLLM's pooling runner agrees with the transformers fallback."""

from __future__ import annotations

import pytest

from curate.score import ScoreItem

pytestmark = pytest.mark.slow

ITEMS = [ScoreItem(f"c{i}", "p", "chat", [{"role": "user", "content": "Say something."}], text, {})
         for i, text in enumerate(["Hello!", "No.", "A much longer answer with several words in it."])]


def _scorer(path, engine):
    from curate.generate.vllm_backend import EngineSettings
    from curate.score.reward import RewardModelScorer

    settings = EngineSettings(str(path), dtype="float32", max_model_len=512,
                              kv_cache_memory_bytes=64 << 20, runner="pooling")
    return RewardModelScorer(settings, "tiny", engine=engine)


def test_pooling_scores_match_transformers(tiny_reward):
    pooled, fallback = _scorer(tiny_reward, "vllm"), _scorer(tiny_reward, "transformers")
    assert pooled.name == fallback.name == "reward:tiny" and pooled.version == fallback.version
    via_vllm, via_transformers = pooled.score(ITEMS), fallback.score(ITEMS)
    assert all(r.status == "ok" for r in via_vllm + via_transformers)
    assert len({r.score for r in via_vllm}) == 3
    for a, b in zip(via_vllm, via_transformers):
        assert a.score == pytest.approx(b.score, abs=1e-4)


def test_chat_template_is_the_models_own(tiny_reward):
    scorer = _scorer(tiny_reward, "transformers")
    text = scorer.conversation_text(ITEMS[0])
    assert text.startswith("<|im_start|>system") and text.rstrip().endswith("Hello!<|im_end|>")


def test_over_long_conversation_is_cut_from_the_left_and_flagged(tiny_reward):
    long_prompt = [{"role": "user", "content": "tell me more " * 400}]
    items = [ScoreItem("c1", "p", "chat", long_prompt, "Short answer.", {}), ITEMS[1]]
    for engine in ("vllm", "transformers"):
        scorer = _scorer(tiny_reward, engine)
        long_result, short_result = scorer.score(items)
        assert long_result.status == "ok" and long_result.detail["truncated"] is True
        assert long_result.detail["tokens"] > 512
        assert "truncated" not in short_result.detail
        (ids, length), _ = scorer.conversation_tokens(items)
        assert len(ids) == 512 and length > 512
        assert scorer.tokenizer().decode(ids).rstrip().endswith("Short answer.<|im_end|>")
