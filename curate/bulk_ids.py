"""Pair ids and dedup keys over whole columns, equal to the per-row functions
(`curate.ids.pair_id`, `curate.dedup.pair_dedup_key`), so no lake needs a migration.

`content_hash` is sha256 over `json.dumps(parts, ensure_ascii=False, separators=(",", ":"))`: the
same JSON text is built with Polars string expressions and hashed with polars-hash's SHA-256.
`normalise_text` (NFKC, whitespace runs to one space, strip, casefold) is vectorised for ASCII
texts, where NFKC changes nothing and casefold is lower case; every other distinct text goes through
the per-row function itself, so Unicode's corners (NBSP, ß, final sigma, full-width forms) match it
by construction.
"""

from __future__ import annotations

import json

import polars as pl
import polars_hash as plh

from curate.ids import normalise_text

# Python's str.isspace in ASCII: what re's \s and str.strip() treat as whitespace.
_ASCII_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f ]+"
_JSON_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x08": "\\b", "\x0c": "\\f"}


def json_string(column: pl.Series) -> pl.Series:
    """Each string as json.dumps(s, ensure_ascii=False) writes it, quotes included."""
    escaped = column.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    if escaped.str.contains(r"[\x00-\x1f]").any():
        for code in range(0x20):
            char = chr(code)
            escaped = escaped.str.replace_all(char, _JSON_ESCAPES.get(char, f"\\u{code:04x}"), literal=True)
    return '"' + escaped + '"'


def normalised(column: pl.Series) -> pl.Series:
    """`normalise_text` of every string (nulls stay null)."""
    fast = column.str.replace_all(_ASCII_SPACE, " ").str.strip_chars(" ").str.to_lowercase()
    other = column.str.contains(r"[^\x00-\x7f]").fill_null(False)
    if not other.any():
        return fast
    distinct = column.filter(other).unique()
    slow = pl.DataFrame({"text": distinct, "norm": [normalise_text(t) for t in distinct.to_list()]})
    mapped = pl.DataFrame({"text": column}).join(slow, on="text", how="left", maintain_order="left")["norm"]
    return pl.select(pl.when(other).then(mapped).otherwise(fast)).to_series().alias(column.name)


def _sha(payload: pl.Series) -> pl.Series:
    return pl.DataFrame({"p": payload}).select(plh.col("p").chash.sha2_256().str.slice(0, 32))["p"]


def _json_list(*items: pl.Series | str) -> pl.Series:
    """The JSON text of a list of strings, per row: constants are Python strings."""
    parts = [json.dumps(i, ensure_ascii=False) if isinstance(i, str) else json_string(i) for i in items]
    frame = pl.DataFrame({f"c{k}": p for k, p in enumerate(parts) if not isinstance(p, str)})
    exprs = [pl.lit(p) if isinstance(p, str) else pl.col(f"c{k}") for k, p in enumerate(parts)]
    separated = [e for k, expr in enumerate(exprs) for e in ((pl.lit(","),) if k else ()) + (expr,)]
    return frame.select(pl.concat_str([pl.lit("["), *separated, pl.lit("]")]))[:, 0]


def pair_ids(strategy: str, chosen_id: pl.Series, rejected_id: pl.Series, prompt_id: pl.Series) -> pl.Series:
    """`ids.pair_id(strategy, chosen_id, rejected_id, prompt_id)` per row."""
    return _sha(_json_list("pair", strategy, chosen_id, rejected_id, prompt_id)).alias("pair_id")


def prompt_texts(prompt: pl.Series) -> pl.Series:
    """Per chat prompt, one `role: normalised content` line per message (as `pair_dedup_key`)."""
    rows = pl.DataFrame({"prompt": prompt}).with_row_index("_row")
    messages = rows.explode("prompt").filter(pl.col("prompt").is_not_null())
    lines = messages.select(
        "_row", line=pl.col("prompt").struct.field("role") + ": "
        + normalised(messages["prompt"].struct.field("content")))
    joined = lines.group_by("_row", maintain_order=True).agg(pl.col("line").str.join("\n"))
    return rows.select("_row").join(joined, on="_row", how="left")["line"].fill_null("")


def dedup_keys(prompt: pl.Series, chosen: pl.Series, rejected: pl.Series) -> pl.Series:
    """`pair_dedup_key(prompt, chosen, rejected)` per row."""
    return _sha(_json_list("pair-exact", prompt_texts(prompt), normalised(chosen),
                           normalised(rejected))).alias("dedup_key")
