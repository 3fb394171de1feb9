"""Engine arguments: GPU knobs only on a GPU, CPU knobs only on a CPU; a real GPU load when one exists."""

from __future__ import annotations

import pytest

from curate.generate.vllm_backend import EngineSettings, cpu_has_native_bf16, engine_kwargs

SETTINGS = EngineSettings("/models/m", max_model_len=8192, kv_cache_memory_bytes=1 << 29,
                          gpu_memory_utilization=0.8, tensor_parallel_size=2, data_parallel_size=2,
                          enable_prefix_caching=False)


def test_cpu_gets_kv_cache_bytes_eager_and_whole_prompt_prefill():
    kwargs = engine_kwargs(SETTINGS, cuda=False)
    assert kwargs["kv_cache_memory_bytes"] == 1 << 29 and kwargs["enforce_eager"] is True
    assert kwargs["enable_chunked_prefill"] is False and kwargs["max_num_batched_tokens"] == 8192
    assert not {"gpu_memory_utilization", "tensor_parallel_size", "data_parallel_size"} & set(kwargs)


def test_gpu_gets_memory_share_and_parallelism_not_cpu_knobs():
    kwargs = engine_kwargs(SETTINGS, cuda=True)
    assert kwargs["gpu_memory_utilization"] == 0.8 and kwargs["tensor_parallel_size"] == 2
    assert kwargs["data_parallel_size"] == 2 and kwargs["enforce_eager"] is False
    assert kwargs["enable_prefix_caching"] is False
    assert not {"kv_cache_memory_bytes", "enable_chunked_prefill", "max_num_batched_tokens"} & set(kwargs)


def test_pooling_runner_and_explicit_eager():
    kwargs = engine_kwargs(EngineSettings("/m", runner="pooling", enforce_eager=False), cuda=False)
    assert kwargs["runner"] == "pooling" and kwargs["enforce_eager"] is False
    assert "enable_chunked_prefill" not in kwargs and "enable_prefix_caching" not in kwargs


def test_auto_dtype_is_bfloat16_only_where_the_hardware_computes_it():
    assert engine_kwargs(SETTINGS, cuda=True)["dtype"] == "bfloat16"
    assert engine_kwargs(SETTINGS, cuda=False)["dtype"] == ("bfloat16" if cpu_has_native_bf16() else "float32")
    assert engine_kwargs(EngineSettings("/m", dtype="bfloat16"), cuda=False)["dtype"] == "bfloat16"


@pytest.mark.gpu
def test_generates_on_a_gpu(tiny_generator):
    from curate.generate import SamplingSettings, Request
    from curate.generate.vllm_backend import VLLMBackend

    backend = VLLMBackend(EngineSettings(str(tiny_generator), max_model_len=512, gpu_memory_utilization=0.3))
    sampling = SamplingSettings(n=1, max_tokens=8)
    (generation,) = backend.generate([Request("c", "p", [{"role": "user", "content": "hi"}], 0, 1, sampling)])
    assert generation.text is not None and generation.completion_tokens > 0
