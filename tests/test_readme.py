"""The README's table reference is generated from schemas/ and must not drift."""

from pathlib import Path

from curate.lake.schemas import markdown_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_table_reference_matches_schemas():
    text = README.read_text()
    start, end = "<!-- tables:start -->\n", "<!-- tables:end -->"
    assert start in text and end in text
    section = text.split(start, 1)[1].split(end, 1)[0]
    assert section == markdown_reference(), "run: .venv/bin/python scripts/update_readme_tables.py"


def test_readme_opens_with_the_two_commands():
    head = README.read_text().split("```bash", 1)[1].split("```", 1)[0]
    assert "make demo" in head and "make test" in head
