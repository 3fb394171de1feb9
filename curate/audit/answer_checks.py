"""Checks of the answer: is the chosen a sound answer to the prompt as the pair states it?

A strategy's claim ("the chosen follows every rewritten constraint", "the short context holds the
answer") can hold while the chosen is a poor answer. These checks look at the chosen's own text
against the prompt (docs/architecture.md, "Pair audit"); curate.audit.checks stores each as a
`pair_audits` row named `answer_<check>`. They need no model and cost microseconds per pair:

- `own_text_failures`: a constraint the chosen follows only through text that is not its own (a
  URL it pasted, a span of eight or more words copied from the prompt, the instruction's own
  example: "* This is point 1.", "<<poem of joy>>", "[address]", "*highlighted section*") or
  through another word (the keyword "street" inside "streetlights") fails; a forbidden word used
  in another form ("darkest" for "dark") counts as used. The IFEval checkers keep the reference's definitions;
  this is a stricter reading on top of them.
- `requested_format_failures`: a format the prompt asks for in so many words ("the final answer
  ... after 'The answer is'", a code block) that the chosen does not have.
- `invented_terms`: identifiers, signatures and numbers in an answer written from a source text
  (short-to-long's chunk) that the source does not hold, and "X takes no parameters" where the
  source shows X's parameters.
- `invented_literals`: numbers and strings that a code edit adds although neither the request nor
  the code it edits gives them.
"""

from __future__ import annotations

import difflib
import io
import re
import tokenize

from curate.score.verify import constraints as library

COPIED_WORDS = 8  # a span of this many words shared with the prompt is the prompt's, not the answer's
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9']+")
# English inflections and derivations that keep a word the same word ("dark": darker, darkest, darkly,
# darkness, darks, darkened): a ban on the word bans them, a keyword is present in them.
_FORMS = r"(?:s|es|ed|d|ing|er|ers|est|ly|ness|en|ened|y|ier|iest)?"
# Constraint types whose "at least / present" side can be met by pasted or copied text. A "fewer
# than" or "absent" side only gets easier when text is removed, so it is never re-read here.
_OWN_TEXT_TYPES = {
    "keywords:existence", "keywords:any_exist", "keywords:frequency", "keywords:letter_frequency",
    "punctuation:has_comma", "length_constraints:number_words", "length_constraints:number_sentences",
}


# The examples IFEval's instructions give, which a weak model pastes to meet them: (type, pattern of
# the example as the prompt writes it, pattern of what the answer's copy takes away)
_EXAMPLES = (
    ("detectable_format:number_bullet_lists", r"\bthis is point \d+", r"(?im)^[ \t]*[*-][ \t]+this is point \d+\.?[ \t]*$"),
    ("detectable_format:title", r"<<poem of joy>>", r"(?i)<<poem of joy>>"),
    ("detectable_content:number_placeholders", r"\[address\]", r"(?i)\[address\]"),
    ("detectable_format:number_highlighted_sections", r"\*highlighted section\*", r"(?i)\*highlighted section\*"),
)


def _without_examples(answer: str, kind: str, prompt_text: str) -> str:
    """The answer less the copies of the example that the prompt's instruction of this type gives."""
    for example_kind, in_prompt, copy in _EXAMPLES:
        if example_kind == kind and re.search(in_prompt, prompt_text, re.IGNORECASE):
            answer = re.sub(copy, "", answer)
    return answer


def _word_forms(word: str) -> re.Pattern:
    word = word.strip()
    stems = [re.escape(word)]
    if len(word) >= 3 and word.lower().endswith("e"):  # "use": using, used, user
        stems.append(re.escape(word[:-1]))
    if re.search(r"[^aeiou][aeiou][bdgklmnprt]$", word.lower()):  # "sun": sunny, "wet": wetter
        stems.append(re.escape(word + word[-1]))
    return re.compile(rf"\b(?:{'|'.join(stems)}){_FORMS}\b", re.IGNORECASE)


def own_text(answer: str, prompt_text: str, words: int = COPIED_WORDS) -> str:
    """The answer less its URLs and the spans of `words`+ words it shares with the prompt."""
    text = _URL.sub(" ", answer)
    prompt_words = [w.lower() for w in _WORD.findall(prompt_text)]
    grams = {tuple(prompt_words[i:i + words]) for i in range(len(prompt_words) - words + 1)}
    if not grams:
        return text
    spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
    known = set(prompt_words)
    copied = [False] * len(spans)
    run = 0  # words in a row, ending here, that the prompt has: only a full window can be a copy
    for end, (_, _, word) in enumerate(spans):
        run = run + 1 if word in known else 0
        i = end - words + 1
        if run >= words and tuple(s[2] for s in spans[i:end + 1]) in grams:
            copied[i:end + 1] = [True] * words
    out, last = [], 0
    for (start, end, _), is_copied in zip(spans, copied, strict=True):
        if is_copied:
            out.append(text[last:start])
            last = end
    out.append(text[last:])
    return "".join(out)


def _word_form_failure(answer: str, constraint: dict) -> str | None:
    kind, kwargs = constraint["type"], constraint.get("kwargs") or {}
    if kind == "keywords:forbidden_words":
        used = [w for w in kwargs.get("forbidden_words", []) if _word_forms(w).search(answer)]
        if used:
            forms = sorted({m.group() for w in used for m in _word_forms(w).finditer(answer)})
            return f"uses a forbidden word in another form: {', '.join(forms)}"
    if kind == "keywords:existence":
        missing = [k for k in kwargs.get("keywords", []) if not _word_forms(k).search(answer)]
        if missing:
            return f"has the keyword {', '.join(repr(k) for k in missing)} only inside other words"
    if kind == "keywords:any_exist":
        words = kwargs.get("forbidden_words", [])
        if words and not any(_word_forms(w).search(answer) for w in words):
            return f"has none of {', '.join(repr(w) for w in words)} as a word of its own"
    if kind == "keywords:frequency" and kwargs.get("relation") == "at least":
        count = len(_word_forms(kwargs.get("keyword", "")).findall(answer))
        if count < kwargs.get("frequency", 0):
            return f"has {kwargs.get('keyword')!r} as a word {count} times, fewer than {kwargs.get('frequency')}"
    return None


def own_text_failures(answer: str, constraints: list[dict], prompt_text: str) -> list[dict]:
    """The constraints the answer follows by the reference checkers but not by its own text:
    [{type, why}] (see the module doc); empty when every followed constraint holds."""
    followed = library.check_all(answer, constraints)
    own = None  # the answer less what it copied, computed when a constraint needs it
    failures = []
    for constraint, ok in zip(constraints, followed, strict=True):
        if not ok:
            continue
        why = _word_form_failure(answer, constraint)
        if why is None and constraint["type"] in _OWN_TEXT_TYPES:
            own = own_text(answer, prompt_text) if own is None else own
            if own != answer and not library.check_constraint(own, constraint):
                why = "holds only through pasted URLs or text copied from the prompt"
        mine = _without_examples(answer, constraint["type"], prompt_text)
        if why is None and mine != answer and not library.check_constraint(mine, constraint):
            why = "holds only through the instruction's own example, pasted"
        if why is not None:
            failures.append({"type": constraint["type"], "why": why})
    return failures


# ----------------------------------------------------------------------------------------------
# requested formats

# name: (how a prompt asks for it, how an answer has it), case-insensitive; plain regexes that
# Polars (Rust's regex) runs as they are, so the pairing rule applies them column-wise
FORMATS = {
    "answer_line": (r"(?:final answer|answer)\b[^.?!\n]{0,60}\bafter\s+['\"“]the answer is",
                    r"\bthe answer is\b\s*[:\-]?\s*\$?\\?(?:boxed\{)?\s*-?[\w.]"),
    "code_block": (r"\b(?:in|inside|within|as) an? (?:python |markdown |fenced )?code block\b|```", r"```"),
}
_COMPILED = {name: tuple(re.compile(p, re.IGNORECASE) for p in pair) for name, pair in FORMATS.items()}


def requested_formats(prompt_text: str) -> list[str]:
    """The formats a prompt asks for in so many words: "answer_line", "code_block"."""
    return [name for name, (asks, _) in _COMPILED.items() if asks.search(prompt_text)]


def requested_format_failures(answer: str, prompt_text: str) -> list[str]:
    """The requested formats (requested_formats) the answer does not have."""
    return [name for name in requested_formats(prompt_text) if not _COMPILED[name][1].search(answer)]


# ----------------------------------------------------------------------------------------------
# grounding in a source text

_BACKTICKED = re.compile(r"`([^`\n]{1,80})`")
_CALL = re.compile(r"\b([A-Za-z_][\w.]*)\s*\(")
_DUNDER = re.compile(r"\b__\w+__\b")
_SNAKE_OR_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:_\w+|\.[A-Za-z_]\w*)+\b")
_CAMEL = re.compile(r"\b[a-z]+[A-Z]\w*\b|\b[A-Z][a-z]+[A-Z]\w*\b")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.]*\w)")
_ENUMERATOR = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)
_NO_PARAMETERS = re.compile(r"\b(?:takes|accepts|has|requires|needs)\s+no\s+(?:parameters|arguments|args)\b",
                            re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")
_PROSE = {"e.g", "i.e", "etc"}


def _identifiers(text: str) -> set[str]:
    found = {m.group(1).strip() for m in _BACKTICKED.finditer(text)}
    found |= {m.group(1) for m in _CALL.finditer(text) if not m.group(1)[:1].isupper() or "_" in m.group(1)}
    for pattern in (_DUNDER, _SNAKE_OR_DOTTED, _CAMEL):
        found |= {m.group() for m in pattern.finditer(text)}
    return {f for f in found if f and f.lower() not in _PROSE and not f.replace(".", "").isdigit()}


def stated_numbers(text: str) -> list[str]:
    """The numbers a text states, in order, unsigned; list enumerators ("1) ", "2. ") are no numbers."""
    return [m.group().lstrip("-") for m in _NUMBER.finditer(_ENUMERATOR.sub(" ", text))]


def _numbers(text: str) -> set[str]:
    return {n for n in stated_numbers(text) if len(n) >= 2}


def _signature_parameters(name: str, source: str) -> list[str] | None:
    """The parameters `name(...)` has in the source (self and cls left out); None: no signature."""
    short = name.split(".")[-1]
    match = re.search(rf"\b{re.escape(short)}\s*\(([^()]*)\)", source)
    if match is None:
        return None
    params = [p.strip() for p in match.group(1).split(",") if p.strip()]
    return [p for p in params if p.split("=")[0].strip().lstrip("*") not in ("self", "cls", "/", "")]


def invented_terms(answer: str, source: str) -> dict:
    """What an answer written from `source` states that the source does not hold: {identifiers,
    numbers, contradictions} (empty lists when grounded)."""
    lowered = source.lower()
    identifiers = sorted(i for i in _identifiers(answer) if i.lower() not in lowered
                         and i.split("(")[0].lower() not in lowered)
    numbers = sorted(n for n in _numbers(answer) if not re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", source))
    contradictions = []
    for sentence in _SENTENCE_BREAK.split(answer):
        if not _NO_PARAMETERS.search(sentence):
            continue
        for name in sorted(_identifiers(sentence)):
            params = _signature_parameters(name.split("(")[0], source)
            if params:
                contradictions.append(f"says {name} takes no parameters; the source shows "
                                      f"{name.split('(')[0]}({', '.join(params)})")
    return {"identifiers": identifiers, "numbers": numbers, "contradictions": contradictions}


def _literals(code: str) -> list[str] | None:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError, ValueError, IndentationError):
        return None
    out = []
    for token in tokens:
        if token.type == tokenize.NUMBER and token.string not in ("0", "1", "2", "0.0", "1.0"):
            out.append(token.string)
        elif token.type == tokenize.STRING:
            body = re.sub(r"^[rbuRBUfF]*('''|\"\"\"|'|\")|('''|\"\"\"|'|\")$", "", token.string)
            if len(body.strip()) > 1:
                out.append(body)
    return out


def _changed_lines(before: str, after: str) -> str:
    added = [line[1:] for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
             if line.startswith("+") and not line.startswith("+++")]
    return "\n".join(added)


def invented_literals(before: str, after: str, request: str) -> list[str] | None:
    """Literals that the edit adds (in `after`'s changed lines, not in `before`) that appear nowhere
    in the request or the code it edits: what no one reading the prompt could write. None when the
    changed lines do not tokenize."""
    added = _literals(_changed_lines(before, after))
    if added is None:
        return None
    known = (request + "\n" + before).lower()
    invented = []
    for literal in added:
        words = [w for w in _WORD.findall(literal.lower()) if len(w) > 2]  # "no", "to": no information
        present = literal.lower() in known or (words and all(w in known for w in words))
        if not present and literal not in invented:
            invented.append(literal)
    return invented

