"""The constraint type implementations: text measures, checkers, kwargs fields and descriptions.

Checkers follow the reference implementation of IFEval (google-research
`instruction_following_eval/instructions.py`, as lm-eval ships it) line by line where they can:

- a blank response (empty or white space only) follows no constraint, neither an IFEval type
  nor a reverse type: IFEval's harness scores `response.strip() and check_following(response)`.
  A reverse type is the exact complement of its original on every other text;
- sentences and upper-case words are NLTK's (Punkt's English model, `word_tokenize`), as IFEval
  counts them: see `ifeval_text.py`.

One deliberate difference: user strings (keywords, markers, section splitters) are matched
literally (`re.escape`), where IFEval puts them into regexes unescaped.

A checker returns `(followed, measured)`: the verdict and what it measured (a count, the detected
language, the keywords found), stored in the score's `detail_json` so a verdict can be audited.
`constraints.py` wires these into the registry (`CONSTRAINT_TYPES`) and adds the reverse types.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from langdetect import DetectorFactory, detect
from langdetect.detector_factory import init_factory
from langdetect.lang_detect_exception import LangDetectException

from curate.score.verify.ifeval_text import capital_words, count_sentences

RELATIONS = ("less than", "at least")
FLIPPED = {"less than": "at least", "at least": "less than"}
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

# Every language langdetect 1.0.9 can return (its profiles), with English names for describe().
LANGUAGES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan",
    "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kn": "Kannada", "ko": "Korean",
    "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam", "mr": "Marathi",
    "ne": "Nepali", "nl": "Dutch", "no": "Norwegian", "pa": "Punjabi", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian",
    "so": "Somali", "sq": "Albanian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian",
    "ur": "Urdu", "vi": "Vietnamese", "zh-cn": "Simplified Chinese", "zh-tw": "Traditional Chinese",
}

Kwargs = dict


# the type record ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ConstraintType:
    """One constraint type. `reversed_by` names the complement type; `flip` names the relation
    kwarg whose flip ("less than" <-> "at least") is the exact reverse."""

    id: str
    checker: Callable[[str, Kwargs], tuple[bool, object]]
    fields: dict[str, Callable[[str, object], str | None]]
    describer: Callable[[Kwargs], str]
    reversed_by: str | None = None
    flip: str | None = None
    cross_check: Callable[[Kwargs], str | None] | None = None
    ifeval: bool = True

    def evaluate(self, text: str, kwargs: Kwargs) -> tuple[bool, object]:
        """(followed, measured value); a blank text follows nothing and measures nothing."""
        if not text.strip():
            return False, None
        followed, measured = self.checker(text, kwargs)
        return bool(followed), measured

    def check(self, text: str, kwargs: Kwargs) -> bool:
        return self.evaluate(text, kwargs)[0]

    def validate(self, kwargs: Kwargs) -> str | None:
        """A one-line reason why `kwargs` is unusable, or None."""
        for name, check_field in self.fields.items():
            problem = check_field(name, kwargs.get(name))
            if problem:
                return problem
        unknown = sorted(set(kwargs) - set(self.fields))
        if unknown:
            expected = ", ".join(self.fields) or "none"
            return f"unknown kwargs {unknown} (expected: {expected})"
        return self.cross_check(kwargs) if self.cross_check else None

    def describe(self, kwargs: Kwargs) -> str:
        return self.describer(kwargs)

    def reverse(self, kwargs: Kwargs) -> dict | None:
        """The constraint that holds on exactly the texts where this one fails."""
        reversed_kwargs = copy.deepcopy(dict(kwargs))
        if self.flip:
            reversed_kwargs[self.flip] = FLIPPED[kwargs[self.flip]]
            return {"type": self.id, "kwargs": reversed_kwargs}
        if self.reversed_by:
            return {"type": self.reversed_by, "kwargs": reversed_kwargs}
        return None


def negation(base: ConstraintType, type_id: str, describer: Callable[[Kwargs], str]) -> ConstraintType:
    """A reverse type: same kwargs as `base`, holds exactly where `base` fails (blank texts
    aside: those follow neither), and measures what `base` measures."""
    def checker(text: str, kwargs: Kwargs) -> tuple[bool, object]:
        followed, measured = base.checker(text, kwargs)
        return not followed, measured

    return ConstraintType(type_id, checker, base.fields, describer, reversed_by=base.id,
                          cross_check=base.cross_check, ifeval=False)


# kwargs fields: (name, value) -> error or None ----------------------------------------------

def count_field(minimum: int = 0) -> Callable[[str, object], str | None]:
    what = "a non-negative integer" if minimum == 0 else "a positive integer" if minimum == 1 \
        else f"an integer >= {minimum}"

    def check(name: str, value: object) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            return f"{name} must be {what}"
        return None

    return check


def relation_field(name: str, value: object) -> str | None:
    return None if value in RELATIONS else f"{name} must be one of {list(RELATIONS)}"


def text_field(name: str, value: object) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"{name} must be a non-empty string"


def word_list_field(name: str, value: object) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(w, str) and w for w in value):
        return f"{name} must be a non-empty list of strings"
    return None


def letter_field(name: str, value: object) -> str | None:
    if not isinstance(value, str) or len(value.strip()) != 1:
        return f"{name} must be a single character"
    return None


def word_field(name: str, value: object) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value.split()) != 1:
        return f"{name} must be a single word"
    return None


def language_field(name: str, value: object) -> str | None:
    if value not in LANGUAGES:
        return f"{name} must be a language code langdetect knows, such as 'en', 'fr' or 'zh-cn'"
    return None


def nth_within_count(kwargs: Kwargs) -> str | None:
    if kwargs["nth_paragraph"] > kwargs["num_paragraphs"]:
        return "nth_paragraph must be at most num_paragraphs"
    return None


# text measures ------------------------------------------------------------------------------

WORD = re.compile(r"\b\w+\b", re.UNICODE)


def count_words(text: str) -> int:
    """Words as IFEval counts them (NLTK's RegexpTokenizer(r"\\w+"))."""
    return len(WORD.findall(text))


_langdetect_lock = threading.Lock()


@functools.lru_cache(maxsize=4096)
def detect_language(text: str) -> str | None:
    """langdetect's language code for `text`, None when it cannot tell (no letters)."""
    DetectorFactory.seed = 0  # langdetect is random otherwise
    with _langdetect_lock:
        # langdetect publishes its factory before loading the profiles: a second thread
        # would detect with a part of them (scores that depend on thread timing).
        init_factory()
    try:
        return detect(text)
    except LangDetectException:
        return None


# IFEval checkers: (text, kwargs) -> (followed, measured) --------------------------------------

Verdict = tuple[bool, object]


def compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


def keywords_exist(text: str, kw: Kwargs) -> Verdict:
    found = [k for k in kw["keywords"] if re.search(re.escape(k), text, flags=re.IGNORECASE)]
    return len(found) == len(kw["keywords"]), {"found": found}


def keyword_frequency(text: str, kw: Kwargs) -> Verdict:
    count = len(re.findall(re.escape(kw["keyword"].strip()), text, flags=re.IGNORECASE))
    return compare(count, kw["relation"], kw["frequency"]), {"count": count}


def forbidden_words(text: str, kw: Kwargs) -> Verdict:
    found = [w for w in kw["forbidden_words"]
             if re.search(rf"\b{re.escape(w)}\b", text, flags=re.IGNORECASE)]
    return not found, {"found": found}


def letter_frequency(text: str, kw: Kwargs) -> Verdict:
    # IFEval swaps a non-letter (the data has "#" and "!") for a random letter; we count it as given.
    count = text.lower().count(kw["letter"].strip().lower())
    return compare(count, kw["let_relation"], kw["let_frequency"]), {"count": count}


def response_language(text: str, kw: Kwargs) -> Verdict:
    language = detect_language(text)
    # undetectable counts as followed, as in IFEval
    return language is None or language == kw["language"], {"language": language}


def number_sentences(text: str, kw: Kwargs) -> Verdict:
    count = count_sentences(text)
    return compare(count, kw["relation"], kw["num_sentences"]), {"count": count}


def number_paragraphs(text: str, kw: Kwargs) -> Verdict:
    paragraphs = re.split(r"\s?\*\*\*\s?", text)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:  # an empty paragraph between two dividers
                return False, {"count": None, "empty_paragraph": index + 1}
    return count == kw["num_paragraphs"], {"count": count}


def number_words(text: str, kw: Kwargs) -> Verdict:
    count = count_words(text)
    return compare(count, kw["relation"], kw["num_words"]), {"count": count}


def nth_paragraph_first_word(text: str, kw: Kwargs) -> Verdict:
    paragraphs = re.split(r"\n\n", text)
    count = sum(1 for p in paragraphs if p.strip())
    nth = kw["nth_paragraph"]
    paragraph = paragraphs[nth - 1].strip() if nth <= count else ""
    if not paragraph:  # IFEval indexes the list with empty paragraphs in it
        return False, {"count": count, "first_word": None}
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first_word = ""
    for letter in word:
        if letter in {".", ",", "?", "!", "'", '"'}:
            break
        first_word += letter.lower()
    followed = count == kw["num_paragraphs"] and first_word == kw["first_word"].strip().lower()
    return followed, {"count": count, "first_word": first_word}


def number_placeholders(text: str, kw: Kwargs) -> Verdict:
    count = len(re.findall(r"\[.*?\]", text))
    return count >= kw["num_placeholders"], {"count": count}


def postscript(text: str, kw: Kwargs) -> Verdict:
    marker = kw["postscript_marker"].strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    found = re.search(pattern, text.lower(), flags=re.MULTILINE)
    return found is not None, {"postscript": found.group(0).strip()[:80] if found else None}


def number_bullet_lists(text: str, kw: Kwargs) -> Verdict:
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    count = len(stars) + len(dashes)
    return count == kw["num_bullets"], {"count": count}


def constrained_response(text: str, kw: Kwargs) -> Verdict:
    text = text.strip()
    found = [option for option in CONSTRAINED_RESPONSES if option in text]
    return bool(found), {"found": found}


def number_highlighted_sections(text: str, kw: Kwargs) -> Verdict:
    count = sum(1 for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip())
    count += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", text)
                 if h.removeprefix("**").removesuffix("**").strip())
    return count >= kw["num_highlights"], {"count": count}


def multiple_sections(text: str, kw: Kwargs) -> Verdict:
    splitter = r"\s?" + re.escape(kw["section_spliter"].strip()) + r"\s?\d+\s?"
    count = len(re.split(splitter, text)) - 1
    return count >= kw["num_sections"], {"count": count}


def json_format(text: str, kw: Kwargs) -> Verdict:
    text = (text.strip().removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
            .removeprefix("```").removesuffix("```").strip())
    try:
        json.loads(text)
    except (ValueError, RecursionError) as exc:
        return False, {"json": False, "error": str(exc)[:120]}
    return True, {"json": True}


def title(text: str, kw: Kwargs) -> Verdict:
    titles = [t for t in re.findall(r"<<[^\n]+>>", text) if t.lstrip("<").rstrip(">").strip()]
    return bool(titles), {"title": titles[0][:80] if titles else None}


def two_responses(text: str, kw: Kwargs) -> Verdict:
    responses = text.split("******")
    valid = []
    for index, response in enumerate(responses):
        if response.strip():
            valid.append(response)
        elif index not in (0, len(responses) - 1):
            return False, {"responses": None, "empty_response": index + 1}
    followed = len(valid) == 2 and valid[0].strip() != valid[1].strip()
    return followed, {"responses": len(valid), "identical": len(valid) == 2 and not followed}


def repeat_prompt(text: str, kw: Kwargs) -> Verdict:
    followed = text.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())
    return followed, {"start": text.strip()[:len(kw["prompt_to_repeat"].strip()) + 20]}


def end_checker(text: str, kw: Kwargs) -> Verdict:
    ending = text.strip().strip('"')
    phrase = kw["end_phrase"].strip()
    return ending.lower().endswith(phrase.lower()), {"ending": ending[-(len(phrase) + 20):]}


def capital_word_frequency(text: str, kw: Kwargs) -> Verdict:
    count = len(capital_words(text))
    return compare(count, kw["capital_relation"], kw["capital_frequency"]), {"count": count}


def english_capital(text: str, kw: Kwargs) -> Verdict:
    if not text.isupper():  # IFEval detects the language only for an upper-case text
        return False, {"upper": False}
    language = detect_language(text)
    return language in ("en", None), {"upper": True, "language": language}


def english_lowercase(text: str, kw: Kwargs) -> Verdict:
    if not text.islower():
        return False, {"lower": False}
    language = detect_language(text)
    return language in ("en", None), {"lower": True, "language": language}


def no_comma(text: str, kw: Kwargs) -> Verdict:
    count = text.count(",")
    return count == 0, {"count": count}


def quotation(text: str, kw: Kwargs) -> Verdict:
    text = text.strip()
    followed = len(text) > 1 and text[0] == '"' and text[-1] == '"'
    return followed, {"first": text[:1], "last": text[-1:]}


# descriptions -------------------------------------------------------------------------------

def quoted(words: list[str], conjunction: str) -> str:
    items = [f'"{w}"' for w in words]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def times(n: int) -> str:
    return "time" if n == 1 else "times"


def language_name(kw: Kwargs) -> str:
    return LANGUAGES.get(kw["language"], kw["language"])


OPTIONS = quoted(list(CONSTRAINED_RESPONSES), "or")
