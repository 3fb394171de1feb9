"""Pair ids and dedup keys over whole columns, equal to the per-row functions
(`curate.ids.pair_id`, `curate.dedup.pair_dedup_key`), so no lake needs a migration.

`content_hash` is sha256 over `json.dumps(parts, ensure_ascii=False, separators=(",", ":"))`: the
same JSON text is built with Polars string expressions and hashed with polars-hash's SHA-256.
`normalise_text` (NFKC, whitespace runs to one space, strip, casefold) is vectorised for ASCII
texts, where NFKC changes nothing and casefold is lower case; every other distinct text goes through
the per-row function itself, so Unicode's corners (NBSP, ß, final sigma, full-width forms) match it
by construction. The costly string rewrites (whitespace runs, JSON escapes) run only on the rows
that contain what they rewrite.

A dedup key hashes three JSON strings: the prompt's text and the two normalised sides. A strategy
that pairs each candidate many times computes them once per prompt (`prompt_keys`) and once per
candidate (`text_keys`) and hands them to `dedup_keys_of`.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import polars_hash as plh
import pyarrow as pa

from curate.ids import normalise_text

# Python's str.isspace in ASCII: what re's \s and str.strip() treat as whitespace.
_ASCII_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f ]+"
_SPACE_BUT_BLANK = r"(?-u)[\t\n\x0b\x0c\r\x1c-\x1f]"
# the control characters in classes of 8: a regex finds a class of a few bytes by a fast scan
_CONTROLS = [rf"(?-u)[\x{start:02x}-\x{start + 7:02x}]" for start in range(0, 0x20, 8)]
_JSON_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x08": "\\b", "\x0c": "\\f"}


def _where(column: pl.Series, mask: pl.Series, change) -> pl.Series:
    """`column` with `change` applied to the rows where `mask` holds (run on those rows only)."""
    rows = mask.fill_null(False).arg_true()
    if rows.is_empty():
        return column
    return column.clone().scatter(rows, change(column.gather(rows)))


def _has_control(column: pl.Series) -> pl.Series:
    found = column.str.contains(_CONTROLS[0])
    for pattern in _CONTROLS[1:]:
        found = found | column.str.contains(pattern)
    return found


def _escaped(column: pl.Series) -> pl.Series:
    escaped = column.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    if _has_control(escaped).any():
        for code in range(0x20):
            char = chr(code)
            escaped = escaped.str.replace_all(char, _JSON_ESCAPES.get(char, f"\\u{code:04x}"), literal=True)
    return escaped


def _quoted(column: pl.Series) -> pl.Series:
    return pl.select(pl.concat_str([pl.lit('"'), pl.lit(column), pl.lit('"')])).to_series().alias(column.name)


def _bytes(column: pl.Series) -> np.ndarray:
    """The bytes of the column's strings in one array (for a sliced column, maybe with bytes of
    strings outside it: a test on them can find too much, never miss)."""
    array = column.to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    data = array.buffers()[2]
    return np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)


def _needs_no_escape(column: pl.Series) -> bool:
    """No string of the column holds a control character, a quote or a backslash: one scan of
    all its bytes, the common case for ids and most texts."""
    data = _bytes(column)
    return not ((data < 0x20) | (data == 0x22) | (data == 0x5C)).any()


def json_string(column: pl.Series) -> pl.Series:
    """Each string as json.dumps(s, ensure_ascii=False) writes it, quotes included. The quoting
    comes first: it copies the strings into one buffer, where the scans for what needs escaping
    run faster than over strings gathered from many places."""
    quoted = _quoted(column)
    if _needs_no_escape(column):
        return quoted
    needs = ((quoted.str.count_matches('"', literal=True) > 2) | quoted.str.contains("\\", literal=True)
             | _has_control(quoted)).fill_null(False)
    if not needs.any():
        return quoted
    rows = needs.arg_true()
    return quoted.clone().scatter(rows, _quoted(_escaped(column.gather(rows))))


def normalised(column: pl.Series) -> pl.Series:
    """`normalise_text` of every string (nulls stay null)."""
    ascii_only = not (_bytes(column) >= 0x80).any()
    lower = column.str.to_lowercase()  # first: a copy in one buffer, which the scans below read faster
    spaced = lower.str.contains(_SPACE_BUT_BLANK) | lower.str.contains("  ", literal=True)
    fast = _where(lower, spaced, lambda rows: rows.str.replace_all(_ASCII_SPACE, " ")).str.strip_chars(" ")
    if ascii_only:
        return fast
    other = (column.str.len_bytes() != column.str.len_chars()).fill_null(False)  # not ASCII
    if not other.any():
        return fast
    distinct = column.filter(other).unique()
    slow = pl.DataFrame({"text": distinct, "norm": [normalise_text(t) for t in distinct.to_list()]})
    mapped = pl.DataFrame({"text": column}).join(slow, on="text", how="left", maintain_order="left")["norm"]
    return pl.select(pl.when(other).then(mapped).otherwise(fast)).to_series().alias(column.name)


def _sha(payload: pl.Series) -> pl.Series:
    return pl.DataFrame({"p": payload}).select(plh.col("p").chash.sha2_256().str.slice(0, 32))["p"]


def _json_list(*items: pl.Series | str, quoted: bool = False) -> pl.Series:
    """The JSON text of a list of strings, per row: constants are Python strings; `quoted`: the
    series are JSON strings already."""
    parts = [json.dumps(i, ensure_ascii=False) if isinstance(i, str) else i if quoted else json_string(i)
             for i in items]
    frame = pl.DataFrame({f"c{k}": p for k, p in enumerate(parts) if not isinstance(p, str)})
    exprs = [pl.lit(p) if isinstance(p, str) else pl.col(f"c{k}") for k, p in enumerate(parts)]
    separated = [e for k, expr in enumerate(exprs) for e in ((pl.lit(","),) if k else ()) + (expr,)]
    return frame.select(pl.concat_str([pl.lit("["), *separated, pl.lit("]")]))[:, 0]


def content_hashes(*parts: pl.Series | str) -> pl.Series:
    """`ids.content_hash(*parts)` per row, where every part is a string: a constant (a Python str)
    or a column (a Series of strings, no nulls)."""
    return _sha(_json_list(*parts))


def fill_ids(rows: list[dict], key: str, hashes, columns: tuple[str, ...]) -> list[dict]:
    """Set each row's `key` to `hashes(*columns)`, computed over the rows' `columns` as string Series
    (one pass for all rows, not one hash call per row); returns the rows."""
    if rows:
        series = [pl.Series([row[column] for row in rows], dtype=pl.String) for column in columns]
        for row, value in zip(rows, hashes(*series).to_list(), strict=True):
            row[key] = value
    return rows


def pair_ids(strategy: str, chosen_id: pl.Series, rejected_id: pl.Series, prompt_id: pl.Series) -> pl.Series:
    """`ids.pair_id(strategy, chosen_id, rejected_id, prompt_id)` per row."""
    return pair_ids_of(strategy, json_string(chosen_id), json_string(rejected_id), json_string(prompt_id))


def pair_ids_of(strategy: str, chosen_id: pl.Series, rejected_id: pl.Series, prompt_id: pl.Series) -> pl.Series:
    """Pair ids from the ids as JSON strings (`json_string`, computed once per candidate and prompt
    by a strategy that pairs each many times)."""
    return _sha(_json_list("pair", strategy, chosen_id, rejected_id, prompt_id, quoted=True)).alias("pair_id")


def score_ids(candidate_id: pl.Series, scorer: pl.Series, scorer_version: pl.Series) -> pl.Series:
    """`ids.score_id(candidate_id, scorer, scorer_version)` per row."""
    return _sha(_json_list("score", candidate_id, scorer, scorer_version)).alias("score_id")


def prompt_texts(prompt: pl.Series) -> pl.Series:
    """Per chat prompt, one `role: normalised content` line per message (as `pair_dedup_key`)."""
    if prompt.null_count() == 0 and (prompt.list.len() == 1).all():  # one message each: no regrouping
        message = prompt.list.first()
        if message.null_count() == 0:
            return (message.struct.field("role") + ": " + normalised(message.struct.field("content"))).fill_null("")
    rows = pl.DataFrame({"prompt": prompt}).with_row_index("_row")
    messages = rows.explode("prompt").filter(pl.col("prompt").is_not_null())
    lines = messages.select(
        "_row", line=pl.col("prompt").struct.field("role") + ": "
        + normalised(messages["prompt"].struct.field("content")))
    joined = lines.group_by("_row", maintain_order=True).agg(pl.col("line").str.join("\n"))
    return rows.select("_row").join(joined, on="_row", how="left")["line"].fill_null("")


def prompt_keys(prompt: pl.Series) -> pl.Series:
    """The prompt's part of its pairs' dedup keys (a JSON string), per chat prompt."""
    return json_string(prompt_texts(prompt))


def text_keys(text: pl.Series) -> pl.Series:
    """A side's part of its pairs' dedup keys (the normalised text as a JSON string), per text."""
    return json_string(normalised(text))


def dedup_keys_of(prompt_key: pl.Series, chosen_key: pl.Series, rejected_key: pl.Series) -> pl.Series:
    """Dedup keys from the parts `prompt_keys` and `text_keys` made."""
    return _sha(_json_list("pair-exact", prompt_key, chosen_key, rejected_key, quoted=True)).alias("dedup_key")


def _hashed_list(head: tuple[str, ...], columns: list[str]) -> pl.Expr:
    """sha256 (32 hex digits) of the JSON list of the constants `head` and the JSON-string columns."""
    items = [pl.lit(json.dumps(c, ensure_ascii=False)) for c in head] + [pl.col(c) for c in columns]
    separated = [e for k, item in enumerate(items) for e in ((pl.lit(","),) if k else ()) + (item,)]
    return pl.concat_str([pl.lit("["), *separated, pl.lit("]")]).chash.sha2_256().str.slice(0, 32)


def pair_ids_and_dedup_keys(strategy: str, id_parts: list[pl.Series],
                            key_parts: list[pl.Series]) -> tuple[pl.Series, pl.Series]:
    """(pair_ids_of(strategy, *id_parts), dedup_keys_of(*key_parts)) in one pass: the two hashes
    run side by side on Polars' threads."""
    frame = pl.DataFrame({**{f"i{k}": s for k, s in enumerate(id_parts)},
                          **{f"k{k}": s for k, s in enumerate(key_parts)}})
    both = frame.select(_hashed_list(("pair", strategy), ["i0", "i1", "i2"]).alias("pair_id"),
                        _hashed_list(("pair-exact",), ["k0", "k1", "k2"]).alias("dedup_key"))
    return both["pair_id"], both["dedup_key"]


def dedup_keys(prompt: pl.Series, chosen: pl.Series, rejected: pl.Series) -> pl.Series:
    """`pair_dedup_key(prompt, chosen, rejected)` per row."""
    return dedup_keys_of(prompt_keys(prompt), text_keys(chosen), text_keys(rejected))
