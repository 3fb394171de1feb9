"""Whether a Ray cluster address answers, checked before Ray's own minutes of retries."""

from __future__ import annotations

import socket

from curate.errors import UserError


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
