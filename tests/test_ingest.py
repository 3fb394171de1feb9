"""Ingest: JSONL / Parquet / HF dataset dirs -> prompts and rejects."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import ids
from curate.errors import UserError
from curate.ingest.validate import ingest_file
from curate.lake import schemas

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}]}
MATH = {"task": "math", "prompt": "What is 6 * 7?", "reference_answer": 42}
MATH_FLOAT = {"task": "math", "prompt": "Half of 7?", "reference_answer": 3.5, "reference_solution": "7/2"}
INSTRUCTION = {
    "task": "instruction",
    "prompt": "Describe the sea in lowercase.",
    "constraints": [
        {"type": "change_case:english_lowercase"},
        {"type": "length_constraints:number_words", "kwargs": {"relation": "at least", "num_words": 5}},
    ],
}

# (raw line, a fragment the reject reason must contain)
BROKEN = [
    ('{"messages": [', "invalid JSON"),
    ('[1, 2, 3]', "not a JSON object"),
    (json.dumps({"task": "chat"}), "needs `messages`"),
    (json.dumps({"messages": []}), "messages must be a non-empty list"),
    (json.dumps({"messages": [{"role": "user", "content": "   "}]}), "messages[0].content must be a non-empty string"),
    (json.dumps({"messages": "hello"}), "messages must be a non-empty list"),
    (json.dumps({"task": "math", "prompt": "2+2?", "reference_answer": [4]}), "'reference_answer' must be a string"),
    (json.dumps({"task": "poetry", "prompt": "Write."}), "unknown task 'poetry'"),
    (json.dumps({"task": "math", "prompt": "2+2?"}), "needs field 'reference_answer'"),
    (json.dumps({"task": "instruction", "prompt": "x",
                 "constraints": [{"type": "no:such_thing"}]}), "unknown constraint type 'no:such_thing'"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"}]}), "last message must be from the user"),
    (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}), "messages[0].role must be one of"),
]


def _write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A JSONL with good rows, blank lines, a duplicate and every kind of broken row."""
    path = tmp_path_factory.mktemp("ingest") / "mixed.jsonl"
    lines = [json.dumps(CHAT), "", json.dumps(MATH), "   ", json.dumps(INSTRUCTION), json.dumps(MATH_FLOAT)]
    good_count = len(lines)
    broken_start = good_count + 1
    lines += [raw for raw, _ in BROKEN]
    # the same chat prompt again, with outer whitespace: collapses to one prompt
    lines.append(json.dumps({"messages": [{"role": "system", "content": "  Be brief."},
                                          {"role": "user", "content": "Say hi.\n"}]}))
    _write_jsonl(path, lines)
    prompts, rejects = ingest_file(path, run_id="run-1")
    return prompts, rejects, broken_start


def test_good_rows_become_prompts(mixed):
    prompts, _, _ = mixed
    assert prompts.schema == schemas.table("prompts").arrow_schema()
    by_task = {row["task"]: row for row in prompts.to_pylist() if row["task"] != "math"}
    assert prompts.num_rows == 4
    assert set(by_task) == {"chat", "instruction"}
    chat = by_task["chat"]
    assert chat["messages"] == CHAT["messages"]
    assert chat["source"] == "mixed"  # the file stem
    assert chat["run_id"] == "run-1"
    assert chat["reference_answer"] is None and chat["constraints_json"] is None
    assert chat["task_fields_json"] is None
    assert chat["created_at"] is not None


def test_numeric_reference_answer_stored_as_string(mixed):
    prompts, _, _ = mixed
    maths = {r["reference_answer"]: r for r in prompts.to_pylist() if r["task"] == "math"}
    assert set(maths) == {"42", "3.5"}
    assert maths["42"]["messages"] == [{"role": "user", "content": "What is 6 * 7?"}]
    assert maths["3.5"]["reference_solution"] == "7/2"
    assert maths["42"]["reference_solution"] is None


def test_instruction_constraints_stored_as_json(mixed):
    prompts, _, _ = mixed
    row = next(r for r in prompts.to_pylist() if r["task"] == "instruction")
    assert json.loads(row["constraints_json"]) == INSTRUCTION["constraints"]


def test_prompt_ids_are_content_ids(mixed):
    prompts, _, _ = mixed
    chat = next(r for r in prompts.to_pylist() if r["task"] == "chat")
    expected = ids.prompt_id(CHAT["messages"], "chat",
                             {"reference_answer": None, "reference_solution": None, "constraints": None}, "mixed")
    assert chat["prompt_id"] == expected
    assert len(set(prompts.column("prompt_id").to_pylist())) == prompts.num_rows


def test_duplicate_good_rows_collapse_to_one_prompt(mixed):
    prompts, rejects, _ = mixed
    chats = [r for r in prompts.to_pylist() if r["task"] == "chat"]
    assert len(chats) == 1
    # the first spelling is kept
    assert chats[0]["messages"][0]["content"] == "Be brief."
    assert not any("Be brief" in raw for raw in rejects.column("raw").to_pylist())


def test_each_broken_row_rejected_with_reason_and_line(mixed):
    _, rejects, start = mixed
    assert rejects.schema == schemas.table("rejects").arrow_schema()
    assert rejects.num_rows == len(BROKEN)
    by_location = {r["location"]: r for r in rejects.to_pylist()}
    for offset, (raw, fragment) in enumerate(BROKEN):
        location = f"line {start + offset}"
        assert location in by_location, f"no reject at {location} for {raw}"
        reject = by_location[location]
        assert fragment in reject["reason"], (raw, reject["reason"])
        assert reject["raw"] == raw
        assert reject["stage"] == "ingest"
        assert reject["source"] == "mixed"
        assert reject["run_id"] == "run-1"
        assert "\n" not in reject["reason"]
    assert len(set(rejects.column("reject_id").to_pylist())) == rejects.num_rows


def test_blank_lines_are_neither_prompts_nor_rejects(mixed):
    prompts, rejects, _ = mixed
    locations = set(rejects.column("location").to_pylist())
    assert "line 2" not in locations and "line 4" not in locations
    assert all(raw.strip() for raw in rejects.column("raw").to_pylist())


def test_ingest_is_deterministic_apart_from_time(tmp_path):
    path = _write_jsonl(tmp_path / "a.jsonl", [json.dumps(MATH), '{"bad'])
    p1, r1 = ingest_file(path, "r1")
    p2, r2 = ingest_file(path, "r2")
    assert p1.column("prompt_id").to_pylist() == p2.column("prompt_id").to_pylist()
    # reject ids depend on content and location, not on the run
    assert r1.column("reject_id").to_pylist() == r2.column("reject_id").to_pylist()


def test_source_argument_overrides_stem_and_changes_ids(tmp_path):
    path = _write_jsonl(tmp_path / "stem.jsonl", [json.dumps(CHAT)])
    default, _ = ingest_file(path, "r")
    named, _ = ingest_file(path, "r", source="named")
    assert default.column("source").to_pylist() == ["stem"]
    assert named.column("source").to_pylist() == ["named"]
    assert default.column("prompt_id")[0] != named.column("prompt_id")[0]


def test_instruction_with_bad_kwargs_is_rejected(tmp_path):
    row = {"task": "instruction", "prompt": "x",
           "constraints": [{"type": "length_constraints:number_words", "kwargs": {"relation": "about"}}]}
    path = _write_jsonl(tmp_path / "k.jsonl", [json.dumps(row)])
    prompts, rejects = ingest_file(path, "r")
    assert prompts.num_rows == 0
    assert "relation must be one of" in rejects.column("reason")[0].as_py()
    assert rejects.column("location").to_pylist() == ["line 1"]


def test_only_blank_lines_gives_empty_tables(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n   \n\n")
    prompts, rejects = ingest_file(path, "r")
    assert prompts.num_rows == 0 and rejects.num_rows == 0
    assert prompts.schema == schemas.table("prompts").arrow_schema()


def test_unhashable_role_or_task_becomes_reject_not_crash(tmp_path):
    lines = [
        json.dumps({"messages": [{"role": ["user"], "content": "hi"}]}),
        json.dumps({"task": ["math"], "prompt": "hi"}),
        json.dumps(CHAT),
    ]
    path = _write_jsonl(tmp_path / "types.jsonl", lines)
    prompts, rejects = ingest_file(path, "r")
    assert prompts.num_rows == 1
    assert rejects.column("location").to_pylist() == ["line 1", "line 2"]


def test_parquet_with_prompt_column(tmp_path):
    path = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": ["First question?", "  ", "Second question?"],
                             "task": ["chat", "chat", None]}), path)
    prompts, rejects = ingest_file(path, "run-p")
    assert sorted(m[0]["content"] for m in prompts.column("messages").to_pylist()) == [
        "First question?", "Second question?"]
    assert all(m[0]["role"] == "user" and len(m) == 1 for m in prompts.column("messages").to_pylist())
    assert set(prompts.column("task").to_pylist()) == {"chat"}
    assert set(prompts.column("source").to_pylist()) == {"prompts"}
    assert rejects.column("location").to_pylist() == ["row 2"]
    assert "needs `messages`" in rejects.column("reason")[0].as_py()


def test_parquet_with_math_messages(tmp_path):
    path = tmp_path / "math.parquet"
    pq.write_table(pa.table({
        "messages": [[{"role": "user", "content": "1+1?"}]],
        "task": ["math"],
        "reference_answer": ["2"],
    }), path)
    prompts, rejects = ingest_file(path, "r")
    assert rejects.num_rows == 0
    row = prompts.to_pylist()[0]
    assert row["messages"] == [{"role": "user", "content": "1+1?"}]
    assert row["reference_answer"] == "2"


def test_unreadable_parquet_raises_user_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        ingest_file(path, "r")


def test_hf_dataset_dir_with_prompt_column(tmp_path):
    import datasets

    out = tmp_path / "hfdata"
    datasets.Dataset.from_list([
        {"prompt": "Tell me a joke.", "task": "chat"},
        {"prompt": "", "task": "chat"},
        {"prompt": "Tell me a joke.", "task": "chat"},
    ]).save_to_disk(str(out))
    prompts, rejects = ingest_file(out, "r")
    assert prompts.num_rows == 1
    assert prompts.column("messages").to_pylist() == [[{"role": "user", "content": "Tell me a joke."}]]
    assert prompts.column("source").to_pylist() == ["hfdata"]
    assert rejects.column("location").to_pylist() == ["row 2"]


def test_hf_dataset_dict_dir_concatenates_splits(tmp_path):
    import datasets

    out = tmp_path / "dd"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"prompt": "a?"}]),
        "test": datasets.Dataset.from_list([{"prompt": "b?"}]),
    }).save_to_disk(str(out))
    prompts, _ = ingest_file(out, "r")
    assert sorted(m[0]["content"] for m in prompts.column("messages").to_pylist()) == ["a?", "b?"]


def test_directory_that_is_not_a_dataset_raises_user_error(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not a Hugging Face dataset directory"):
        ingest_file(tmp_path / "plain", "r")


def test_missing_file_raises_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ingest_file(tmp_path / "nope.jsonl", "r")


def test_unsupported_extension_raises_user_error(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("prompt\nhello\n")
    with pytest.raises(UserError, match="unsupported prompt file"):
        ingest_file(path, "r")


def test_long_context_row_without_messages_gets_them_from_context_and_question():
    from datetime import datetime, timezone

    from curate.ingest.validate import validate_row
    from curate.pairs.short_to_long import long_context_message

    row = validate_row({"task": "long_context", "context": "A long document.", "question": "What is it?"},
                       "docs", "r", datetime.now(timezone.utc))
    assert row["messages"] == [{"role": "user", "content": long_context_message("A long document.", "What is it?")}]


# bad rows in Parquet and HF datasets: rejects, not crashes -----------------------------------------

def test_parquet_bad_rows_are_rejects(tmp_path):
    from curate.ingest.readers import MAX_ROW_BYTES

    path = tmp_path / "bad.parquet"
    # a string column holding invalid UTF-8 in row 2 (Arrow writes it without checking)
    prompt = pa.array([b"Good one?", b"caf\xe9", b"Another?", b"x" * (MAX_ROW_BYTES + 10), b"Last?"],
                      pa.binary()).view(pa.string())
    messages = pa.array([None, None, [{"role": "user", "content": None}], None, None],
                        pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))
    pq.write_table(pa.table({"prompt": prompt, "messages": messages,
                             "task": ["chat", "chat", "chat", "chat", "poetry"]}), path)
    prompts, rejects = ingest_file(path, "r")
    assert _contents(prompts) == ["Good one?"]
    reasons = dict(zip(rejects.column("location").to_pylist(), rejects.column("reason").to_pylist()))
    assert set(reasons) == {"row 2", "row 3", "row 4", "row 5"}
    assert "unreadable row" in reasons["row 2"] and "utf-8" in reasons["row 2"]
    assert "messages[0].content must be a non-empty string" in reasons["row 3"]
    assert "over the 4,194,304-byte limit" in reasons["row 4"]
    assert "unknown task 'poetry'" in reasons["row 5"]
    assert all(len(raw) <= 10_000 for raw in rejects.column("raw").to_pylist())


def test_parquet_non_finite_and_wrongly_typed_values_are_rejects(tmp_path):
    path = tmp_path / "types.parquet"
    pq.write_table(pa.table({
        "prompt": ["a?", "b?", "c?", "d?"],
        "task": ["math", "math", "math", "chat"],
        "reference_answer": pa.array([float("nan"), float("inf"), 4.0, None]),
        "tags": [{"k": 1}, {"k": 2}, {"k": 3}, {"k": 4}],
    }), path)
    prompts, rejects = ingest_file(path, "r")
    assert _contents(prompts) == ["c?", "d?"]
    assert prompts.filter(pa.compute.equal(prompts["task"], "math"))["reference_answer"].to_pylist() == ["4.0"]
    reasons = dict(zip(rejects.column("location").to_pylist(), rejects.column("reason").to_pylist()))
    assert reasons == {"row 1": "reference_answer: nan is not a finite number",
                       "row 2": "reference_answer: inf is not a finite number"}


def test_hf_dataset_dict_bad_rows_are_rejects_located_by_split(tmp_path):
    import datasets

    out = tmp_path / "dd"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"prompt": "fine?", "task": "chat"},
                                             {"prompt": "bad \x00 NUL", "task": "chat"}]),
        "test": datasets.Dataset.from_list([{"prompt": "", "task": "chat"},
                                            {"prompt": "also fine?", "task": "math"}]),
    }).save_to_disk(str(out))
    prompts, rejects = ingest_file(out, "r")
    assert _contents(prompts) == ["fine?"]
    reasons = dict(zip(rejects.column("location").to_pylist(), rejects.column("reason").to_pylist()))
    assert set(reasons) == {"train row 2", "test row 1", "test row 2"}
    assert "NUL character" in reasons["train row 2"]
    assert "\x00" not in rejects.column("raw").to_pylist()[0]
    assert "needs field 'reference_answer'" in reasons["test row 2"]


def test_a_validation_bug_in_one_row_is_a_reject_not_a_crash(tmp_path, monkeypatch):
    import curate.ingest.validate as ingest

    real = ingest.constraint_errors

    def flaky(constraints):
        if constraints[0].get("kwargs", {}).get("num_words") == 13:
            raise ZeroDivisionError("checker bug")
        return real(constraints)

    monkeypatch.setattr(ingest, "constraint_errors", flaky)
    rows = [dict(INSTRUCTION), {**INSTRUCTION, "constraints": [
        {"type": "length_constraints:number_words", "kwargs": {"relation": "at least", "num_words": 13}}]}]
    path = _write_jsonl(tmp_path / "bug.jsonl", [json.dumps(r) for r in rows])
    prompts, rejects = ingest_file(path, "r")
    assert prompts.num_rows == 1
    assert rejects.to_pylist()[0]["location"] == "line 2"
    assert rejects.to_pylist()[0]["reason"] == "could not be validated (ZeroDivisionError: checker bug)"


def _contents(prompts) -> list[str]:
    return sorted(m[-1]["content"] for m in prompts.column("messages").to_pylist())


def test_nesting_limit_is_exact_and_every_problem_is_found_wherever_it_sits():
    from curate.ingest.readers import MAX_DEPTH, value_problem

    def nested(levels: int, leaf):
        value = leaf
        for _ in range(levels - 1):  # the row itself is level 1
            value = {"a": value}
        return value

    assert value_problem(nested(MAX_DEPTH, "ok")) is None
    assert value_problem(nested(MAX_DEPTH, {})) is None
    assert "nested deeper than 32 levels" in value_problem(nested(MAX_DEPTH + 1, "too deep"))
    assert "nested deeper" in value_problem(nested(MAX_DEPTH, [1]))
    row = {"messages": [{"role": "user", "content": "hi"}], "meta": [1, {"x": [2.5, "fine"]}]}
    assert value_problem(row) is None
    for leaf, fragment in [("\ud800", "lone surrogate \\ud800"), ("a\x00", "NUL character at position 2"),
                           (float("inf"), "inf is not a finite number"), (2**63, "beyond the 64-bit range")]:
        bad = {**row, "meta": [1, {"x": [2.5, leaf]}]}
        assert value_problem(bad).startswith("meta[1].x[1]: ") and fragment in value_problem(bad)
    assert value_problem({"ok": 1, "k\ud800": 2}).startswith("key k\ud800: lone surrogate")
    assert value_problem({"n": -(2**63)}) is None and value_problem({"b": True, "z": None}) is None


def test_oversized_lines_are_rejected_without_being_held_whole(tmp_path):
    from curate.ingest.readers import MAX_ROW_BYTES

    path = tmp_path / "big.jsonl"
    with path.open("wb") as handle:
        handle.write(b" " * 20_000 + b'{"prompt": "' + b"x" * MAX_ROW_BYTES + b'"}\n')  # blank head, big row
        handle.write(json.dumps(CHAT).encode() + b"\n")
        handle.write(b'{"prompt": "' + b"y" * (MAX_ROW_BYTES - 14) + b'"}')  # exactly the limit, no newline
    prompts, rejects = ingest_file(path, "r")
    assert [r["location"] for r in rejects.to_pylist()] == ["line 1"]
    assert f"row is {20_000 + MAX_ROW_BYTES + 14:,} bytes" in rejects.column("reason")[0].as_py()
    assert len(rejects.column("raw")[0].as_py()) == 10_000
    assert prompts.num_rows == 2
