"""Errors that carry a message a person can act on."""


class InputError(ValueError):
    """An input that the model cannot use, with a message that says what to do instead."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged or written by an incompatible version."""


class DataError(RuntimeError):
    """A dataset that is missing or malformed; the message names the command that fixes it."""
