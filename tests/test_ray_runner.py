"""The build flow on a local Ray (2 CPUs, prefect-ray) gives the rows of the thread runner.

Two fresh data dirs, the same config but for [runner]: the ids of every prompt, candidate, score,
pair and dedup drop must match, and so must the scores. Ray must stay inside the data dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from curate.lake import Lake
from tests.helpers import write_config, write_prompts

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _run(config: Path, data: Path, runner: str, home: Path) -> subprocess.CompletedProcess:
    # A process per run: Ray and the Prefect runner are set up once per process, as in `curate run`.
    env = {**os.environ, "HOME": str(home)}
    for key in [k for k in env if k.startswith("RAY_")]:
        del env[key]
    return subprocess.run([sys.executable, "-m", "curate.cli", "run", str(config), "--data-dir", str(data),
                           "--runner", runner], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)


def _rows(data: Path) -> dict:
    with Lake(data / "lake", read_only=True) as lake:
        return {
            "prompts": set(lake.read("prompts")["prompt_id"]),
            "candidates": set(lake.read("candidates")["candidate_id"]),
            "scores": set(lake.query("SELECT score_id, score, status FROM scores").iter_rows()),
            "pairs": set(lake.read("pairs")["pair_id"]),
            "drops": set(lake.query("SELECT drop_id, kept_id FROM dedup_drops").iter_rows()),
        }


def test_ray_runner_gives_the_thread_runners_rows(tmp_path, tiny_generator, tiny_reward):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    config = write_config(tmp_path / "run.toml", prompts, tiny_generator, tiny_reward, n=4, export=None)
    # All pairs of each prompt, and a threshold that random tiny-model texts reach: dedup has work
    # (its embeddings are sharded too).
    config.write_text(config.read_text() + '\n[[pairs]]\nstrategy = "margin"\nscorer = "reward:tiny"\n'
                      'pairing = "all_pairs_above_margin"\n\n[runner]\nworkers = 2\nshards = 3\n\n'
                      '[dedup]\nminhash = false\nsemantic_threshold = 0.1\n')
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
    assert expected["pairs"] and expected["scores"] and expected["drops"]
    assert got == expected

    # Ray's sessions, logs and auth token live in the data dir; nothing under ~/.ray.
    ray_dir = tmp_path / "ray" / "ray"
    sessions = [p for p in ray_dir.glob("ray/session_*") if not p.is_symlink()]
    assert sorted(p.name[8:18] for p in sessions if p.name.startswith("session_2020")) == [
        "2020-01-03", "2020-01-04", "2020-01-05"]
    sessions = [p for p in sessions if not p.name.startswith("session_2020")]
    assert len(sessions) == 1, sorted(p.name for p in ray_dir.iterdir())
    logs = "".join(p.read_text(errors="replace") for p in sessions[0].glob("logs/worker-*.out"))
    assert "score_shard" in logs and "embed_shard" in logs  # the shard tasks ran on Ray's workers
    assert (ray_dir / "auth_token").stat().st_mode & 0o777 == 0o600
    assert not (home / ".ray").exists()
    for link in Path("/tmp").glob("curate-ray-*"):  # the short link to this test's long data dir
        if os.path.realpath(link).startswith(str(tmp_path)):
            link.unlink()
