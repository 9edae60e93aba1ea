"""The lines the library logs (jaxgen.utils.logger), read in a test as capsys reads printed ones.

  (tests/conftest.py makes the fixture available to every test)

  def test_x(log_lines):
      run_something()
      assert "Resuming from step 5" in log_lines.read()

A command prints these lines to stdout (`lines_to_stdout`); a library call in a test prints
nothing, and pytest's caplog holds them: `read()` gives the lines logged since the last read,
each ending in a newline, which is what `capsys.readouterr().out` gave when they were prints.
"""
import logging

import pytest


class LogLines:
    """Reads (and forgets) what caplog collected of the jaxgen logger."""

    def __init__(self, caplog: pytest.LogCaptureFixture):
        self.caplog = caplog

    def read(self) -> str:
        """The messages logged since the last read, one per line."""
        text = "".join(m + "\n" for m in self.caplog.messages)
        self.caplog.clear()
        return text


@pytest.fixture
def log_lines(caplog) -> LogLines:
    """caplog at INFO for the "jaxgen" logger, read with `.read()`."""
    caplog.set_level(logging.INFO, logger="jaxgen")
    return LogLines(caplog)
