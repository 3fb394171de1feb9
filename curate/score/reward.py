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

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        from vllm import PoolingParams

        llm = load_engine(self.settings)
        texts = [self.conversation_text(llm, item) for item in items]
        outputs = llm.classify(texts, pooling_params=PoolingParams(use_activation=False), use_tqdm=True)
        return [ScoreResult(float(output.outputs.probs[0])) for output in outputs]
