"""Errors a user can cause and fix; the CLI prints them as one line, without a traceback."""

from __future__ import annotations

import tempfile
import traceback


class UserError(Exception):
    """A bad file, config or environment, with what to do about it in the message."""


def one_line(text: str) -> str:
    """`text` on one line: its lines joined by spaces, nothing else changed."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe_os_error(exc: OSError) -> str:
    """An OSError as the system says it, with the file: `Permission denied: prompts.jsonl`."""
    if not isinstance(exc, OSError):
        return str(exc)
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


# What to do about failures that come from outside curate, keyed by a piece of their message.
_HINTS = {
    "ephemeral Prefect API": "the machine may be too busy to start Prefect's server in time: raise "
                             "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or run with --no-prefect",
}


def unexpected_error_line(exc: BaseException) -> str:
    """An exception nobody anticipated, as one line: its type and message, a hint where one is
    known, and a file holding the traceback (CURATE_TRACEBACK=1 prints it instead)."""
    message = one_line(str(exc)) or "(no message)"
    hint = next((text for key, text in _HINTS.items() if key in message), None)
    try:
        with tempfile.NamedTemporaryFile("w", prefix="curate-traceback-", suffix=".txt", delete=False) as handle:
            traceback.print_exception(exc, file=handle)
        where = f"traceback in {handle.name}"
    except OSError:
        where = "CURATE_TRACEBACK=1 prints the traceback"
    return f"{type(exc).__name__}: {message}" + (f"; {hint}" if hint else "") + f" ({where})"
