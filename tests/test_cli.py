"""The `curate` CLI in subprocesses: a run killed with SIGKILL resumes without losing or duplicating a row."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import datasets
import pytest

from curate.lake.catalog import Lake
from tests.helpers import write_config

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"

pytestmark = pytest.mark.slow

KEYS = {"prompts": "prompt_id", "candidates": "candidate_id", "scores": "score_id", "pairs": "pair_id",
        "rejects": "reject_id"}


def _many_prompts(path: Path, count: int = 30) -> Path:
    rows = [{"prompt": f"Write one sentence about the number {i}.", "task": "chat"} for i in range(count)]
    rows += [{"prompt": f"What is {i} + {i}?", "task": "math", "reference_answer": str(2 * i)}
             for i in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _run(cli, *args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([*cli, *args], capture_output=True, text=True, env=_env(), timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _table_ids(data: Path) -> dict[str, list[str]]:
    with Lake(data / "lake", read_only=True) as lake:
        return {t: lake.query(f"SELECT {k} FROM {t}")[k].to_list() for t, k in KEYS.items()}


def _session_processes(session: int) -> list[str]:
    """Live processes (not zombies) of a session, as "pid command"."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        command, fields = text[text.index("(") + 1:text.rindex(")")], text.rsplit(")", 1)[1].split()
        if int(fields[3]) == session and fields[0] not in ("Z", "X"):
            found.append(f"{stat.parent.name} {command}")
    return found


def _texts_and_pairs(data: Path) -> tuple[dict, dict]:
    with Lake(data / "lake", read_only=True) as lake:
        texts = dict(lake.query("SELECT candidate_id, text FROM candidates").iter_rows())
        pairs = lake.query("SELECT prompt_id, pair_id FROM pairs")
    by_prompt: dict[str, set] = {}
    for prompt_id, pair_id in pairs.iter_rows():
        by_prompt.setdefault(prompt_id, set()).add(pair_id)
    return texts, by_prompt


def test_killed_run_resumes_without_losing_or_duplicating(tmp_path, curate_cli, tiny_generator, tiny_reward):
    prompts = _many_prompts(tmp_path / "prompts.jsonl", 15)
    config = write_config(tmp_path / "run.toml", prompts, tiny_generator, tiny_reward, n=3, chunk_size=6)
    config.write_text(config.read_text().replace("default = 12", "default = 48"))
    planned = 20 * 3

    # the reference run needs no Prefect: the same steps, without the server's start-up
    _run(curate_cli, "run", str(config), "--no-prefect", "--data-dir", str(tmp_path / "straight"))
    straight = _table_ids(tmp_path / "straight")
    assert len(straight["candidates"]) == planned and straight["pairs"]

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([*curate_cli, "run", str(config), "--data-dir", str(killed_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                               start_new_session=True)
    try:
        try:
            for line in process.stdout:
                if "generate: committed" in line:
                    process.send_signal(signal.SIGKILL)
                    break
        finally:
            process.kill()
            process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL
        left = _session_processes(process.pid)
        assert left, "the killed run's ephemeral Prefect server should still be running here"
        partial = _table_ids(killed_dir)
        assert 0 < len(partial["candidates"]) < planned, "the kill must land during generation"
        assert partial["pairs"] == []

        resumed = _run(curate_cli, "run", str(config), "--data-dir", str(killed_dir))
        # the next run in that data dir stopped what the killed one left running
        assert _session_processes(process.pid) == [], _session_processes(process.pid)
        assert "an earlier, killed run left running" in resumed.stdout
    finally:
        try:  # whatever the test's outcome, nothing of the killed run outlives it
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert f"{len(partial['candidates'])} already in the lake" in resumed.stdout
    with Lake(killed_dir / "lake", read_only=True) as lake:
        statuses = lake.query("SELECT status FROM runs ORDER BY started_at")["status"].to_list()
    assert statuses == ["interrupted", "completed"]
    after = _table_ids(killed_dir)
    for table, ids in after.items():
        assert len(ids) == len(set(ids)), f"duplicate ids in {table}"
        if table != "pairs":  # content-addressed by request, not by sampled text
            assert sorted(ids) == sorted(straight[table]), f"{table} differs from the uninterrupted run"
    # Generation keeps the engine fed across commits, so requests still running at the kill are
    # sampled again in other batches and may get other text (README, "Resume"). What was
    # committed is never rewritten, and prompts answered in full before the kill pair as before.
    straight_texts, straight_pairs = _texts_and_pairs(tmp_path / "straight")
    texts, pairs = _texts_and_pairs(killed_dir)
    committed = set(partial["candidates"])
    assert all(texts[c] == straight_texts[c] for c in committed)
    with Lake(killed_dir / "lake", read_only=True) as lake:
        per_prompt = lake.query("SELECT prompt_id, list(candidate_id) AS ids FROM candidates GROUP BY 1")
    # (which prompts were answered in full depends on which requests finished first: maybe none)
    whole = [p for p, ids in per_prompt.iter_rows() if set(ids) <= committed]
    assert all(pairs.get(p, set()) == straight_pairs.get(p, set()) for p in whole)


def test_query_stats_export_and_errors(tmp_path, curate_cli):
    prompts = tmp_path / "prompts.jsonl"
    answers = [{"text": "1 + 1 = 2. The answer is 2."}, {"text": "1 + 1 = 3. The answer is 3."}]  # imported
    prompts.write_text(json.dumps({"prompt": "What is 1 + 1?", "task": "math", "reference_answer": "2",
                                   "completions": answers}) + "\n" + "not json\n")
    config = tmp_path / "run.toml"
    config.write_text(f'name = "test"\ngenerators = []\n[[inputs]]\npath = "{prompts}"\n[[scorers]]\n'
                      'kind = "math_verify"\n[[pairs]]\nstrategy = "margin"\nscorer = "math_verify"\n'
                      "[dedup]\nsemantic = false\n")
    data = tmp_path / "data"
    run = _run(curate_cli, "run", str(config), "--data-dir", str(data), "--no-prefect")
    assert "curate run" in run.stdout and "rejects" in run.stdout
    assert "\r" not in run.stdout + run.stderr  # no redrawn bars in a log file (datasets' "Saving the dataset")

    result = _run(curate_cli, "query", "select count(*) as n from candidates", "--data-dir", str(data))
    assert "2" in result.stdout
    result = _run(curate_cli, "query", "select reason from rejects", "--data-dir", str(data))
    assert "invalid JSON" in result.stdout
    stats = _run(curate_cli, "stats", "--data-dir", str(data))
    assert "candidates" in stats.stdout and "rejects" in stats.stdout

    out = tmp_path / "exported"
    exported = _run(curate_cli, "export", str(out), "--data-dir", str(data))
    assert "\r" not in exported.stdout + exported.stderr
    dataset = datasets.load_from_disk(str(out))["train"]
    assert (out / "README.md").exists()  # the dataset card
    assert {"prompt", "chosen", "rejected"} <= set(dataset.column_names)

    write = _run(curate_cli, "query", "delete from prompts", "--data-dir", str(data), check=False)
    assert write.returncode == 2 and "runs only statements that read" in write.stderr
    missing = _run(curate_cli, "stats", "--data-dir", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 2 and "no lake" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[inputs]]\npath = "x.jsonl"\n[generator]\nmodle = "x"\n')
    typo = _run(curate_cli, "run", str(bad), "--data-dir", str(data), check=False)
    assert typo.returncode == 2 and "unknown key(s) ['modle'] in [generators.0]" in typo.stderr
    assert "Traceback" not in typo.stdout + typo.stderr


def test_a_run_killed_during_its_export_is_interrupted_and_the_previous_export_stays(tmp_path, curate_cli):
    import time

    # the UltraFeedback example's own completions: no model to load, the export is what takes time
    shutil.copy(EXAMPLES / "ultrafeedback.jsonl", tmp_path)
    config = tmp_path / "run.toml"
    config.write_text((EXAMPLES / "ultrafeedback.toml").read_text()
                      .replace('export_path = "export/ultrafeedback-example"', 'export_path = "export/test"')
                      + "\n[dedup]\nsemantic = false\n")
    data, out = tmp_path / "data", tmp_path / "data" / "export" / "test"
    _run(curate_cli, "run", str(config), "--no-prefect", "--data-dir", str(data))
    before = datasets.load_from_disk(str(out))["train"]["pair_id"]

    process = subprocess.Popen([*curate_cli, "run", str(config), "--no-prefect", "--data-dir", str(data)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)
    try:
        while process.poll() is None and not list(out.parent.glob(".test.export-*")):
            time.sleep(0.005)
        os.killpg(process.pid, signal.SIGKILL)  # the export is being written aside
    finally:
        process.wait()
    if process.returncode != -signal.SIGKILL:
        pytest.skip("the run ended before its export could be caught")
    with Lake(data / "lake", read_only=True) as lake:
        assert lake.query("SELECT status FROM runs ORDER BY started_at")["status"].to_list() == ["completed", "exporting"]
    assert datasets.load_from_disk(str(out))["train"]["pair_id"] == before  # the previous export, whole

    _run(curate_cli, "run", str(config), "--no-prefect", "--data-dir", str(data))
    with Lake(data / "lake", read_only=True) as lake:
        statuses = lake.query("SELECT status FROM runs ORDER BY started_at")["status"].to_list()
    assert statuses == ["completed", "interrupted", "completed"]
    assert sorted(datasets.load_from_disk(str(out))["train"]["pair_id"]) == sorted(before)
    assert not list(out.parent.glob(".test.*"))  # the killed export's scratch is gone
