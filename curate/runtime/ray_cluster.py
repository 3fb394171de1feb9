"""The run's Ray cluster: kept inside the data dir and offline, checked before Ray's own minutes of
retries, and connected to once per process by whatever needs it first (prefect-ray's task runner,
or engine replicas, curate.generate.replicas)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from curate.errors import UserError
from curate.progress import log
from curate.runtime.leftovers import alive

# Ray builds socket paths under its temp dir (session_<time>_<pid>/sockets/plasma_store): a
# longer dir breaks the 107-byte AF_UNIX limit, so a long data dir is reached through a short link.
RAY_TMPDIR_MAX = 40
RAY_SESSIONS_KEPT = 3  # old session folders (logs, sockets) a new local Ray leaves in the data dir


def _short_ray_tmpdir(data_dir: Path) -> Path:
    target = (Path(data_dir) / "ray").resolve()
    target.mkdir(parents=True, exist_ok=True)
    if len(str(target)) <= RAY_TMPDIR_MAX:
        return target
    for stale in Path("/tmp").glob("curate-ray-*"):  # links to data dirs that are gone
        if stale.is_symlink() and not stale.exists():
            stale.unlink(missing_ok=True)
    link = Path("/tmp") / f"curate-ray-{hashlib.sha256(str(target).encode()).hexdigest()[:10]}"
    if link.is_symlink() and link.resolve() != target:
        link.unlink()
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    return link


def prune_ray_sessions(sessions_dir: Path, keep: int = RAY_SESSIONS_KEPT) -> list[Path]:
    """Remove Ray's session folders under `sessions_dir` (session_<time>_<pid>, one per Ray
    start) but the newest `keep`; one whose starting process is alive, or that session_latest
    names, stays whatever its age."""
    sessions = sorted(p for p in sessions_dir.glob("session_*") if p.is_dir() and not p.is_symlink())
    latest = sessions_dir / "session_latest"
    current = latest.resolve() if latest.is_symlink() else None
    removed = []
    for session in sessions[:max(len(sessions) - keep, 0)]:
        pid = session.name.rsplit("_", 1)[-1]
        if session.resolve() == current or (pid.isdigit() and alive(int(pid))):
            continue
        shutil.rmtree(session, ignore_errors=True)
        removed.append(session)
    return removed


def contain_ray(data_dir: Path, local: bool) -> None:
    """Ray offline and inside the data dir: temp files and sessions there, usage stats off, no
    outside probe; a local cluster gets token auth with a token kept in the data dir (Ray's
    default would write ~/.ray/auth_token). Values the user already set win."""
    if "RAY_TMPDIR" not in os.environ:
        os.environ["RAY_TMPDIR"] = str(_short_ray_tmpdir(data_dir))
    pruned = prune_ray_sessions((Path(data_dir) / "ray" / "ray").resolve())  # only ever the data dir's own
    if pruned:
        log(f"runner: removed {len(pruned)} old Ray session folder(s), kept the newest {RAY_SESSIONS_KEPT}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if local and "RAY_AUTH_MODE" not in os.environ:
        token = (Path(data_dir) / "ray" / "auth_token").resolve()
        if not token.exists():
            with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                out.write(secrets.token_hex(32))
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(token))


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A one-line error for a cluster address nobody answers at (Ray itself retries for minutes)."""
    if address == "auto":
        return
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"runner.address {address!r}: give host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from exc


def connect(address: str | None, data_dir: Path, num_cpus: int | None = None) -> None:
    """This process joins the Ray cluster at `address` ("auto", host:port, ray://...), or starts a
    local one (`num_cpus`: its CPUs, default all) when it is None; nothing when it already has
    (prefect-ray's task runner connects first under `[runner] kind = "ray"`)."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    if address:
        check_reachable(address)
    contain_ray(data_dir, local=address is None)  # before Ray is imported: it reads its settings then
    import ray

    kwargs = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
    ray.init(log_to_driver=False, **kwargs)
    log(f"ray: connected to {address or 'a local Ray'} ({int(ray.cluster_resources().get('CPU', 0))} CPUs, "
        f"{int(ray.cluster_resources().get('GPU', 0))} GPUs)")
