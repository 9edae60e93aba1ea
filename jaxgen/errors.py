"""The errors a user can cause and fix: bad input, not a bug.

Every command catches `UserError` at its entry point (`jaxgen.commands.common`) and prints
its message as one line with exit status 2; anything else is a bug and keeps
its traceback. Each subclass also derives from the builtin a caller would
expect (ValueError, FileExistsError, ...), so library users can catch either.
Messages name the bad input and the fix, on one line. `TrainingStopped` is no
error: a run that saved a checkpoint on SIGTERM/SIGINT/SIGUSR1 and exits with
status 75 to be resumed.
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


EXIT_STOPPED = 75   # sysexits.h EX_TEMPFAIL: "a temporary failure; retry later"


class TrainingStopped(BaseException):
    """A training run stopped on a signal (SIGTERM, SIGINT, SIGUSR1) after saving a checkpoint.

    Not an error: the run is whole up to that step, and the same command resumes it exactly.
    The entry points (`jaxgen.commands.common`) print its message as one line and exit with `exit_status`,
    EXIT_STOPPED = 75 (EX_TEMPFAIL) for every signal: one status that a job script or a
    scheduler's requeue rule can test for "unfinished but resumable", distinct from 0 (done),
    1 (a bug), 2 (a UserError) and 128+N (killed by signal N before anything was saved, e.g.
    143 for a SIGTERM that came before the run was training); the message names the signal.
    A BaseException (like KeyboardInterrupt) so that no `except Exception` on the way up takes
    it for a failure and carries on.
    """
    exit_status = EXIT_STOPPED

    def __init__(self, message: str, signal_name: str = "", step: int = -1):
        super().__init__(message)
        self.signal_name, self.step = signal_name, step
