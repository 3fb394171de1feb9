"""Errors a user can cause and fix; the CLI prints them as one line, without a traceback."""


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
