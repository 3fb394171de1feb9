"""Reward-model scorer: any sequence-classification model, through vLLM's pooling runner
(`runner="pooling"`, `LLM.classify`, raw scores without activation) or, as a fallback,
transformers. Both see the same token ids: the model's own chat template over prompt + response,
cut from the left when longer than the model takes (flagged on the row)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from curate.generate.vllm_backend import EngineSettings, load_engine, resolve_dtype
from curate.options import option
from curate.progress import interactive
from curate.runtime.models import check_model_dir, fingerprint
from curate.score import ScoreItem, ScoreResult
from curate.score.kind import ModelOptions, ScorerKind

ENGINES = ("vllm", "transformers")


class RewardModelScorer:
    """Raw reward of the templated conversation prompt + response."""

    tasks = None

    def __init__(self, settings: EngineSettings, label: str | None = None, engine: str = "vllm",
                 batch_size: int = 8, pool=None):
        if engine not in ENGINES:
            raise ValueError(f"unknown reward engine {engine!r} (known: {ENGINES})")
        self.settings = settings
        self.engine = engine
        self.batch_size = batch_size
        self.name = f"reward:{label or Path(settings.model_path).name}"
        check_model_dir(settings.model_path, "reward model")
        self.version = fingerprint(Path(settings.model_path))
        self._model = None
        self._tokenizer = None
        self.pool = pool  # engine replicas on the Ray cluster (curate.generate.replicas), or None: here

    def warm(self) -> None:
        """Loads the engine (a replica, before it says it is ready)."""
        if self.engine == "vllm":
            load_engine(self.settings)

    def tokenizer(self):
        if self._tokenizer is None:
            if self.engine == "vllm" and self.pool is None:
                self._tokenizer = load_engine(self.settings).get_tokenizer()
            else:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.settings.model_path)
        return self._tokenizer

    def conversation_text(self, item: ScoreItem) -> str:
        conversation = [*item.messages, {"role": "assistant", "content": item.text}]
        return self.tokenizer().apply_chat_template(conversation, tokenize=False)

    def conversation_tokens(self, items: list[ScoreItem]) -> list[tuple[list[int], int]]:
        """Per item: token ids that fit the model (cut from the left, so the response stays
        whole) and the untruncated length. One batched tokenizer call."""
        texts = [self.conversation_text(item) for item in items]
        batch = self.tokenizer()(texts, add_special_tokens=False)["input_ids"]
        return [(ids[-self.settings.max_model_len:], len(ids)) for ids in batch]

    def _scores_vllm(self, token_lists: list[list[int]]) -> list[float]:
        from vllm import PoolingParams

        outputs = load_engine(self.settings).classify(
            [{"prompt_token_ids": ids} for ids in token_lists],
            pooling_params=PoolingParams(use_activation=False), use_tqdm=interactive())
        return [float(output.outputs.probs[0]) for output in outputs]

    def _scores_transformers(self, token_lists: list[list[int]]) -> list[float]:
        import torch
        from transformers import AutoModelForSequenceClassification

        if self._model is None:
            dtype = getattr(torch, resolve_dtype(self.settings.dtype, torch.cuda.is_available()))
            self._model = AutoModelForSequenceClassification.from_pretrained(
                self.settings.model_path, dtype=dtype).eval()
        scores = []
        with torch.no_grad():
            for ids in token_lists:  # one at a time: no padding, so no pad-token assumptions
                logits = self._model(input_ids=torch.tensor([ids])).logits
                scores.append(float(logits[0, 0]))
        return scores

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        encoded = self.conversation_tokens(items)
        token_lists = [ids for ids, _ in encoded]
        scores = self._scores_vllm if self.engine == "vllm" else self._scores_transformers
        # on replicas, each runs this scorer's same method on its slices
        raw = self.pool.map(scores.__name__, token_lists) if self.pool is not None else scores(token_lists)
        results = []
        for (ids, full_length), value in zip(encoded, raw, strict=True):
            detail = {"engine": self.engine}
            if full_length > len(ids):
                detail.update(truncated=True, tokens=full_length)
            results.append(ScoreResult(value, "ok", detail))
        return results


def _build(spec, models) -> RewardModelScorer:
    settings = EngineSettings(spec.model, dtype=spec.dtype, max_model_len=spec.max_model_len,
                              kv_cache_memory_bytes=spec.kv_cache_memory_bytes, runner="pooling")
    pool = None
    if spec.placement == "ray":
        name = f"reward-{spec.name or Path(spec.model).name}"
        pool = models.replica_pool(name, RewardModelScorer, (settings, spec.name, spec.engine), spec)
    return RewardModelScorer(settings, spec.name, engine=spec.engine, pool=pool)


def _resolve(spec, base_dir: Path, generators) -> None:
    if not spec.model:
        raise ValueError("a reward scorer needs `model` (a model directory)")
    if not Path(spec.model).is_absolute():
        spec.model = str((base_dir / spec.model).resolve())


@dataclass
class RewardOptions(ModelOptions):
    model: str | None = option(None, help="the reward model: a sequence-classification directory (required)")
    engine: Literal["vllm", "transformers"] = option(
        "vllm", help="vllm (its pooling runner) or transformers (a fallback)")


KIND = ScorerKind("reward", _build, RewardOptions, needs_model=True, resolve=_resolve)
