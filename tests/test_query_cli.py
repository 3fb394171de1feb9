"""`curate query`: only statements that read run (alone or in a multi-statement query), values
print verbatim, and csv / json / jsonl output parse back to the values the lake holds."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest

from curate import ids
from curate.cli.query_output import plain, write_csv, write_jsonl
from curate.lake.read_only_sql import read_only_statements
from curate.errors import UserError
from curate.ingest.sources import builtin_rows
from curate.ingest.validate import RawRow, ingest_rows
from curate.lake.catalog import Lake
from curate.score import score_candidates
from curate.score.verifiers import ConstraintScorer

CLI = [sys.executable, "-m", "curate.cli.main"]
ODD_TEXTS = [
    "See [address] and [bold]not bold[/bold]; :smile: stays text",
    "ünïcödé — 日本語 — emoji 🙂, a \"quote\", a comma, and a\nnewline",
    "",  # the empty string is not NULL
]


def _candidate(prompt_id: str, index: int, text: str | None, now) -> dict:
    return {"candidate_id": ids.content_hash("test-candidate", prompt_id, str(index)), "prompt_id": prompt_id,
            "model": "hand@0", "sampling_json": "{}", "sample_index": index, "seed": index, "text": text,
            "prompt_tokens": 3, "completion_tokens": None if text is None else len(text.split()),
            "finish_reason": "stop" if text is not None else None, "cumulative_logprob": None,
            "error": None if text is not None else "[engine] failed", "run_id": "test", "created_at": now}


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory) -> Path:
    """A lake with IFEval prompts (constraints_json is a JSON list), their constraint scores
    (detail_json holds `[true, false]`), a reject and candidates with markup-like and odd text."""
    data = tmp_path_factory.mktemp("query") / "data"
    rows = builtin_rows("ifeval", 6) + [RawRow("line 1", '{"prompt": [1]}', {"prompt": [1]})]
    prompts, rejects = ingest_rows(rows, "ifeval", "test")
    now = datetime.now(timezone.utc)
    first = prompts.column("prompt_id").to_pylist()
    responses = ["Hello [name], here is my answer.", "a short answer", None, *ODD_TEXTS]
    candidates = [_candidate(first[i % len(first)], i, text, now) for i, text in enumerate(responses)]
    with Lake(data / "lake") as lake:
        lake.commit({"prompts": prompts, "rejects": rejects, "candidates": candidates})
        scores = score_candidates(pl.from_arrow(prompts), pl.DataFrame(candidates), [ConstraintScorer()], "test")
        lake.commit({"scores": scores})
    return data


def _query(data: Path, sql: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "query", sql, "--data-dir", str(data), *extra], capture_output=True,
                          text=True, timeout=120)


def _counts(data: Path) -> dict[str, int]:
    with Lake(data / "lake", read_only=True) as lake:
        return {name: lake.count(name) for name in ("prompts", "candidates", "scores", "rejects")}


WRITES = [
    "COPY (select * from prompts) TO '{out}'",
    "COPY prompts TO '{out}' (FORMAT parquet)",
    "COPY prompts FROM '{out}'",
    "EXPORT DATABASE '{out}'",
    "ATTACH '{out}' AS other",
    "DETACH lake",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "RESET threads",
    "PRAGMA threads = 1",
    "PRAGMA enable_profiling",
    "USE memory",
    "CALL ducklake_expire_snapshots('lake', older_than => now())",
    "CALL lake.set_option('parquet_compression', 'snappy')",
    "CALL pragma_version()",
    "CHECKPOINT",
    "VACUUM",
    "BEGIN TRANSACTION",
    "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "CREATE SECRET s (TYPE s3)",
    "INSERT INTO rejects SELECT * FROM rejects",
    "UPDATE runs SET status = 'x'",
    "DELETE FROM prompts",
    "DROP TABLE prompts",
    "ALTER TABLE prompts ADD COLUMN x INTEGER",
    "COMMENT ON TABLE prompts IS 'x'",
    "MERGE INTO rejects USING rejects AS s ON true WHEN MATCHED THEN DELETE",
    "PREPARE p AS SELECT 1",
    "UPDATE EXTENSIONS",
    "EXPLAIN ANALYZE COPY prompts TO '{out}'",
    "SELECT * FROM ducklake_expire_snapshots('lake', older_than => now())",
    "SELECT * FROM ducklake_cleanup_old_files('lake', cleanup_all => true)",
    "SELECT * FROM ducklake_merge_adjacent_files('lake')",
    "SELECT * FROM ducklake_set_option('lake', 'parquet_compression', 'snappy')",
    "SELECT * FROM lake.expire_snapshots()",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM query('SELECT 1')",
    "WITH x AS (SELECT * FROM ducklake_flush_inlined_data('lake')) SELECT * FROM x",
    "SELECT (SELECT count(*) FROM ducklake_rewrite_data_files('lake')) AS n",
]
READS = [
    "SELECT count(*) FROM prompts",
    "FROM rejects",
    "WITH x AS (SELECT * FROM scores) SELECT scorer, count(*) FROM x GROUP BY ALL",
    "DESCRIBE pairs",
    "SHOW TABLES",
    "SUMMARIZE rejects",
    "PRAGMA table_info('pairs')",
    "EXPLAIN SELECT * FROM prompts",
    "SELECT * FROM lake.snapshots()",
    "SELECT * FROM ducklake_table_info('lake')",
    "SELECT * FROM range(3) r, (SELECT count(*) FROM pair_stats)",
    "SELECT 1; SELECT 2",
    "SELECT * FROM read_text('{out}')",  # reading a file is reading
]


@pytest.fixture()
def connection(lake_dir):
    with Lake(lake_dir / "lake", read_only=True) as lake:
        yield lake.con


@pytest.mark.parametrize("statement", WRITES)
def test_every_write_is_refused_alone_and_in_company(connection, tmp_path, statement):
    statement = statement.format(out=tmp_path / "out")
    for sql in (statement, f"SELECT 1; {statement}", f"{statement}; SELECT 1"):
        with pytest.raises(UserError, match="curate query runs only statements that read: .*nothing ran"):
            read_only_statements(connection, sql)


@pytest.mark.parametrize("statement", READS)
def test_reads_pass_and_run(connection, tmp_path, statement):
    (tmp_path / "out").write_text("hello")
    statements = read_only_statements(connection, statement.format(out=tmp_path / "out"))
    for checked in statements:
        connection.execute(checked).fetchall()


def test_a_write_past_the_check_still_fails_on_the_read_only_lake(connection):
    with pytest.raises(duckdb.Error, match="read-only|read only"):
        connection.execute("DELETE FROM lake.prompts")


def test_the_known_holes_stay_closed_through_the_cli(lake_dir, tmp_path):
    before = _counts(lake_dir)
    out = tmp_path / "file.csv"
    copy = _query(lake_dir, f"COPY (select * from prompts) TO '{out}'")
    catalog = lake_dir / "lake" / "catalog.sqlite"
    swap = _query(lake_dir, f"DETACH lake; ATTACH 'ducklake:sqlite:{catalog}' AS again; DELETE FROM again.prompts; "
                            "SELECT count(*) FROM again.prompts")
    for result in (copy, swap):
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert "runs only statements that read" in result.stderr
    assert "DETACH is refused (statement 1 of 4" in swap.stderr
    assert not out.exists()
    assert _counts(lake_dir) == before


def test_values_print_verbatim_in_the_table(lake_dir):
    result = _query(lake_dir, "select detail_json from scores where detail_json like '%followed%' limit 1")
    assert result.returncode == 0, result.stderr
    with Lake(lake_dir / "lake", read_only=True) as lake:
        stored = lake.query("select detail_json from scores where detail_json like '%followed%' limit 1")
    detail = stored["detail_json"][0]
    assert '"followed": [' in detail
    assert detail[:30] in result.stdout.replace("\n", "")  # the table may wrap a long cell, never drop text
    wide = subprocess.run([*CLI, "query", "select text from candidates where text like '%[%' order by text",
                           "--data-dir", str(lake_dir)], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "COLUMNS": "300"})
    assert "Hello [name], here is my answer." in wide.stdout
    assert "See [address] and [bold]not bold[/bold]; :smile: stays text" in wide.stdout


def _lake_frame(lake_dir: Path, sql: str) -> pl.DataFrame:
    with Lake(lake_dir / "lake", read_only=True) as lake:
        return lake.query(sql)


ROUND_TRIP_SQL = ("select prompt_id, messages, constraints_json, reference_answer, created_at, "
                  "{'n': 1, 'tags': ['a', '[b]'], 'none': NULL} as nested, [1.5, NULL, 3.0] as numbers, "
                  "true as flag, 7 as count from prompts order by prompt_id")
CANDIDATE_SQL = "select candidate_id, text, completion_tokens, error from candidates order by candidate_id"


@pytest.mark.parametrize("sql", [ROUND_TRIP_SQL, CANDIDATE_SQL])
def test_jsonl_and_json_parse_back_to_the_lake_values(lake_dir, sql):
    expected = [plain(row) for row in _lake_frame(lake_dir, sql).to_dicts()]
    jsonl = _query(lake_dir, sql, "--format", "jsonl")
    assert jsonl.returncode == 0, jsonl.stderr
    assert [json.loads(line) for line in jsonl.stdout.splitlines()] == expected
    whole = _query(lake_dir, sql, "--format", "json")
    assert json.loads(whole.stdout) == expected
    if sql == CANDIDATE_SQL:
        texts = {row["text"] for row in expected}
        assert set(ODD_TEXTS) <= texts and None in texts


def _csv_value(text: str | None, like):
    """A CSV field (as DuckDB reads it, NULL kept apart from "") back to the type of `like`."""
    if text is None or like is None:
        return text
    if isinstance(like, bool):
        return text == "true"
    if isinstance(like, (int, float)):
        return type(like)(text)
    if isinstance(like, (dict, list)):
        return json.loads(text)
    return text


@pytest.mark.parametrize("sql", [ROUND_TRIP_SQL, CANDIDATE_SQL])
def test_csv_parses_back_to_the_lake_values(lake_dir, tmp_path, sql):
    expected = [plain(row) for row in _lake_frame(lake_dir, sql).to_dicts()]
    result = _query(lake_dir, sql, "--format", "csv")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "out.csv"
    path.write_text(result.stdout)
    read = duckdb.sql(f"select * from read_csv('{path}', all_varchar = true, allow_quoted_nulls = false, "
                      "header = true, quote = '\"', escape = '\"', delim = ',', strict_mode = true)")
    columns = read.columns
    parsed = [dict(zip(columns, row)) for row in read.fetchall()]
    assert len(parsed) == len(expected)
    for got, want in zip(parsed, expected, strict=True):
        assert {k: _csv_value(v, want[k]) for k, v in got.items()} == want
    # Python's csv module reads the same fields (it cannot tell NULL from "", so compare the rest)
    import csv

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    for got, want in zip(rows, expected, strict=True):
        assert {k: _csv_value(v, want[k]) for k, v in got.items() if want[k] not in (None, "")} == \
            {k: v for k, v in want.items() if v not in (None, "")}


def test_writers_keep_null_apart_from_the_empty_string():
    frame = pl.DataFrame({"a": [None, "", "[x]"], "b": [1, None, 2]})
    out = io.StringIO()
    write_csv(frame, out)
    assert out.getvalue() == '"a","b"\n,1\n"",\n"[x]",2\n'
    out = io.StringIO()
    write_jsonl(frame, out)
    assert out.getvalue() == '{"a": null, "b": 1}\n{"a": "", "b": null}\n{"a": "[x]", "b": 2}\n'


def test_unknown_format_and_bad_sql_are_one_line_errors(lake_dir):
    for args in (["select 1", "--format", "xml"], ["selec 1"], ["select * from nowhere"]):
        result = _query(lake_dir, *args[:1], *args[1:])
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


# reads confined to the lake, a timeout, Ctrl-C, size ---------------------------------------------

@pytest.mark.parametrize("sql", ["select * from read_text('/etc/passwd')", "select * from glob('/**')",
                                 "select * from read_csv('/etc/passwd', sep = ':')"])
def test_files_outside_the_lake_are_refused_with_one_line(lake_dir, sql):
    refused = _query(lake_dir, sql)
    assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "--read-files" in refused.stderr
    assert "root:" not in refused.stderr


def test_the_lake_reads_and_read_files_opens_other_files(lake_dir, tmp_path):
    own = _query(lake_dir, "select count(*) as n from prompts p join scores s using (prompt_id)", "--format", "jsonl")
    assert own.returncode == 0 and json.loads(own.stdout)["n"] > 0, own.stderr
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n1,2\n")
    assert _query(lake_dir, f"select * from read_csv('{other}')").returncode == 2
    allowed = _query(lake_dir, f"select b from read_csv('{other}')", "--read-files", "--format", "jsonl")
    assert allowed.returncode == 0 and json.loads(allowed.stdout) == {"b": 2}, allowed.stderr


LONG = "select count(*) from range(1000000000000) t(i) where i % 7 = 3"  # hours


def test_a_query_past_its_timeout_is_stopped(lake_dir):
    stopped = _query(lake_dir, LONG, "--timeout", "1")
    assert stopped.returncode == 2 and "stopped after its timeout of 1 s" in stopped.stderr
    assert len(stopped.stderr.strip().splitlines()) == 1
    assert _query(lake_dir, "select 1", "--timeout", "0").returncode == 2


def test_ctrl_c_stops_a_long_query(lake_dir):
    import os
    import signal
    import time

    process = subprocess.Popen([*CLI, "query", LONG, "--data-dir", str(lake_dir)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    fds = Path(f"/proc/{process.pid}/fd")
    for _ in range(1200):  # until the lake's catalog is open (imports take long under load), at most 120 s
        try:
            if any("catalog" in os.readlink(fd) for fd in fds.iterdir()):
                break
        except OSError:  # an fd closed while we read the list
            pass
        time.sleep(0.1)
    time.sleep(1)  # the query under way
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)  # the query alone would run for hours (and its timeout is 300 s)
    assert process.returncode == 130, err


def test_sql_that_opens_with_a_comment_and_oversized_sql_are_one_line(lake_dir):
    comment = _query(lake_dir, "-- how many\nselect 1")
    assert comment.returncode == 2 and "put -- before the SQL" in comment.stderr and "Traceback" not in comment.stderr
    runs = subprocess.run([*CLI, "query", "--data-dir", str(lake_dir), "--", "-- how many\nselect 1 as one"],
                          capture_output=True, text=True, timeout=120)
    assert runs.returncode == 0 and "one" in runs.stdout
    huge = _query(lake_dir, "select " + ", ".join(f"{i} as c{i}" for i in range(7_500)))  # ~110 kB
    assert huge.returncode == 2 and "curate query takes at most" in huge.stderr


def test_a_large_result_is_cut_at_max_rows_and_says_so(lake_dir):
    cut = _query(lake_dir, "select range as n from range(250000)", "--format", "csv")
    assert cut.returncode == 0, cut.stderr
    lines = cut.stdout.splitlines()
    assert lines[0] == "\"n\"" and len(lines) == 1 + 100_000 and lines[-1] == "99999"
    assert cut.stderr.strip().splitlines()[-1] == "result cut at 100,000 rows (--max-rows 0 prints all)"
    whole = _query(lake_dir, "select range as n from range(250000)", "--format", "csv", "--max-rows", "0")
    assert len(whole.stdout.splitlines()) == 1 + 250_000 and "cut" not in whole.stderr
    exact = _query(lake_dir, "select range as n from range(10)", "--format", "jsonl", "--max-rows", "10")
    assert len(exact.stdout.splitlines()) == 10 and "cut" not in exact.stderr
