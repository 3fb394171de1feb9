"""Rewrite the README's table reference from schemas/ (tests/test_readme.py checks it)."""

from pathlib import Path

from curate.lake.schemas import markdown_reference

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- tables:start -->\n", "<!-- tables:end -->"

text = README.read_text()
head, rest = text.split(START, 1)
_, tail = rest.split(END, 1)
README.write_text(head + START + markdown_reference() + END + tail)
print("README table reference updated")
