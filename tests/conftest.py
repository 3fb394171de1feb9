"""Shared fixtures: tiny random models built from the SmolLM2 tokenizer, and offline env.

Tiny models are random Llamas (head_dim 32) saved once under data/test-models/ and reused
across test sessions; random weights are for tests only, never for the demo.
"""

from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_MODELS = ROOT / "data" / "test-models"
TINY_VERSION = "v1"

from curate.runtime.env import apply_offline_env  # noqa: E402

# one Prefect home per pytest-xdist worker: two ephemeral servers on one SQLite database lock it
apply_offline_env(ROOT / "data" / "test-env" / os.environ.get("PYTEST_XDIST_WORKER", "main"))
# A CLI subprocess that fails unexpectedly prints its traceback, for the test report to show.
os.environ.setdefault("CURATE_TRACEBACK", "1")
# two workers share 2 cores: one torch thread per vLLM engine, as vLLM itself chooses
os.environ.setdefault("CURATE_VLLM_ONE_THREAD", "1")


def _tokenizer():
    from transformers import AutoTokenizer

    from curate.runtime.models import embedded_gguf

    gguf = embedded_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _tiny_config(**extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, **extra,
    )


@contextmanager
def _building(target: Path):
    """Yields whether `target` still needs building, holding a lock: pytest-xdist's workers (and
    concurrent sessions) build each test model once and reuse it."""
    TEST_MODELS.mkdir(parents=True, exist_ok=True)
    with open(TEST_MODELS / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield not (target / "config.json").exists()


def _build_tiny(kind: str) -> Path:
    target = TEST_MODELS / (f"tiny-{kind}-{TINY_VERSION}" + ("-stops" if kind == "generator" else ""))
    with _building(target) as needed:
        if needed:
            _write_tiny(kind, target)
    return target


def _write_tiny(kind: str, target: Path) -> None:
    import shutil

    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed({"generator": 0, "reward": 1, "reward2": 2}[kind])
    if kind == "generator":
        model = LlamaForCausalLM(_tiny_config())
        # Random weights almost never sample EOS, so every reply would stop at max_tokens, which
        # the quality gates (curate/score/quality.py) never let be a chosen. Every 16th token id
        # ends a reply too (vLLM reads generation_config.json's eos_token_id list): about half of
        # 12-token replies end on their own.
        model.generation_config.eos_token_id = [2, *range(16, 49152, 16)]
    else:
        model = LlamaForSequenceClassification(_tiny_config(num_labels=1, pad_token_id=0))
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    _tokenizer().save_pretrained(partial)
    partial.rename(target)


@pytest.fixture(scope="session")
def tiny_generator() -> Path:
    return _build_tiny("generator")


@pytest.fixture(scope="session")
def tiny_reward() -> Path:
    return _build_tiny("reward")


@pytest.fixture(scope="session")
def tiny_reward2() -> Path:
    """A second reward model (other random weights), for runs with several reward scorers."""
    return _build_tiny("reward2")


def pytest_collection_modifyitems(config, items):
    import shutil

    has_gpu = shutil.which("nvidia-smi") is not None
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture
def curate_cli():
    """Command prefix to run the CLI in a subprocess with this interpreter."""
    return [sys.executable, "-m", "curate.cli.main"]


@pytest.fixture(autouse=True)
def _no_outside_env(monkeypatch):
    monkeypatch.delenv("CURATE_DATA_DIR", raising=False)
    monkeypatch.delenv("CURATE_LAKE_CATALOG", raising=False)
    monkeypatch.delenv("CURATE_LAKE_DATA_PATH", raising=False)
    yield


def _build_scripted(reply: str, after: str = "\n", reply_opening: str = "") -> Path:
    """A tiny Llama that always answers `reply`, run through the real vLLM engine.

    Its layers are zeroed, so the hidden state is the last token's embedding: a bigram model.
    Each token of the reply gets its own embedding dimension, and the output head maps that
    dimension to the next token. The reply starts after the token `after` (a newline ends the chat
    template) and ends with EOS. `reply_opening` is appended to the chat template's generation
    prompt (e.g. "Answer:" with after=":"), so that a reply may contain newlines.
    """
    import hashlib

    digest = hashlib.sha256(f"{after}|{reply}|{reply_opening}".encode()).hexdigest()[:10]
    target = TEST_MODELS / f"scripted-{digest}-{TINY_VERSION}"
    with _building(target) as needed:
        if needed:
            _write_scripted(target, reply, after, reply_opening)
    return target


def _write_scripted(target: Path, reply: str, after: str, reply_opening: str) -> None:
    import shutil

    import torch
    from transformers import LlamaForCausalLM

    tokenizer = _tokenizer()
    start = tokenizer.encode(after, add_special_tokens=False)
    sequence = start + tokenizer.encode(reply, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert len(start) == 1 and len(set(sequence)) == len(sequence), f"reply {reply!r} needs distinct tokens"
    config = _tiny_config()
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for dim, (token, next_token) in enumerate(zip(sequence, sequence[1:])):
            model.model.embed_tokens.weight[token, dim] = 1.0
            model.lm_head.weight[next_token, dim] = 10.0
    if reply_opening:
        opening = "<|im_start|>assistant\n"
        assert opening in tokenizer.chat_template
        tokenizer.chat_template = tokenizer.chat_template.replace(opening, opening + reply_opening)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)


@pytest.fixture(scope="session")
def scripted_model():
    """scripted_model("Rating: 7") -> a model directory whose every reply is that text."""
    return _build_scripted


@pytest.fixture
def sandbox_to_itself():
    """Held while a test runs code sandboxes that another worker's `unharmed` check would see as
    leftovers (its processes, its temporary directory): one such test at a time across workers."""
    with open(Path(os.environ.get("TMPDIR", "/tmp")) / "curate-sandbox-tests.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
