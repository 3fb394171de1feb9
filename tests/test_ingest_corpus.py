"""The bad-input corpus (tests/ingest_corpus.py): through ingest, and through `curate run` in a
subprocess. The runs' generator answers only long_context prompts, of which the corpus has no
good one, so nothing is generated and no engine starts: these tests are about ingest."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from curate.ingest.readers import RAW_LIMIT, REASON_LIMIT
from curate.ingest.validate import ingest_file
from curate.lake.catalog import open_lake
from tests.helpers import write_prompts
from tests.ingest_corpus import BAD, build_corpus


@pytest.fixture(scope="module")
def corpus():
    return build_corpus()


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, corpus):
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_bytes(corpus.data)
    return path


def _last_contents(messages_column) -> list[str]:
    return [messages[-1]["content"] for messages in messages_column]


def _check_rejects(rejects: list[dict], corpus) -> None:
    by_line = {int(r["location"].removeprefix("line ")): r for r in rejects}
    missing = sorted(set(corpus.bad) - set(by_line))
    assert not missing, f"bad lines without a reject: {missing}"
    assert set(by_line) == set(corpus.bad), f"rejects of good or blank lines: {set(by_line) - set(corpus.bad)}"
    for line, fragment in corpus.bad.items():
        reason = by_line[line]["reason"]
        assert fragment in reason, f"line {line}: {reason!r} lacks {fragment!r}"
        assert "\n" not in reason and len(reason) <= REASON_LIMIT
        assert "\x00" not in by_line[line]["raw"] and len(by_line[line]["raw"]) <= RAW_LIMIT
        assert by_line[line]["stage"] == "ingest"


def test_corpus_has_the_kinds_it_promises(corpus):
    assert len(BAD) >= 30 and len(corpus.bad) == len(BAD)
    assert len(corpus.good) >= 10 and corpus.blank
    assert corpus.data.startswith(b"\xef\xbb\xbf") and b"\r\n" in corpus.data and b"\x00" in corpus.data
    with pytest.raises(UnicodeDecodeError):
        corpus.data.decode("utf-8")


def test_every_corpus_row_is_a_prompt_or_a_reject(corpus, corpus_file):
    prompts, rejects = ingest_file(corpus_file, "run-1")
    assert sorted(_last_contents(prompts.column("messages").to_pylist())) == sorted(corpus.good.values())
    _check_rejects(rejects.to_pylist(), corpus)
    assert len(set(rejects.column("reject_id").to_pylist())) == rejects.num_rows


def test_the_ugly_good_rows_are_stored_as_meant(corpus_file):
    prompts, _ = ingest_file(corpus_file, "run-1")
    rows = {r["messages"][-1]["content"]: r for r in prompts.to_pylist()}
    assert "First line, after the file's BOM." in rows  # the BOM is an encoding mark, not text
    assert "A CRLF line." in rows
    assert rows["What is 10^18?"]["reference_answer"] == str(10**18)
    assert "A surrogate pair is fine: \U0001F600 and 中文" in rows
    assert json.loads(rows["Write f() returning 1."]["task_fields_json"]) == {"tests": "assert f() == 1",
                                                                             "entry_point": "f"}


# through the CLI -------------------------------------------------------------------------------

def _config(path: Path, generator: Path, *inputs: tuple[Path, str]) -> Path:
    blocks = "".join(f'[[inputs]]\npath = "{p}"\nsource = "{s}"\n\n' for p, s in inputs)
    path.write_text(f'name = "bad-input"\n\n{blocks}[generator]\nmodel = "{generator}"\nname = "tiny"\n'
                    'tasks = ["long_context"]\nmax_model_len = 512\nkv_cache_memory_bytes = 67108864\n')
    return path


def _run(cli, config: Path, data: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([*cli, "run", str(config), "--data-dir", str(data), "--no-prefect"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def _lake(data: Path, sql: str) -> list[dict]:
    with open_lake(data, read_only=True) as lake:
        return lake.query(sql).to_dicts()


def test_corpus_through_curate_run(tmp_path, curate_cli, tiny_generator, corpus, corpus_file):
    data = tmp_path / "data"
    prior = write_prompts(tmp_path / "prior.jsonl", broken=False)
    _run(curate_cli, _config(tmp_path / "prior.toml", tiny_generator, (prior, "prior")), data)
    before = _lake(data, "SELECT prompt_id FROM prompts ORDER BY 1")
    assert len(before) == 5

    config = _config(tmp_path / "corpus.toml", tiny_generator, (corpus_file, "corpus"))
    result = _run(curate_cli, config, data)
    assert f"{len(corpus.good)} prompts ({len(corpus.good)} new), {len(corpus.bad)} rejected" in result.stdout
    stored = _lake(data, "SELECT messages FROM prompts WHERE source = 'corpus'")
    assert sorted(_last_contents(r["messages"] for r in stored)) == sorted(corpus.good.values())
    _check_rejects(_lake(data, "SELECT * FROM rejects WHERE source = 'corpus'"), corpus)
    # what the lake held before the corpus arrived is still there
    assert _lake(data, "SELECT prompt_id FROM prompts WHERE source = 'prior' ORDER BY 1") == before

    again = _run(curate_cli, config, data)  # a second run stores nothing twice and still goes through
    assert f"{len(corpus.good)} prompts (0 new), {len(corpus.bad)} rejected" in again.stdout
    assert _lake(data, "SELECT count(*) AS n FROM rejects")[0]["n"] == len(corpus.bad)
    runs = _lake(data, "SELECT status, counts_json FROM runs ORDER BY started_at")
    assert [r["status"] for r in runs] == ["completed"] * 3
    counts = json.loads(runs[1]["counts_json"])
    assert counts["prompts_read"] == len(corpus.good) and counts["rejects_new"] == len(corpus.bad)


def test_empty_and_all_failing_inputs_complete_with_zeros(tmp_path, curate_cli, tiny_generator):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n  \r\n\t\n")
    failing = tmp_path / "failing.jsonl"
    failing.write_bytes(b"\n".join(line for line, _ in BAD[:12]) + b"\n")
    config = _config(tmp_path / "run.toml", tiny_generator, (empty, "empty"), (blank, "blank"),
                     (failing, "failing"))
    result = _run(curate_cli, config, tmp_path / "data")
    assert "ingest empty.jsonl: 0 prompts (0 new), 0 rejected (the input holds no rows)" in result.stdout
    assert "ingest blank.jsonl: 0 prompts (0 new), 0 rejected (the input holds no rows)" in result.stdout
    assert "ingest failing.jsonl: 0 prompts (0 new), 12 rejected (every row failed" in result.stdout
    assert "no valid prompts in any input" in result.stdout
    run = _lake(tmp_path / "data", "SELECT status, counts_json FROM runs")
    assert [r["status"] for r in run] == ["completed"]
    counts = json.loads(run[0]["counts_json"])
    assert counts["prompts_read"] == 0 and counts["rejects_read"] == 12
    assert counts.get("candidates_new", 0) == 0
    assert _lake(tmp_path / "data", "SELECT count(*) AS n FROM prompts")[0]["n"] == 0


@pytest.mark.slow
def test_corpus_through_curate_run_with_generation(tmp_path, curate_cli, tiny_generator, corpus, corpus_file):
    """With generation (vLLM): the good rows are generated for; the 1 MB row that passed ingest is
    too long for max_model_len = 512 and becomes one counted error candidate."""
    config = _config(tmp_path / "run.toml", tiny_generator, (corpus_file, "corpus"))
    config.write_text(config.read_text().replace('tasks = ["long_context"]\n', "")
                      + "\n[sampling]\nn = 1\n\n[sampling.max_tokens]\ndefault = 4\n")
    data = tmp_path / "data"
    result = _run(curate_cli, config, data)
    assert "requests failed, stored with finish_reason 'error'" in result.stdout
    _check_rejects(_lake(data, "SELECT * FROM rejects"), corpus)
    candidates = _lake(data, "SELECT finish_reason, error, prompt_tokens FROM candidates")
    assert len(candidates) == len(corpus.good)
    failed = [c for c in candidates if c["finish_reason"] == "error"]
    assert len(failed) == 1 and "max_model_len is 512" in failed[0]["error"] and failed[0]["prompt_tokens"] > 512
    counts = json.loads(_lake(data, "SELECT counts_json FROM runs")[0]["counts_json"])
    assert counts["candidates_error"] == 1 and counts["prompts_read"] == len(corpus.good)
