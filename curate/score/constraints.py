"""Checkable instruction constraints, IFEval-style: `{"type": <IFEval id>, "kwargs": {...}}`.

Each checker takes the response text and the constraint's kwargs and says whether the text
follows it. The types here are the first few of IFEval's 25; the rest come with the full
constraint library.
"""

from __future__ import annotations

import re
from collections.abc import Callable

WORD = re.compile(r"\b\w+\b", re.UNICODE)
RELATIONS = ("less than", "at least")


def count_words(text: str) -> int:
    return len(WORD.findall(text))


def _number_words(text: str, kwargs: dict) -> bool:
    words = count_words(text)
    if kwargs["relation"] == "less than":
        return words < kwargs["num_words"]
    return words >= kwargs["num_words"]


def _keywords_exist(text: str, kwargs: dict) -> bool:
    return all(re.search(re.escape(k), text, flags=re.IGNORECASE) for k in kwargs["keywords"])


def _forbidden_words(text: str, kwargs: dict) -> bool:
    return not any(
        re.search(rf"\b{re.escape(w)}\b", text, flags=re.IGNORECASE) for w in kwargs["forbidden_words"]
    )


def _english_lowercase(text: str, kwargs: dict) -> bool:
    return any(c.isalpha() for c in text) and text == text.lower()


def _check_number_words_kwargs(kwargs: dict) -> str | None:
    if kwargs.get("relation") not in RELATIONS:
        return f"relation must be one of {list(RELATIONS)}"
    num_words = kwargs.get("num_words")
    if not isinstance(num_words, int) or isinstance(num_words, bool) or num_words < 0:
        return "num_words must be a non-negative integer"
    return None


def _check_word_list(name: str) -> Callable[[dict], str | None]:
    def check(kwargs: dict) -> str | None:
        value = kwargs.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(w, str) and w for w in value):
            return f"{name} must be a non-empty list of strings"
        return None

    return check


# type -> (checker, kwargs validator)
CHECKERS: dict[str, tuple[Callable[[str, dict], bool], Callable[[dict], str | None]]] = {
    "length_constraints:number_words": (_number_words, _check_number_words_kwargs),
    "keywords:existence": (_keywords_exist, _check_word_list("keywords")),
    "keywords:forbidden_words": (_forbidden_words, _check_word_list("forbidden_words")),
    "change_case:english_lowercase": (_english_lowercase, lambda kwargs: None),
}


def constraint_errors(constraints) -> list[str]:
    """Why a constraint list is malformed (empty list when it is fine)."""
    if not isinstance(constraints, list) or not constraints:
        return ["constraints must be a non-empty list of {type, kwargs}"]
    errors = []
    for index, constraint in enumerate(constraints):
        if not isinstance(constraint, dict) or not isinstance(constraint.get("type"), str):
            errors.append(f"constraints[{index}] needs a string `type`")
            continue
        if constraint["type"] not in CHECKERS:
            errors.append(f"constraints[{index}]: unknown constraint type {constraint['type']!r}")
            continue
        kwargs = constraint.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            errors.append(f"constraints[{index}].kwargs must be an object")
            continue
        problem = CHECKERS[constraint["type"]][1](kwargs)
        if problem:
            errors.append(f"constraints[{index}] ({constraint['type']}): {problem}")
    return errors


def check_constraint(text: str, constraint: dict) -> bool:
    checker, _ = CHECKERS[constraint["type"]]
    return checker(text, constraint.get("kwargs") or {})


def check_all(text: str, constraints: list[dict]) -> list[bool]:
    return [check_constraint(text, c) for c in constraints]
