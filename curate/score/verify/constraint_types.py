"""The constraint type implementations: text measures, checkers, kwargs fields and descriptions.

Checkers follow the reference implementation of IFEval (google-research
`instruction_following_eval/instructions.py`) line by line where they can, with three kinds of
deliberate difference, each noted where it happens:

- no NLTK: sentences are split by `split_sentences` (a regex splitter, not Punkt) and the words of
  `capital_word_frequency` by `capital_words` (a regex, not `word_tokenize`);
- user strings (keywords, markers, section splitters) are matched literally (`re.escape`), where
  IFEval puts them into regexes unescaped;
- no empty-response rule: IFEval's harness fails every instruction on a blank response, outside the
  checkers; here a checker sees the text as it is, so that a checker and its reverse stay exact
  complements on every text, the empty one included.

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
    checker: Callable[[str, Kwargs], bool]
    fields: dict[str, Callable[[str, object], str | None]]
    describer: Callable[[Kwargs], str]
    reversed_by: str | None = None
    flip: str | None = None
    cross_check: Callable[[Kwargs], str | None] | None = None
    ifeval: bool = True

    def check(self, text: str, kwargs: Kwargs) -> bool:
        return bool(self.checker(text, kwargs))

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
    """A reverse type: same kwargs as `base`, holds exactly where `base` fails."""
    return ConstraintType(type_id, lambda text, kwargs: not base.check(text, kwargs), base.fields,
                          describer, reversed_by=base.id, cross_check=base.cross_check, ifeval=False)


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


# Lowercase, without the final period: "e.g." is looked up as "e.g".
ABBREVIATIONS = frozenset("""
    mr mrs ms mx dr prof sr jr st mt ft rev hon gen col capt cpt lt sgt gov sen rep pres
    vs etc e.g i.e cf al approx ca dept est fig figs no nos vol vols pp p ed eds inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun
    a.m p.m u.s u.k u.n ph.d b.a m.a b.sc m.sc
""".split())
SENTENCE_END = re.compile(r"([.!?]+)[\"'”’)\]]*(?=\s|$)")
DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # e.g, U.S, a.m: letters joined by dots


def _is_sentence_break(text: str, match: re.Match) -> bool:
    punct = match.group(1)
    if "!" in punct or "?" in punct:
        return True
    following = text[match.end():].lstrip()
    if len(punct) > 1:  # an ellipsis ends a sentence only before a capital (or the end)
        return not following or not following[0].islower()
    before = text[:match.start()]
    token = re.search(r"\S*$", before).group(0).lstrip("\"'“‘([")
    if not token:
        return True
    lower = token.lower()
    if lower in ABBREVIATIONS or DOTTED.fullmatch(token):
        return False
    if len(token) == 1 and token.isupper():  # an initial: "J. R. R. Tolkien"
        return False
    line_start = before[: len(before) - len(token)].rsplit("\n", 1)[-1]
    if token.isdigit() and not line_start.strip():  # a numbered list item: "1. Buy milk"
        return False
    return True


def split_sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? (and closing quotes) followed by white space, except after
    abbreviations (Mr., e.g., etc.), initials, list numbers, and an ellipsis before a lowercase
    word. Decimals and URLs have no space after their dots, so they never split. Like Punkt, and
    unlike a line splitter, a newline alone does not end a sentence."""
    sentences, start = [], 0
    for match in SENTENCE_END.finditer(text):
        if _is_sentence_break(text, match):
            sentence = text[start:match.end()].strip()
            if sentence:
                sentences.append(sentence)
            start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def count_sentences(text: str) -> int:
    """Sentences with at least one word character (a lone "***" or "..." is not a sentence)."""
    return sum(1 for s in split_sentences(text) if re.search(r"\w", s))


CAPITAL_TOKEN = re.compile(r"\w+(?:[-.]\w+)*|['’]\w+")


def capital_words(text: str) -> list[str]:
    """Tokens in upper case, near NLTK's word_tokenize: punctuation split off, hyphenated words and
    dotted acronyms kept whole, contractions split ("DON'T" -> "DON", "'T")."""
    return [t for t in CAPITAL_TOKEN.findall(text) if t.isupper()]


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


# IFEval checkers ----------------------------------------------------------------------------

def compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


def keywords_exist(text: str, kw: Kwargs) -> bool:
    return all(re.search(re.escape(k), text, flags=re.IGNORECASE) for k in kw["keywords"])


def keyword_frequency(text: str, kw: Kwargs) -> bool:
    found = re.findall(re.escape(kw["keyword"].strip()), text, flags=re.IGNORECASE)
    return compare(len(found), kw["relation"], kw["frequency"])


def forbidden_words(text: str, kw: Kwargs) -> bool:
    return not any(re.search(rf"\b{re.escape(w)}\b", text, flags=re.IGNORECASE)
                   for w in kw["forbidden_words"])


def letter_frequency(text: str, kw: Kwargs) -> bool:
    # IFEval swaps a non-letter (the data has "#" and "!") for a random letter; we count it as given.
    count = text.lower().count(kw["letter"].strip().lower())
    return compare(count, kw["let_relation"], kw["let_frequency"])


def response_language(text: str, kw: Kwargs) -> bool:
    language = detect_language(text)
    return language is None or language == kw["language"]  # undetectable counts as followed


def number_sentences(text: str, kw: Kwargs) -> bool:
    return compare(count_sentences(text), kw["relation"], kw["num_sentences"])


def number_paragraphs(text: str, kw: Kwargs) -> bool:
    paragraphs = re.split(r"\s?\*\*\*\s?", text)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False  # an empty paragraph between two dividers
    return count == kw["num_paragraphs"]


def number_words(text: str, kw: Kwargs) -> bool:
    return compare(count_words(text), kw["relation"], kw["num_words"])


def nth_paragraph_first_word(text: str, kw: Kwargs) -> bool:
    paragraphs = re.split(r"\n\n", text)
    count = sum(1 for p in paragraphs if p.strip())
    nth = kw["nth_paragraph"]
    if nth > count:
        return False
    paragraph = paragraphs[nth - 1].strip()  # IFEval indexes the list with empty paragraphs in it
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first_word = ""
    for letter in word:
        if letter in {".", ",", "?", "!", "'", '"'}:
            break
        first_word += letter.lower()
    return count == kw["num_paragraphs"] and first_word == kw["first_word"].strip().lower()


def number_placeholders(text: str, kw: Kwargs) -> bool:
    return len(re.findall(r"\[.*?\]", text)) >= kw["num_placeholders"]


def postscript(text: str, kw: Kwargs) -> bool:
    marker = kw["postscript_marker"].strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return re.search(pattern, text.lower(), flags=re.MULTILINE) is not None


def number_bullet_lists(text: str, kw: Kwargs) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes) == kw["num_bullets"]


def constrained_response(text: str, kw: Kwargs) -> bool:
    text = text.strip()
    return any(option in text for option in CONSTRAINED_RESPONSES)


def number_highlighted_sections(text: str, kw: Kwargs) -> bool:
    count = sum(1 for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip())
    count += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", text)
                 if h.removeprefix("**").removesuffix("**").strip())
    return count >= kw["num_highlights"]


def multiple_sections(text: str, kw: Kwargs) -> bool:
    splitter = r"\s?" + re.escape(kw["section_spliter"].strip()) + r"\s?\d+\s?"
    return len(re.split(splitter, text)) - 1 >= kw["num_sections"]


def json_format(text: str, kw: Kwargs) -> bool:
    text = (text.strip().removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
            .removeprefix("```").removesuffix("```").strip())
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def title(text: str, kw: Kwargs) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", text))


def two_responses(text: str, kw: Kwargs) -> bool:
    responses = text.split("******")
    valid = []
    for index, response in enumerate(responses):
        if response.strip():
            valid.append(response)
        elif index not in (0, len(responses) - 1):
            return False
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def repeat_prompt(text: str, kw: Kwargs) -> bool:
    return text.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())


def end_checker(text: str, kw: Kwargs) -> bool:
    return text.strip().strip('"').lower().endswith(kw["end_phrase"].strip().lower())


def capital_word_frequency(text: str, kw: Kwargs) -> bool:
    return compare(len(capital_words(text)), kw["capital_relation"], kw["capital_frequency"])


def english_capital(text: str, kw: Kwargs) -> bool:
    return text.isupper() and detect_language(text) in ("en", None)


def english_lowercase(text: str, kw: Kwargs) -> bool:
    return text.islower() and detect_language(text) in ("en", None)


def no_comma(text: str, kw: Kwargs) -> bool:
    return "," not in text


def quotation(text: str, kw: Kwargs) -> bool:
    text = text.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


# descriptions -------------------------------------------------------------------------------

def quoted(words: list[str], conjunction: str) -> str:
    items = [f'"{w}"' for w in words]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def times(n: int) -> str:
    return "time" if n == 1 else "times"


def language_name(kw: Kwargs) -> str:
    return LANGUAGES.get(kw["language"], kw["language"])


OPTIONS = quoted(list(CONSTRAINED_RESPONSES), "or")
