"""What an audit check returns, and how a check reads a pair's JSON columns: shared by the audit's
own checks (curate.audit.checks) and the checks a strategy declares (curate.pairs.strategy.AuditCheck).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

CONFIRMED, REFUTED, UNCHECKABLE = "confirmed", "refuted", "uncheckable"
NO_SOURCE = "no source text the answer must keep to"  # answer_grounding's reason where a pair has no source


@dataclass(frozen=True)
class Verdict:
    check: str
    verdict: str
    detail: dict


def json_object(pair: dict, column: str) -> dict:
    """The pair's JSON column as a dict ({} when missing or not an object); read-only: the checks
    of one pair share it."""
    text = pair.get(column) or "{}"
    return _parsed_object(text) if isinstance(text, str) else {}


@functools.lru_cache(maxsize=256)  # the checks of a pair ask for its columns one after another
def _parsed_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def pair_details(pair: dict) -> dict:
    """The pair's details_json: the strategy's evidence."""
    return json_object(pair, "details_json")


def prompt_text(messages) -> str:
    return "\n".join(m["content"] for m in (messages or []))
