"""Errors that carry a message a person can act on."""

import sys


class InputError(ValueError):
    """An input that the model cannot use, with a message that says what to do instead."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged or written by an incompatible version."""


class DataError(RuntimeError):
    """A dataset that is missing or malformed; the message names the command that fixes it."""


# The exit status of a command-line tool refused by one of these errors; 1 stays Python's own for a bug.
USER_ERROR_EXIT = 2


def run_cli(body) -> int:
    """Run a command's body; a refusal with an actionable message prints as "error: ..." on stderr and exits
    with USER_ERROR_EXIT instead of a traceback. Every command-line tool of the project goes through here."""
    try:
        return body()
    except (InputError, CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USER_ERROR_EXIT
