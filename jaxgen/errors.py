"""The errors a user can cause and fix: bad input, not a bug.

Every command catches `UserError` at its entry point (`jaxgen.cli`) and prints
its message as one line with exit status 2; anything else is a bug and keeps
its traceback. Each subclass also derives from the builtin a caller would
expect (ValueError, FileExistsError, ...), so library users can catch either.
Messages name the bad input and the fix, on one line.
"""
from __future__ import annotations


class UserError(Exception):
    """An expected error caused by the input (data, config, checkpoint, pickle, paths)."""


class ConfigError(UserError, ValueError):
    """A config value or command-line flag that cannot work (e.g. batch_size=0)."""


class OutputError(UserError, FileExistsError):
    """An output folder holds files jaxgen did not write, or was written by another config."""


class InputMissing(UserError, FileNotFoundError):
    """A path the user named does not exist."""
