"""Reading prompt files row by row, so that no single row can stop the run.

Every row comes back as a RawRow: its location ("line 12", "row 3", "train row 3"), its text as
read (for the rejects table), and either its parsed value or the reason it could not be parsed.
What is refused here, per row: invalid UTF-8, NUL bytes, rows over MAX_ROW_BYTES, invalid JSON
(including duplicate keys, NaN/Infinity and numbers too long to convert), values nested deeper
than MAX_DEPTH, lone surrogates (`"\\ud800"` in JSON), and Arrow rows that cannot be converted.
Only a whole input that cannot be read at all (missing, unreadable, not Parquet) is a UserError.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import UserError

RAW_LIMIT = 10_000  # characters of a row kept in `rejects.raw`
MAX_ROW_BYTES = 4 << 20  # a row over 4 MiB holds more text than any model's context
MAX_DEPTH = 32  # prompt rows nest 4 deep; deeper is a malformed or hostile row
REASON_LIMIT = 300
BOM = b"\xef\xbb\xbf"
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_JSON_KIND = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
              type(None): "null"}


@dataclass
class RawRow:
    location: str  # "line 3", "row 7"
    raw: str  # the row as read, for the rejects table
    value: dict | None  # parsed row, or None when it could not be parsed
    parse_error: str | None = None


class RowError(ValueError):
    """A row that fails validation; the message is the reject reason."""


def one_line(text: str, limit: int = REASON_LIMIT) -> str:
    """A reason as one printable line: no newlines, no lone surrogates, at most `limit` characters."""
    text = " ".join(str(text).replace("\x00", "\\x00").split())
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(raw: str) -> str:
    """Row text safe to store: NULs and lone surrogates written as escapes, cut to RAW_LIMIT characters."""
    return raw[:RAW_LIMIT].replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def read_rows(path: Path) -> Iterator[RawRow]:
    """Rows of a JSONL file, a Parquet file or a HF dataset directory. Blank lines are skipped."""
    for chunk in raw_chunks(path, CHUNK_ROWS):
        yield from rows_of_chunk(chunk)


CHUNK_ROWS = 1024  # rows per RawChunk when the caller does not ask for a size


@dataclass
class RawChunk:
    """Consecutive rows of an input, read but not parsed: cheap to ship to another process (a
    shard, curate.runtime.shards), parsed there by `rows_of_chunk`. JSONL: (line number, bytes,
    size) per non-blank line; Parquet and HF datasets: Arrow record batches, their rows numbered
    from `first` after `prefix`."""

    lines: list[tuple[int, bytes, int]] | None = None
    batches: list[pa.RecordBatch] | None = None
    prefix: str = "row"
    first: int = 1


def raw_chunks(path: Path, rows: int) -> Iterator[RawChunk]:
    """The input's rows, `rows` at a time (the last chunk may hold fewer; one input row is one
    RawRow of `rows_of_chunk`). Only a whole input that cannot be read is a UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"prompt file not found: {path}")
    if path.is_dir():
        yield from _chunks_of_hf_dataset(path, rows)
    elif path.suffix == ".parquet":
        yield from _arrow_chunks(_parquet_batches(path), rows)
    elif path.suffix in {".jsonl", ".json"}:
        yield from _jsonl_chunks(path, rows)
    else:
        raise UserError(f"{path}: unsupported prompt file (use .jsonl, .parquet or a HF dataset dir)")


def rows_of_chunk(chunk: RawChunk) -> Iterator[RawRow]:
    if chunk.lines is not None:
        for number, line, size in chunk.lines:
            yield _row_of_line(f"line {number}", line, size)
    else:
        yield from _rows_of_batches(chunk.batches or [], chunk.prefix, chunk.first)


def _arrow_chunks(batches, rows: int, prefix: str = "row") -> Iterator[RawChunk]:
    """Record batches regrouped (sliced, not copied) into chunks of `rows` rows."""
    held: list[pa.RecordBatch] = []
    count, first = 0, 1
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            held.append(batch.slice(0, take))
            batch, count = batch.slice(take), count + take
            if count == rows:
                yield RawChunk(batches=held, prefix=prefix, first=first)
                held, count, first = [], 0, first + rows
    if held:
        yield RawChunk(batches=held, prefix=prefix, first=first)


# JSONL -----------------------------------------------------------------------------------------

def _lines(handle) -> Iterator[tuple[int, bytes, int]]:
    """(line number, bytes without the newline, size in bytes); an oversized line is not held in
    memory: its first RAW_LIMIT bytes come back with its full size."""
    number = 0
    while line := handle.readline(MAX_ROW_BYTES + 2):
        number += 1
        if line.endswith(b"\n") or len(line) <= MAX_ROW_BYTES:
            line = line.rstrip(b"\n")
            yield number, line, len(line)
            continue
        head, size = line[:RAW_LIMIT], len(line)
        while (more := handle.readline(1 << 20)) and not more.endswith(b"\n"):
            size += len(more)
        size += len(more.rstrip(b"\n"))
        yield number, head, size


def _jsonl_chunks(path: Path, rows: int) -> Iterator[RawChunk]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    held: list[tuple[int, bytes, int]] = []
    with handle:
        for number, line, size in _lines(handle):
            if number == 1 and line.startswith(BOM):  # a BOM opening the file is an encoding mark
                line, size = line[len(BOM):], size - len(BOM)
            line = line.removesuffix(b"\r")  # CRLF files
            if size <= MAX_ROW_BYTES and not line.strip():  # (an oversized line's head may be blank)
                continue
            held.append((number, line, size))
            if len(held) == rows:
                yield RawChunk(lines=held)
                held = []
    if held:
        yield RawChunk(lines=held)


def _row_of_line(location: str, line: bytes, size: int) -> RawRow:
    raw = line[:RAW_LIMIT].decode("utf-8", "backslashreplace")

    def refused(reason: str) -> RawRow:
        return RawRow(location, raw, None, one_line(reason))

    if size > MAX_ROW_BYTES:
        return refused(f"row is {size:,} bytes, over the {MAX_ROW_BYTES:,}-byte limit")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = line[exc.start:exc.end].hex(" ")
        return refused(f"invalid UTF-8 at byte {exc.start + 1} ({bad})")
    if "\x00" in text:
        return refused(f"NUL byte at column {text.index(chr(0)) + 1}")
    if text.startswith("\ufeff"):
        return refused("byte order mark (U+FEFF) inside the file, at the start of this line")
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constant)
    except RowError as exc:
        return refused(str(exc))
    except json.JSONDecodeError as exc:
        return refused(f"invalid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return refused("invalid JSON: nested too deeply to parse")
    except ValueError as exc:  # e.g. an integer over Python's 4300-digit conversion limit
        return refused(f"invalid JSON: {'number too long' if 'digits' in str(exc) else exc}")
    if not isinstance(value, dict):
        return refused(f"row is {_JSON_KIND.get(type(value), 'not an object')}, not a JSON object")
    return RawRow(location, raw, value)


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) < len(pairs):
        seen = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise RowError(f"invalid JSON: duplicate key {duplicate!r}")
    return value


def _no_constant(name: str):
    raise RowError(f"invalid JSON: {name} is not a JSON number")


# Parquet and HF datasets -----------------------------------------------------------------------

def _parquet_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The file's rows in record batches, read as they are needed: memory holds one batch, not the file."""
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UserError(f"{path}: not a readable Parquet file ({one_line(exc)})") from exc


def _rows_of_batches(batches, prefix: str = "row", first: int = 1) -> Iterator[RawRow]:
    """Rows of Arrow record batches, numbered from `first`; a row Arrow cannot turn into Python
    (e.g. invalid UTF-8 in a string column) is refused alone."""
    number = first - 1
    for batch in batches:
        try:
            values = batch.to_pylist()
        except Exception:
            values = None
        for index in range(batch.num_rows):
            number += 1
            location = f"{prefix} {number}"
            if values is not None:
                yield _row_of_value(location, values[index])
                continue
            try:
                yield _row_of_value(location, batch.slice(index, 1).to_pylist()[0])
            except Exception as exc:
                yield RawRow(location, "", None, one_line(f"unreadable row: {exc}"))


_ROW_JSON = json.JSONEncoder(default=str, ensure_ascii=False).encode  # one encoder, not one per row


def _row_of_value(location: str, value: dict) -> RawRow:
    raw = _ROW_JSON(value)
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_ROW_BYTES:
        return RawRow(location, printable(raw), None,
                      f"row is {size:,} bytes as JSON, over the {MAX_ROW_BYTES:,}-byte limit")
    return RawRow(location, printable(raw), value)


def _chunks_of_hf_dataset(path: Path, rows: int) -> Iterator[RawChunk]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise UserError(f"{path}: not a Hugging Face dataset directory ({one_line(exc)})") from exc
    if isinstance(loaded, datasets.DatasetDict):  # splits one after the other, each with its own rows
        for split, dataset in loaded.items():
            yield from _arrow_chunks(dataset.data.table.to_batches(max_chunksize=CHUNK_ROWS), rows, f"{split} row")
    else:
        yield from _arrow_chunks(loaded.data.table.to_batches(max_chunksize=CHUNK_ROWS), rows)


# values ----------------------------------------------------------------------------------------

def _fine(item, depth: int = 1) -> bool:
    """The fast check behind value_problem (no paths kept): True when nothing is wrong."""
    kind = type(item)
    if kind is str:
        return _BAD_CHARACTER.search(item) is None
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            return False
        if kind is dict:
            for key in item:
                if type(key) is str and _BAD_CHARACTER.search(key) is not None:
                    return False
            item = item.values()
        for child in item:
            child_kind = type(child)
            if child_kind is str:
                if _BAD_CHARACTER.search(child) is not None:
                    return False
            elif child_kind is not bool and child_kind is not type(None) and not _fine(child, depth + 1):
                return False
        return True
    if kind is float:
        return math.isfinite(item)
    if kind is int:
        return -(2**63) <= item < 2**63
    return True


def value_problem(value) -> str | None:
    """Why a parsed row cannot be stored as it is (None when it can): nesting, lone surrogates or
    NUL characters in any string or key, numbers that are not finite or beyond 64-bit integers."""
    if _fine(value):
        return None
    stack = [(value, (), 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels (at {_path(path)})"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (problem := _string_problem(key)):
                    return f"key {_path(path + (key,))}: {problem}"
                stack.append((child, path + (key,), depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, path + (index,), depth + 1) for index, child in enumerate(item))
        elif isinstance(item, str):
            if problem := _string_problem(item):
                return f"{_path(path)}: {problem}"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{_path(path)}: {item} is not a finite number"
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            return f"{_path(path)}: integer of {len(str(abs(item)))} digits, beyond the 64-bit range"
    return None


def _string_problem(text: str) -> str | None:
    found = _BAD_CHARACTER.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return f"NUL character at position {found.start() + 1}"
    return f"lone surrogate \\u{ord(found.group()):04x} at position {found.start() + 1} (not valid Unicode text)"


def _path(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the row"
