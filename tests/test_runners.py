"""The flow's task runner from [runner]: threads, Ray kept inside the data dir, clear errors."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from curate.config import RunnerConfig
from curate.errors import UserError
from curate.runtime.ray_cluster import RAY_TMPDIR_MAX, check_reachable, contain_ray
from flows.runners import task_runner_for

RAY_VARS = ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE",
            "RAY_AUTH_TOKEN_PATH")


@pytest.fixture
def clean_ray_env():
    """No RAY_* variables during the test, and none of those it sets after it."""
    saved = {name: os.environ.pop(name) for name in RAY_VARS if name in os.environ}
    yield
    for name in RAY_VARS:
        os.environ.pop(name, None)
    os.environ.update(saved)


def test_threads_runner(tmp_path):
    runner = task_runner_for(RunnerConfig(kind="threads", workers=3), tmp_path)
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert runner._max_workers == 3
    assert not (tmp_path / "ray").exists()


def test_local_ray_is_kept_in_the_data_dir(tmp_path, clean_ray_env):
    data = tmp_path / ("a-long-data-dir-name-" * 3)  # longer than Ray's socket paths allow
    runner = task_runner_for(RunnerConfig(kind="ray", workers=2), data)
    assert runner.init_kwargs["num_cpus"] == 2 and runner.init_kwargs["include_dashboard"] is False
    assert runner.address is None
    tmpdir = os.environ["RAY_TMPDIR"]
    assert len(tmpdir) <= RAY_TMPDIR_MAX
    assert os.path.realpath(tmpdir) == str((data / "ray").resolve())
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert os.environ["RAY_AUTH_MODE"] == "token"
    token = data / "ray" / "auth_token"
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(token.resolve())
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) == 64
    os.unlink(tmpdir)  # the /tmp link


def test_values_the_user_set_win(tmp_path, clean_ray_env):
    os.environ.update(RAY_TMPDIR="/tmp/mine", RAY_AUTH_MODE="disabled")
    contain_ray(tmp_path, local=True)
    assert os.environ["RAY_TMPDIR"] == "/tmp/mine"
    assert os.environ["RAY_AUTH_MODE"] == "disabled"
    assert not (tmp_path / "ray" / "auth_token").exists()
    assert not [p for p in Path("/tmp").glob("curate-ray-*") if os.path.realpath(p).startswith(str(tmp_path))]


def test_cluster_address_must_answer(tmp_path, clean_ray_env):
    os.environ["RAY_TMPDIR"] = str(tmp_path)  # no /tmp link for this test
    with socket.socket() as server:  # an address that answers, then one that does not
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_reachable(f"ray://127.0.0.1:{port}")
        runner = task_runner_for(RunnerConfig(kind="ray", address=f"127.0.0.1:{port}"), tmp_path)
        assert runner.address == f"127.0.0.1:{port}" and runner.init_kwargs == {"namespace": "prefect"}
    with pytest.raises(UserError, match=f"cannot reach the Ray cluster at ray://127.0.0.1:{port}"):
        task_runner_for(RunnerConfig(kind="ray", address=f"ray://127.0.0.1:{port}"), tmp_path)
    with pytest.raises(UserError, match="give host:port"):
        check_reachable("headnode")
    check_reachable("auto")  # Ray finds the cluster this machine is in


def test_a_built_ray_runner_checks_the_address_again_each_time_it_starts(tmp_path, clean_ray_env):
    os.environ["RAY_TMPDIR"] = str(tmp_path)
    with socket.socket() as server:  # up when the deployment is served...
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        runner = task_runner_for(RunnerConfig(kind="ray", address=f"127.0.0.1:{port}"), tmp_path)
    for started in (runner, runner.duplicate()):  # ...gone when a run starts it (Prefect duplicates runners)
        with started:
            assert started.unreachable == f"cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused)"


@pytest.mark.slow
@pytest.mark.timeout(600)  # Ray on its own retries for minutes; the message below says we did not
def test_a_flow_run_against_a_gone_cluster_fails_at_once_with_one_line(tmp_path, clean_ray_env, tiny_generator):

    from flows.build import build_flow
    from tests.helpers import write_config, write_prompts

    os.environ["RAY_TMPDIR"] = str(tmp_path)
    config = write_config(tmp_path / "run.toml", write_prompts(tmp_path / "prompts.jsonl"), tiny_generator, None,
                          n=1, export=None)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        config.write_text(config.read_text() + f'\n[runner]\nkind = "ray"\naddress = "{address}"\n')
        served = build_flow(config, tmp_path / "data")  # what `curate serve` builds, once
    state = served(str(config), str(tmp_path / "data"), return_state=True)
    assert state.is_failed() or state.is_crashed()
    assert f"cannot reach the Ray cluster at {address}" in state.message, state.message
    assert not (tmp_path / "data" / "lake").exists()  # the run stopped before it began


def _shard_work(index: int, marks: str) -> int:
    import time
    from pathlib import Path

    if index == 1:
        raise ValueError("shard 1 is broken")
    time.sleep(0.5)
    (Path(marks) / f"done-{index}").touch()
    return index * 10


@pytest.mark.slow
def test_a_failed_shard_fails_the_map_after_every_shard_ended(tmp_path):
    from prefect import flow

    from flows.runners import TaskShards

    @flow
    def mapped(calls):
        return TaskShards(4).map(_shard_work, calls)

    @flow
    def all_good():
        return TaskShards(2).map(_shard_work, [(0, str(tmp_path)), (2, str(tmp_path))])

    assert all_good() == [0, 20]
    with pytest.raises(ValueError, match="shard 1 is broken"):
        mapped([(i, str(tmp_path)) for i in range(4)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done-0", "done-2", "done-3"]


def test_old_ray_sessions_are_pruned_but_never_one_in_use(tmp_path, clean_ray_env):
    sessions = tmp_path / "ray" / "ray"
    dead = 2**22 + 1  # above Linux's largest pid: never alive
    names = [f"session_2026-01-0{day}_10-00-00_000000_{dead}" for day in range(1, 8)]
    names[0] = f"session_2026-01-01_09-00-00_000000_{os.getpid()}"  # the oldest, but its process is alive
    for name in names:
        (sessions / name / "logs").mkdir(parents=True)
        (sessions / name / "logs" / "raylet.out").write_text("log")
    (sessions / "session_latest").symlink_to(sessions / names[1])  # old, but what Ray calls the latest
    contain_ray(tmp_path, local=True)
    left = sorted(p.name for p in sessions.iterdir() if p.name.startswith("session_"))
    assert left == sorted([names[0], names[1], *names[-3:], "session_latest"])
    assert (tmp_path / "ray" / "auth_token").exists()  # the rest of the ray folder stays
    link = os.environ["RAY_TMPDIR"]
    if link.startswith("/tmp/curate-ray-"):
        os.unlink(link)
