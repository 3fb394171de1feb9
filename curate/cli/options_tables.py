"""The README's option tables, generated from the options classes' help texts.

`python -m curate.cli.options_tables` prints every table; `--write README.md` replaces each block
between `<!-- options: NAME -->` and `<!-- /options -->` with its table, and adds the block of a
built-in strategy the README lacks after the last strategy's (tests/test_pair_options.py checks that
the README holds exactly these). Tables: every built-in strategy, "dedup", and `scorer:KIND` for each
built-in scorer kind with options of its own.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any, get_type_hints

from curate.dedup.config import DedupConfig
from curate.options import type_text
from curate.pairs.registry import BUILT_IN as BUILT_IN_STRATEGIES
from curate.score.kind import ScorerOptions
from curate.score.registry import BUILT_IN as BUILT_IN_SCORERS

BLOCK = re.compile(r"(<!-- options: (\S+) -->\n).*?(<!-- /options -->)", re.DOTALL)


def options_table(cls: type, skip: tuple[str, ...] = ()) -> str:
    """A markdown table: option, type, default, help (a mode's options say which mode)."""
    rows = ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
    rows += [_row(*row) for row in _rows(cls, "") if row[0] not in skip]
    return "\n".join(rows) + "\n"


def readme_tables() -> dict[str, str]:
    """Block name -> table: every built-in strategy, "dedup", and "scorer:KIND" for the built-in
    scorer kinds with options besides `kind`."""
    scorers = {f"scorer:{kind.name}": options_table(kind.options, skip=("kind",)) for kind in BUILT_IN_SCORERS
               if kind.options is not ScorerOptions}
    return {**{s.name: options_table(s.options) for s in BUILT_IN_STRATEGIES}, "dedup": options_table(DedupConfig),
            **scorers}


def with_tables(text: str, tables: dict[str, str], strategies: list[str] | None = None) -> str:
    """`text` with each options block's body replaced by its table (unknown names left as they are),
    and a block added after the last strategy's for each of `strategies` (default: the built-in
    ones) that has none."""
    text = BLOCK.sub(lambda m: m.group(1) + tables.get(m.group(2), "") + m.group(3)
                     if m.group(2) in tables else m.group(0), text)
    names = [s.name for s in BUILT_IN_STRATEGIES] if strategies is None else strategies
    present = {m.group(2) for m in BLOCK.finditer(text)}
    for name in names:
        if name in present or name not in tables:
            continue
        blocks = [m for m in BLOCK.finditer(text) if m.group(2) in names]
        if not blocks:
            raise ValueError(f"no strategy's options block to add {name!r}'s after: add "
                             f"<!-- options: {name} -->\n<!-- /options --> where it belongs")
        last = blocks[-1]
        block = f"\n**`{name}`**\n\n<!-- options: {name} -->\n{tables[name]}<!-- /options -->\n"
        end = last.end() + 1  # after the last block's closing line
        text = text[:end] + block + text[end:]
        present.add(name)
    return text


def _rows(cls: type, prefix: str) -> list[tuple]:
    hints = get_type_hints(cls)
    rows = []
    for spec in dataclasses.fields(cls):
        help_text = spec.metadata.get("help", "")
        if spec.metadata.get("modes"):
            help_text = f"(mode {' / '.join(spec.metadata['modes'])}) {help_text}"
        rows.append((prefix + spec.name, _short(type_text(hints[spec.name])), _default(spec), help_text))
        nested = [m for m in getattr(hints[spec.name], "__args__", (hints[spec.name],)) if dataclasses.is_dataclass(m)]
        for member in nested:
            rows += _rows(member, f"{prefix}{spec.name}.")
    return rows


def _short(text: str) -> str:
    """"an integer or a list of strings" -> "integer or list of strings"; enumerations TOML-quoted."""
    text = re.sub(r"\b(a|an) ", "", text).replace("true or false", "bool").replace("PathLike", "path")
    return text.replace("'", '"')


def _default(spec: dataclasses.Field) -> str:
    if spec.default_factory is not dataclasses.MISSING:
        value: Any = spec.default_factory()
    elif spec.default is dataclasses.MISSING:
        return "required"
    else:
        value = spec.default
    return "unset" if value is None else f"`{json.dumps(value)}`"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in (f"`{cells[0]}`", *cells[1:])) + " |"


def main(argv: list[str]) -> int:
    tables = readme_tables()
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(with_tables(path.read_text(), tables))
        return 0
    for name, table in tables.items():
        print(f"<!-- options: {name} -->\n{table}<!-- /options -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
