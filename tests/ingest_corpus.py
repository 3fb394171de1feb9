"""A bad-input corpus: one JSONL file of good rows mixed with every kind of malformed row.

`build_corpus()` returns the file's bytes (exactly as written: invalid UTF-8 is invalid bytes, a
NUL is a NUL) with what each line must become: GOOD lines a prompt (with the content it must be
stored with), BAD lines a reject whose reason contains the fragment, BLANK lines nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from curate.ingest.readers import MAX_ROW_BYTES


def _j(value) -> bytes:
    return json.dumps(value).encode()


def _instruction(constraints) -> bytes:
    return _j({"task": "instruction", "prompt": "Describe the sea.", "constraints": constraints})


WORDS = {"type": "length_constraints:number_words", "kwargs": {"relation": "at least", "num_words": 5}}
DEEP = 100_000  # deeper than Python's JSON parser can go

# (line bytes, reason fragment): every kind of malformed row
BAD: list[tuple[bytes, str]] = [
    # JSON syntax
    (b'{"prompt": "unterminated', "invalid JSON"),
    (b'{"prompt": "x"} trailing', "invalid JSON"),
    (b"{'prompt': 'single quotes'}", "invalid JSON"),
    (b'{"prompt": "x" /* a comment */}', "invalid JSON"),
    (b'{"prompt": "a"}\r{"prompt": "b"}', "invalid JSON"),  # a lone CR is no line break in JSONL
    (b'{"prompt": "x", "prompt": "y"}', "duplicate key 'prompt'"),
    (b'{"task": "math", "prompt": "x", "reference_answer": NaN}', "NaN is not a JSON number"),
    (b'{"task": "math", "prompt": "x", "reference_answer": -Infinity}', "-Infinity is not a JSON number"),
    # not an object
    (b"42", "row is a number"),
    (b'"just a string"', "row is a string"),
    (b"null", "row is null"),
    (b"true", "row is a boolean"),
    (b'[{"prompt": "in an array"}]', "row is an array"),
    (b"{}", "needs `messages`"),
    # encoding
    (b'{"prompt": "\\ud800 lone high surrogate"}', "lone surrogate \\ud800"),
    (b'{"messages": [{"role": "user", "content": "low \\udfff"}]}', "messages[0].content: lone surrogate"),
    (b'{"prompt": "ok", "\\ud83d": "surrogate in a key"}', "lone surrogate"),
    (b'{"prompt": "raw \x00 NUL byte"}', "NUL byte at column 17"),
    (b'{"prompt": "escaped \\u0000 NUL"}', "prompt: NUL character"),
    (b'{"prompt": "latin-1 caf\xe9"}', "invalid UTF-8"),
    (b'{"prompt": "stray \xff byte"}', "invalid UTF-8"),
    (b'{"prompt": "cut \xe2\x82 short"}', "invalid UTF-8"),
    (b'{"prompt": "encoded surrogate \xed\xa0\x80"}', "invalid UTF-8"),
    (b'\xef\xbb\xbf{"prompt": "a BOM in the middle of the file"}', "byte order mark"),
    # size and nesting
    (b'{"prompt": "' + b"a" * (MAX_ROW_BYTES + 1000) + b'"}', "over the 4,194,304-byte limit"),
    (b'{"prompt": "x", "extra": ' + b"[" * DEEP + b"]" * DEEP + b"}", "nested too deeply"),
    (b'{"prompt": "x", "extra": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "nested deeper than 32 levels"),
    # numbers
    (b'{"task": "math", "prompt": "x", "reference_answer": ' + b"9" * 5000 + b"}", "number too long"),
    (b'{"task": "math", "prompt": "x", "reference_answer": 1e999}', "not a finite number"),
    (_instruction([{"type": "length_constraints:number_words",
                    "kwargs": {"relation": "at least", "num_words": 10**20}}]), "beyond the 64-bit range"),
    # tasks and task fields
    (_j({"task": "poetry", "prompt": "Write."}), "unknown task 'poetry'"),
    (_j({"task": 3, "prompt": "Write."}), "unknown task 3"),
    (_j({"task": ["math"], "prompt": "Write."}), "unknown task ['math']"),
    (_j({"task": "math", "prompt": "2+2?"}), "needs field 'reference_answer'"),
    (_j({"task": "math", "prompt": "2+2?", "reference_answer": [4]}), "'reference_answer' must be a string"),
    (_j({"task": "math", "prompt": "2+2?", "reference_answer": True}), "'reference_answer' must be a string"),
    (_j({"task": "code", "prompt": "Write f."}), "needs field 'tests'"),
    (_j({"task": "code", "prompt": "Write f.", "tests": ["assert f()"]}), "'tests' must be a string"),
    (_j({"task": "long_context", "context": "A document."}), "needs field 'question'"),
    (_j({"task": "code_edit", "prompt": "Fix it.", "before": "x = 1", "message": "fix"}), "needs field 'after'"),
    (_j({"task": "instruction", "prompt": "Describe the sea."}), "needs field 'constraints'"),
    # constraints
    (_instruction([]), "needs field 'constraints'"),
    (_instruction({"type": "punctuation:no_comma"}), "constraints must be a non-empty list"),
    (_instruction(["punctuation:no_comma"]), "constraints[0] needs a string `type`"),
    (_instruction([{"type": "no:such_thing"}]), "unknown constraint type 'no:such_thing'"),
    (_instruction([{"type": "length_constraints:number_words", "kwargs": {"relation": "about",
                                                                           "num_words": 5}}]),
     "relation must be one of"),
    (_instruction([{"type": "length_constraints:number_words", "kwargs": {"relation": "at least",
                                                                           "num_words": "five"}}]),
     "num_words must be"),
    (_instruction([{"type": "punctuation:no_comma", "kwargs": ["x"]}]), "kwargs must be an object"),
    (_instruction([{"type": "keywords:existence", "kwargs": {"keywords": ["sea"], "colour": "blue"}}]),
     "unknown kwargs ['colour']"),
    # messages
    (_j({"messages": []}), "messages must be a non-empty list"),
    (_j({"messages": "hello"}), "messages must be a non-empty list"),
    (_j({"messages": ["hello"]}), "messages[0] is not an object"),
    (_j({"messages": [{"role": "robot", "content": "hi"}]}), "messages[0].role must be one of"),
    (_j({"messages": [{"content": "no role"}]}), "messages[0].role must be one of"),
    (_j({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
     "the last message must be from the user"),
    (_j({"messages": [{"role": "user", "content": "   "}]}), "messages[0].content must be a non-empty string"),
    (_j({"messages": [{"role": "user", "content": 7}]}), "messages[0].content must be a non-empty string"),
    (_j({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
     "messages[0].content must be a non-empty string"),
    (_j({"messages": [{"role": "user"}]}), "messages[0].content must be a non-empty string"),
    (_j({"prompt": 12}), "needs `messages`"),
    (_j({"prompt": ""}), "needs `messages`"),
]


@dataclass
class Corpus:
    data: bytes
    good: dict[int, str] = field(default_factory=dict)  # line -> the stored user message's content
    bad: dict[int, str] = field(default_factory=dict)  # line -> reason fragment
    blank: list[int] = field(default_factory=list)


def _good_rows() -> list[tuple[bytes, str]]:
    """(line bytes without newline, the last message's content as it must be stored)."""
    emoji = b'{"prompt": "A surrogate pair is fine: \\ud83d\\ude00 and \xe4\xb8\xad\xe6\x96\x87"}'
    return [
        (b"\xef\xbb\xbf" + _j({"prompt": "First line, after the file's BOM."}), "First line, after the file's BOM."),
        (_j({"prompt": "A CRLF line."}) + b"\r", "A CRLF line."),
        (_j({"task": "math", "prompt": "What is 6 * 7?", "reference_answer": 42}), "What is 6 * 7?"),
        (_j({"task": "math", "prompt": "What is 10^18?", "reference_answer": 10**18}), "What is 10^18?"),
        (_instruction([WORDS]), "Describe the sea."),
        (_j({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."}]}), "Hi."),
        (_j({"task": "code", "prompt": "Write f() returning 1.", "tests": "assert f() == 1",
             "entry_point": "f"}), "Write f() returning 1."),
        (_j({"task": "code_edit", "prompt": "Make it faster.", "before": "x = 1", "after": "x = 2",
             "message": "speed"}), "Make it faster."),
        (emoji, "A surrogate pair is fine: \U0001F600 and 中文"),
        (_j({"prompt": "Extra fields are ignored.", "id": 17, "meta": {"tags": ["a", "b"]}}),
         "Extra fields are ignored."),
        (_j({"prompt": "Task null means chat.", "task": None}), "Task null means chat."),
        (_j({"prompt": "Ten levels of extra nesting are fine.", "extra": [[[[[[[[[["deep"]]]]]]]]]]}),
         "Ten levels of extra nesting are fine."),
        (_j({"prompt": "A large row under the limit. " + "word " * 20_000}),
         "A large row under the limit. " + "word " * 20_000),
    ]


def build_corpus() -> Corpus:
    """Good rows first and interleaved with the bad ones, blank lines between."""
    good, corpus, lines = _good_rows(), Corpus(b""), []

    def add(line: bytes):
        lines.append(line)
        return len(lines)

    good_iter = iter(good)
    for index, (line, fragment) in enumerate(BAD):
        if index % 4 == 0 and (row := next(good_iter, None)) is not None:
            corpus.good[add(row[0])] = row[1]
        corpus.bad[add(line)] = fragment
        if index % 9 == 0:
            corpus.blank.append(add(b"" if index % 2 else b"   \t"))
    for row in good_iter:
        corpus.good[add(row[0])] = row[1]
    corpus.data = b"\n".join(lines) + b"\n"
    return corpus
