"""Long-context prompts from the Python standard library's own documentation (no download).

`load_stdlib_docs` renders the pydoc text of a fixed list of pure-Python modules (in that order),
trims each to at most `max_words` words at a paragraph boundary and asks about one documented
public function whose entry is in the trimmed text: the first function listed under FUNCTIONS
there that the module has and whose entry has a description. A module with no such function in
its trimmed text is skipped, so `limit` rows come from the first modules that have one.

The context is the plain-text pydoc (trailing spaces removed, the machine-specific FILE section
and object addresses such as "at 0x7fc1012113c0" dropped), so the rows are the same on every run
with the same Python version.
"""

from __future__ import annotations

import importlib
import pydoc
import re

from curate.ingest.validate import long_context_message

MODULES = ("textwrap", "shlex", "json", "fractions", "statistics", "difflib", "csv", "heapq", "bisect",
           "string", "base64", "fnmatch", "glob", "copy", "pprint", "functools", "operator", "secrets",
           "calendar", "random")
QUESTION = "According to the documentation above, what does `{module}.{function}` do?"

_SECTION = re.compile(r"^[A-Z][A-Z ]+$")
_FUNCTION = re.compile(r"^    ([A-Za-z][A-Za-z0-9_]*)\(.*\)")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def render(module_name: str) -> str:
    """pydoc's plain text for a module, trailing spaces removed and the FILE section dropped."""
    module = importlib.import_module(module_name)
    text = _ADDRESS.sub("", pydoc.render_doc(module, renderer=pydoc.plaintext))
    lines = [line.rstrip() for line in text.splitlines()]
    kept, skipping = [], False
    for line in lines:
        if _SECTION.match(line):
            skipping = line == "FILE"
        if not skipping:
            kept.append(line)
    return "\n".join(kept).strip() + "\n"


def trim_words(text: str, max_words: int) -> str:
    """The longest run of whole paragraphs (split on blank lines) from the start with at most
    max_words words; a first paragraph longer than that is cut to its first max_words words."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    kept, count = [], 0
    for paragraph in paragraphs:
        words = len(paragraph.split())
        if count + words > max_words:
            break
        kept.append(paragraph)
        count += words
    if not kept and paragraphs:
        return " ".join(paragraphs[0].split()[:max_words])
    return "\n\n".join(kept)


def documented_function(module_name: str, context: str) -> str | None:
    """The first public function under FUNCTIONS in `context` that the module has and whose entry
    goes on with a description (an indented line after its signature), or None."""
    module = importlib.import_module(module_name)
    lines = context.splitlines()
    try:
        start = lines.index("FUNCTIONS")
    except ValueError:
        return None
    for at in range(start + 1, len(lines)):
        line = lines[at]
        if _SECTION.match(line):
            break
        match = _FUNCTION.match(line)
        if not match or match.group(1).startswith("_"):
            continue
        name = match.group(1)
        described = at + 1 < len(lines) and lines[at + 1].startswith("        ") and lines[at + 1].strip()
        if described and callable(getattr(module, name, None)):
            return name
    return None


def load_stdlib_docs(limit: int = 5, max_words: int = 1500) -> list[dict]:
    """Up to `limit` long_context prompt rows: {task, context, question, messages}."""
    rows = []
    for module_name in MODULES:
        if len(rows) >= limit:
            break
        context = trim_words(render(module_name), max_words)
        function = documented_function(module_name, context)
        if function is None:
            continue
        question = QUESTION.format(module=module_name, function=function)
        rows.append({"task": "long_context", "context": context, "question": question,
                     "messages": [{"role": "user", "content": long_context_message(context, question)}]})
    return rows
