"""Content-derived ids. Identity is content: renaming a run or moving a path changes no id."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata


# one encoder for every call: json.dumps with options builds a new one each time
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode


def content_hash(*parts) -> str:
    """A stable 32-hex-digit hash of JSON-serialisable parts (key order does not matter)."""
    payload = _CANONICAL_JSON(parts)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def normalise_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: two spellings of the same text compare equal."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def same_text(first: str, second: str) -> bool:
    """Two answers are one text: equal in Unicode NFC, outer whitespace aside (curate.pairs.rule's
    `same_text` compares columns the same way)."""
    return unicodedata.normalize("NFC", first).strip() == unicodedata.normalize("NFC", second).strip()


def normalise_messages(messages: list[dict]) -> list[dict]:
    """Messages as they matter for identity: role and content with outer whitespace trimmed."""
    return [{"role": m["role"].strip(), "content": m["content"].strip()} for m in messages]


def prompt_id(messages: list[dict], task: str, task_fields: dict, source: str) -> str:
    return content_hash("prompt", normalise_messages(messages), task, task_fields, source)


def candidate_id(prompt_id: str, model: str, sampling: dict, sample_index: int, seed: int) -> str:
    return content_hash("candidate", prompt_id, model, sampling, sample_index, seed)


def score_id(candidate_id: str, scorer: str, scorer_version: str) -> str:
    return content_hash("score", candidate_id, scorer, scorer_version)


def pair_id(strategy: str, chosen_id: str, rejected_id: str, prompt_id: str) -> str:
    return content_hash("pair", strategy, chosen_id, rejected_id, prompt_id)


def sample_seed(prompt_id: str, sample_index: int, base_seed: int) -> int:
    """Per-sample seed: the same sample of the same prompt always draws the same tokens."""
    digest = hashlib.sha256(f"{prompt_id}:{sample_index}:{base_seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
