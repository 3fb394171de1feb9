"""[runner] kind = "processes": shard work (ingest, scoring, the audit) in worker processes gives
the rows of the same run in one process; inputs are read in chunks that ship to the workers."""

from __future__ import annotations

import json
import random
import shutil
import tomllib
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.config import parse_config
from curate.ingest.readers import raw_chunks, read_rows, rows_of_chunk
from curate.lake.catalog import Lake
from curate.pipeline import Pipeline
from curate.runtime.shards import InProcess, ProcessPool

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"
KEYS = {"prompts": "prompt_id", "rejects": "reject_id", "candidates": "candidate_id", "scores": "score_id",
        "pairs": "pair_id", "dedup_drops": "drop_id", "pair_audits": "audit_id"}


def _locations(rows) -> list[tuple[str, str]]:
    return [(row.location, row.raw) for row in rows]


def test_chunks_hold_the_rows_of_read_rows_in_order(tmp_path):
    lines = [json.dumps({"prompt": f"question {i}"}) for i in range(23)]
    lines[4], lines[9] = "", "{not json"  # a blank line is no row; a broken one is
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\n")
    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.table({"prompt": [f"q {i}" for i in range(2_500)]}), parquet, row_group_size=700)
    hf = tmp_path / "hf"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": [f"t {i}" for i in range(1_100)]}),
                          "test": datasets.Dataset.from_dict({"prompt": ["x", "y"]})}).save_to_disk(str(hf))
    expected = {jsonl: [5, 5, 5, 5, 2], parquet: [1_000, 1_000, 500], hf: [300, 300, 300, 200, 2]}
    for path, size in ((jsonl, 5), (parquet, 1_000), (hf, 300)):
        chunks = list(raw_chunks(path, size))
        rows = [list(rows_of_chunk(chunk)) for chunk in chunks]
        assert [len(part) for part in rows] == expected[path]  # a chunk never spans two splits
        assert _locations(row for part in rows for row in part) == _locations(read_rows(path))
    assert [row.location for row in read_rows(parquet)][-1] == "row 2500"
    assert [row.location for row in read_rows(hf)][-2:] == ["test row 1", "test row 2"]
    assert [row.location for row in read_rows(jsonl)][:5] == ["line 1", "line 2", "line 3", "line 4", "line 6"]


def _input(path: Path) -> None:
    """UltraFeedback-shaped rows on real-looking text: instructions with a checkable constraint,
    4 rated completions each, a repeated prompt, a malformed completion and a broken row."""
    rng = random.Random(7)
    words = "the river runs past old stone walls while quiet birds sing in tall green trees".split()
    rows = []
    for index in range(30):
        completions = []
        for sample in range(4):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(12, 30)))
            completions.append({"model": f"model-{sample}", "overall_score": float(rng.randint(1, 10)),
                                "response": text + ("," if rng.random() < 0.5 else "") + " done."})
        rows.append({"instruction": f"Describe scene {index % 27} without using any commas.", "task": "instruction",
                     "constraints": [{"type": "punctuation:no_comma"}], "completions": completions})
    rows[5]["completions"][2] = {"model": "model-2", "overall_score": 3.0}  # no response: a reject of its own
    lines = [json.dumps(row) for row in rows] + ["{broken"]
    lines += (EXAMPLES / "ultrafeedback.jsonl").read_text().splitlines()
    path.write_text("\n".join(lines) + "\n")


def _run(tmp_path: Path, kind: str, monkeypatch) -> tuple[dict, dict]:
    monkeypatch.setattr("curate.steps.ingest.INGEST_BATCH_ROWS", 4)  # several chunks, several windows
    monkeypatch.setattr("curate.audit.checks.AUDIT_CHUNK_PAIRS", 12)
    _input(tmp_path / "input.jsonl")
    values = tomllib.loads((EXAMPLES / "ultrafeedback.toml").read_text())
    values["inputs"][0]["path"] = "input.jsonl"
    values["scorers"].append({"kind": "constraints"})
    values["pairs"].append({"strategy": "margin", "scorer": "constraints"})
    # a scorer kind and a strategy added by plugins: workers import their modules (tests/plugins/)
    values["plugins"] = ["tests.plugins.length_scorer", "tests.plugins.longest_strategy"]
    values["scorers"].append({"kind": "length", "unit": "chars"})
    values["pairs"].append({"strategy": "longest", "scorer": "length:chars"})
    # inline_below = 1: shard even this little work
    values["runner"] = {"kind": kind, "batch_prompts": 8, "shards": 3, "workers": 2, "inline_below": 1}
    values["dedup"] = {"semantic": False}  # (MiniLM in every worker: slow, and tested elsewhere)
    pipeline = Pipeline(parse_config(values, tmp_path), tmp_path / "data")
    assert isinstance(pipeline.shards, ProcessPool if kind == "processes" else InProcess)
    state = pipeline.run_all()
    pipeline.close()
    with Lake(tmp_path / "data" / "lake", read_only=True) as lake:
        ids = {table: sorted(lake.query(f"SELECT {key} FROM {table}")[key].to_list()) for table, key in KEYS.items()}
        ids["reject_reasons"] = sorted(lake.query("SELECT location || ': ' || reason AS r FROM rejects")["r"])
        ids["own_checks"] = lake.query("SELECT count(*) AS n FROM pair_audits a JOIN pairs p USING (pair_id) "
                                       "WHERE p.strategy = 'longest' AND a.check_name = 'length_ratio'")["n"][0]
    return ids, state.counts


def test_processes_write_the_rows_of_one_process(tmp_path, monkeypatch):
    (tmp_path / "one").mkdir()
    (tmp_path / "pool").mkdir()
    alone, counts_alone = _run(tmp_path / "one", "threads", monkeypatch)
    pooled, counts_pooled = _run(tmp_path / "pool", "processes", monkeypatch)
    assert pooled == alone
    assert counts_pooled == counts_alone
    assert len(alone["pairs"]) >= 20 and len(alone["pair_audits"]) > len(alone["pairs"])
    assert alone["own_checks"] > 0  # the plugin strategy's pairs, audited by its own check in the workers
    assert counts_alone["prompts_read"] == 27 + 6  # the repeated prompts count once
    assert any("line 31" in reason for reason in alone["reject_reasons"])  # the broken row, located
    assert any("line 6 completions[2]" in reason for reason in alone["reject_reasons"])


def _fails(value: int) -> int:
    if value == 2:
        raise ValueError("shard 2 failed")
    return value * 10


def test_process_pool_keeps_order_and_raises_a_failed_shard():
    pool = ProcessPool(count=3, workers=2)
    try:
        assert pool.map(_fails, [(1,), (3,), (5,)]) == [10, 30, 50]
        started = pool.start(_fails, [(4,), (2,)])
        with pytest.raises(ValueError, match="shard 2 failed"):
            started.results()
        assert pool.map(_fails, [(7,)]) == [70]  # the pool goes on after a failed shard
    finally:
        pool.close()


def test_sharded_signatures_are_those_of_one_call():
    from curate.dedup.config import DedupConfig
    from curate.dedup.minhash import sign_items
    from curate.runtime.shards import sharded_signatures

    rng = random.Random(3)
    words = "a pair of texts shares some words with its neighbours and differs in others entirely".split()
    items = [tuple(" ".join(rng.choice(words) for _ in range(rng.randint(1, 25))) for _ in range(3)) for _ in range(50)]
    config = DedupConfig()
    one = sign_items(items, config, 3)
    assert one.shape == (50, config.num_perm)
    pool = ProcessPool(count=4, workers=2, inline_below=1)
    try:
        for shards in (InProcess(4), InProcess(1), pool):
            assert (sharded_signatures(shards, config, 3, items) == one).all()
            assert sharded_signatures(shards, config, 3, []).shape == (0, config.num_perm)
    finally:
        pool.close()


def _pid() -> int:
    import os

    return os.getpid()


WORKERS_OF_A_KILLED_RUN = """
import sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from curate.runtime.shards import ProcessPool
import test_process_runner
if __name__ == "__main__":
    pool = ProcessPool(count=2, workers=2)
    print(*pool.map(test_process_runner._pid, [(), ()]), flush=True)
    time.sleep(60)
"""


def test_a_killed_run_leaves_no_worker_behind(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(WORKERS_OF_A_KILLED_RUN.format(root=str(EXAMPLES.parent.parent), tests=str(Path(__file__).parent)))
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in run.stdout.readline().split()]
    assert len(workers) >= 1 and run.pid not in workers
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
    for pid in alive:  # leave none behind, whatever the verdict
        os.kill(pid, signal.SIGKILL)
    assert alive == []
