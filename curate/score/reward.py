"""Reward-model scorer: a sequence-classification model through vLLM's pooling runner."""

from __future__ import annotations

from pathlib import Path

from curate.generate.vllm_backend import EngineSettings, load_engine
from curate.models import fingerprint
from curate.score import ScoreItem, ScoreResult


class RewardModelScorer:
    """Raw reward (no activation) of the templated conversation prompt + response."""

    tasks = None

    def __init__(self, settings: EngineSettings, label: str | None = None):
        self.settings = settings
        self.name = f"reward:{label or Path(settings.model_path).name}"
        self.version = fingerprint(Path(settings.model_path))

    def conversation_text(self, llm, item: ScoreItem) -> str:
        tokenizer = llm.get_tokenizer()
        conversation = [*item.messages, {"role": "assistant", "content": item.text}]
        return tokenizer.apply_chat_template(conversation, tokenize=False)

    def conversation_tokens(self, llm, items: list[ScoreItem]) -> list[tuple[list[int], int]]:
        """Per item: token ids that fit the model (cut from the left, so the response stays
        whole) and the untruncated length. One batched tokenizer call."""
        texts = [self.conversation_text(llm, item) for item in items]
        batch = llm.get_tokenizer()(texts, add_special_tokens=False)["input_ids"]
        return [(ids[-self.settings.max_model_len:], len(ids)) for ids in batch]

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        from vllm import PoolingParams

        llm = load_engine(self.settings)
        encoded = self.conversation_tokens(llm, items)
        outputs = llm.classify([{"prompt_token_ids": ids} for ids, _ in encoded],
                               pooling_params=PoolingParams(use_activation=False), use_tqdm=True)
        results = []
        for (ids, full_length), output in zip(encoded, outputs, strict=True):
            detail = {"truncated": True, "tokens": full_length} if full_length > len(ids) else {}
            results.append(ScoreResult(float(output.outputs.probs[0]), "ok", detail))
        return results
