"""The nightly deployment: `curate serve` against a Prefect server on loopback, runs triggered."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from curate.lake.catalog import Lake

pytestmark = pytest.mark.slow
PREFECT = str(Path(sys.executable).parent / "prefect")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(check, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _start(command, env, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def test_served_deployment_runs_and_second_run_adds_nothing(tmp_path):
    # imported completions: the served flow is under test here, not generation (no engine to load twice)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({
        "prompt": f"What is {i} + {i}?", "task": "math", "reference_answer": str(2 * i),
        "completions": [{"text": f"{i} + {i} = {2 * i}. The answer is {2 * i}."},
                        {"text": f"{i} + {i} = {2 * i + 1}. The answer is {2 * i + 1}."}]}) + "\n" for i in range(4)))
    config = tmp_path / "run.toml"
    config.write_text(f'name = "test"\ngenerators = []\n[[inputs]]\npath = "{prompts}"\n[[scorers]]\n'
                      'kind = "math_verify"\n[[pairs]]\nstrategy = "margin"\nscorer = "math_verify"\n'
                      "[dedup]\nsemantic = false\n")
    data = tmp_path / "data"
    url = f"http://127.0.0.1:{_free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": url.split(":")[2].split("/")[0]}
    server = _start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", env["PREFECT_SERVER_API_PORT"]],
                    env, tmp_path / "server.log")
    served = None
    try:
        _wait_for(lambda: _healthy(url), "the Prefect server")
        served = _start([sys.executable, "-m", "curate.cli.main", "serve", str(config), "--data-dir", str(data),
                         "--cron", "0 3 * * *"], env, tmp_path / "serve.log")

        def trigger() -> subprocess.CompletedProcess:
            return subprocess.run([PREFECT, "deployment", "run", "build/nightly", "--watch",
                                   "--watch-timeout", "300"], env=env, capture_output=True, text=True, timeout=400)

        _wait_for(lambda: subprocess.run([PREFECT, "deployment", "inspect", "build/nightly"], env=env,
                                         capture_output=True).returncode == 0, "the deployment")
        first = trigger()
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:] + (tmp_path / "serve.log").read_text()[-3000:]
        second = trigger()
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    finally:
        if served is not None:
            _stop(served)
        _stop(server)

    with Lake(data / "lake", read_only=True) as lake:
        runs = lake.query("SELECT status, counts_json FROM runs ORDER BY started_at")
    assert runs["status"].to_list() == ["completed", "completed"]
    first_counts, second_counts = (json.loads(c) for c in runs["counts_json"])
    assert first_counts["candidates_imported_new"] > 0 and first_counts["prompts_new"] > 0
    assert first_counts["scores_new"] > 0 and first_counts["pairs_new"] > 0
    assert second_counts.get("candidates_imported_new", 0) == 0 and second_counts["prompts_new"] == 0
    assert second_counts.get("scores_new", 0) == 0 and second_counts.get("pairs_new", 0) == 0
