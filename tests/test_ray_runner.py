"""The build flow on a local Ray (2 CPUs, prefect-ray) gives the rows of the thread runner.

Two fresh data dirs, the same config but for [runner]: the ids of every prompt, candidate, score,
pair and dedup drop must match, and so must the scores. Ray must stay inside the data dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curate.lake.catalog import Lake

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _run(config: Path, data: Path, runner: str, home: Path) -> subprocess.CompletedProcess:
    # A process per run: Ray and the Prefect runner are set up once per process, as in `curate run`.
    env = {**os.environ, "HOME": str(home)}
    for key in [k for k in env if k.startswith("RAY_")]:
        del env[key]
    return subprocess.run([sys.executable, "-m", "curate.cli.main", "run", str(config), "--data-dir", str(data),
                           "--runner", runner], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)


def _rows(data: Path) -> dict:
    with Lake(data / "lake", read_only=True) as lake:
        return {
            "prompts": set(lake.read("prompts")["prompt_id"]),
            "candidates": set(lake.read("candidates")["candidate_id"]),
            "scores": set(lake.query("SELECT score_id, score, status FROM scores").iter_rows()),
            "pairs": set(lake.read("pairs")["pair_id"]),
            "audits": set(lake.read("pair_audits")["audit_id"]),
            "own_checks": lake.query("SELECT count(*) AS n FROM pair_audits WHERE check_name = 'length_ratio'")["n"][0],
            "drops": set(lake.query("SELECT drop_id, kept_id FROM dedup_drops").iter_rows()),
        }


# Imported completions (no generation: the runner's work is the shards, not the engine), rated so
# that all-pairs margins and the verifiers both have work; near-duplicate texts for dedup.
ROWS = [
    {"prompt": "What is 6 * 7?", "task": "math", "reference_answer": "42", "completions": [
        {"text": "6 * 7 = 42. The answer is 42.", "rating": 9}, {"text": "6 * 7 = 36. The answer is 36.", "rating": 4},
        {"text": "Six sevens make 42, so the answer is 42.", "rating": 8}, {"text": "The answer is 13.", "rating": 2}]},
    {"prompt": "What is 9 + 10?", "task": "math", "reference_answer": "19", "completions": [
        {"text": "9 + 10 = 19. The answer is 19.", "rating": 8}, {"text": "9 + 10 = 21. The answer is 21.", "rating": 5},
        {"text": "Nine plus ten is 19. The answer is 19.", "rating": 7}]},
    {"prompt": "Describe the sea in fewer than 10 words.", "task": "instruction",
     "constraints": [{"type": "length_constraints:number_words", "kwargs": {"relation": "less than", "num_words": 10}}],
     "completions": [{"text": "Vast, blue and restless.", "rating": 9},
                     {"text": "The sea is a vast body of salty water that covers most of the planet.", "rating": 3},
                     {"text": "Blue, vast, restless water.", "rating": 8}]},
    {"prompt": "Say hello to a friend.", "task": "chat", "completions": [
        {"text": "Hello, my friend! How have you been?", "rating": 9}, {"text": "Hi.", "rating": 4},
        {"text": "Hello there, friend! How have you been lately?", "rating": 8}]},
]


def test_ray_runner_gives_the_thread_runners_rows(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    config = tmp_path / "run.toml"
    config.write_text(f"""
name = "ray-test"
generators = []
# a scorer kind and a strategy of plugins (tests/plugins/): Ray's workers import their modules
plugins = ["tests.plugins.length_scorer", "tests.plugins.longest_strategy"]
[[inputs]]
path = "{prompts}"
[[scorers]]
kind = "math_verify"
[[scorers]]
kind = "constraints"
[[pairs]]
strategy = "margin"
scorer = "math_verify"
[[pairs]]
strategy = "margin"
scorer = "imported:rating"
pairing = "all_pairs_above_margin"
[[scorers]]
kind = "length"
unit = "chars"
[[pairs]]
strategy = "longest"
scorer = "length:chars"
min_ratio = 1.2
[runner]
workers = 2
shards = 3
inline_below = 0  # ship even this little work to Ray: the audit's checks and signatures too
[dedup]
minhash = false
semantic_threshold = 0.5
""")
    home = tmp_path / "home"
    home.mkdir()

    old_sessions = tmp_path / "ray" / "ray" / "ray"  # earlier runs' sessions: all but the newest 3 go
    for day in range(1, 6):
        (old_sessions / f"session_2020-01-0{day}_10-00-00_000000_{2**22 + 1}" / "logs").mkdir(parents=True)

    threads = _run(config, tmp_path / "threads", "threads", home)
    assert threads.returncode == 0, threads.stderr[-3000:]
    ray = _run(config, tmp_path / "ray", "ray", home)
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert "Ray (local, 2 CPUs), 3 shards per stage" in ray.stderr + ray.stdout

    expected, got = _rows(tmp_path / "threads"), _rows(tmp_path / "ray")
    assert expected["pairs"] and expected["scores"] and expected["drops"] and expected["own_checks"]
    assert got == expected

    # Ray's sessions, logs and auth token live in the data dir; nothing under ~/.ray.
    ray_dir = tmp_path / "ray" / "ray"
    sessions = [p for p in ray_dir.glob("ray/session_*") if not p.is_symlink()]
    assert sorted(p.name[8:18] for p in sessions if p.name.startswith("session_2020")) == [
        "2020-01-03", "2020-01-04", "2020-01-05"]
    sessions = [p for p in sessions if not p.name.startswith("session_2020")]
    assert len(sessions) == 1, sorted(p.name for p in ray_dir.iterdir())
    logs = "".join(p.read_text(errors="replace") for p in sessions[0].glob("logs/worker-*.out"))
    # the shard tasks ran on Ray's workers, the plugin scorer's and strategy's among them
    assert all(task in logs for task in ("score_shard", "embed_shard", "audit_pairs")), logs[-2000:]
    assert (ray_dir / "auth_token").stat().st_mode & 0o777 == 0o600
    assert not (home / ".ray").exists()
    for link in Path("/tmp").glob("curate-ray-*"):  # the short link to this test's long data dir
        if os.path.realpath(link).startswith(str(tmp_path)):
            link.unlink()
