"""The one logger of the library: `logger = logging.getLogger("jaxgen")`.

Library code reports progress lines, notes and warnings with `logger.info(...)` /
`logger.warning(...)`; it never adds handlers or sets levels. A command turns the lines on
(`jaxgen.commands.common.run_main` / `run_absl`, a bench script itself):

  with lines_to_stdout():
      pack_dataset(...)        # "pack: images to ...: 32/32 (100%) ..." on stdout, as print would

Without that, as in the tests, the records go up to Python's root logger, whose default
level (WARNING) drops the info lines: a library call is quiet unless its caller asks. Tests
read the lines with pytest's `caplog` (`caplog.set_level(logging.INFO, logger="jaxgen")`).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

logger = logging.getLogger("jaxgen")


class StdoutLines(logging.Handler):
    """Prints each record's bare message to the current `sys.stdout`, flushed: the lines look
    exactly as the `print(line, flush=True)` they replace (and follow `redirect_stdout`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), flush=True)
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


@contextlib.contextmanager
def lines_to_stdout() -> Iterator[logging.Logger]:
    """Inside: the jaxgen logger prints its INFO and higher records, bare ("%(message)s"), to
    stdout, and only there (propagate off, so absl's root handler does not print them again).
    On leaving, the logger is as it was (so a test that runs a command leaves `caplog` working).
    Nested (a command run inside another), the outer one prints: each line once."""
    if any(isinstance(h, StdoutLines) for h in logger.handlers):
        yield logger
        return
    handler = StdoutLines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
