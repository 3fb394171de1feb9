"""Errors a user can cause and fix; the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """A bad file, config or environment, with what to do about it in the message."""
