"""Process environment for running offline on CPU: vLLM, Prefect and HF settings.

Applied once, before vllm or prefect is imported. Values the user already set win.
"""

from __future__ import annotations

import os
from pathlib import Path


def _cpu_bind() -> str:
    cores = sorted(os.sched_getaffinity(0))
    return f"{cores[0]}-{cores[-1]}" if cores else "0"


def apply_offline_env(data_dir: Path) -> None:
    defaults = {
        # vLLM: in-process engine and all cores (docs/architecture.md, "Generation backends").
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_OMP_THREADS_BIND": _cpu_bind(),
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
        "VLLM_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        # Hugging Face: never reach for a hub.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # Prefect: ephemeral server with its database under the data dir, nothing phoned home.
        "PREFECT_HOME": str(Path(data_dir).resolve() / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # Prefect's SQLite database cannot be created in a folder that does not exist.
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
