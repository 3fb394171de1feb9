"""`curate query` and `curate stats` in other processes all through a `curate run`: every read
succeeds, and what each read saw is one whole snapshot of the lake."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from curate.lake import schemas
from curate.lake.catalog import Lake
from tests.helpers import write_config, write_prompts

pytestmark = pytest.mark.slow


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _counts(stats_output: str) -> tuple[int, dict[str, int]]:
    snapshot = int(re.search(r"snapshot\s+(\d+)", stats_output).group(1))  # the title may wrap
    counts = {name: int(re.search(rf"^\W*{name}\W+(\d+)\W*$", stats_output, re.M).group(1))
              for name in schemas.TABLES}
    return snapshot, counts


def test_queries_and_stats_succeed_all_through_a_run(tmp_path, curate_cli, tiny_generator):
    config = write_config(tmp_path / "run.toml", write_prompts(tmp_path / "prompts.jsonl"), tiny_generator,
                          None, n=2, chunk_size=2, export=None)
    data = tmp_path / "data"
    # --no-prefect: the same steps and commits, without the minute Prefect adds on a loaded machine
    run = subprocess.Popen([*curate_cli, "run", str(config), "--data-dir", str(data), "--no-prefect"],
                           stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True)
    reads, failures, seen = 0, [], []
    try:
        while run.poll() is None and not (data / "lake" / "catalog.sqlite").exists():
            time.sleep(0.2)
        while run.poll() is None:
            for command in (["query", "select count(*) as n, max(candidate_id) from candidates"], ["stats"]):
                result = subprocess.run([*curate_cli, *command, "--data-dir", str(data)], capture_output=True,
                                        text=True, env=_env(), timeout=120)
                if result.returncode != 0:
                    failures.append(f"{command[0]}: {result.stdout[-500:]} {result.stderr[-500:]}")
                elif command[0] == "stats":
                    seen.append(_counts(result.stdout))
                reads += run.poll() is None
        output = run.stdout.read()
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(timeout=60)
    assert run.returncode == 0, output[-3000:]
    assert not failures, failures
    assert reads >= 4, f"only {reads} reads while the run went on"
    with Lake(data / "lake", read_only=True) as lake:
        final = lake.snapshot_id()
    assert len({snapshot for snapshot, _ in seen}) >= 2 and min(s for s, _ in seen) < final, seen
    for snapshot, counts in seen:  # each read saw exactly the lake at one snapshot
        with Lake(data / "lake", snapshot=snapshot) as then:
            assert {name: then.count(name) for name in schemas.TABLES} == counts, snapshot
