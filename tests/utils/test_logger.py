"""The jaxgen logger: quiet in the library, bare lines on stdout inside a command, restored after."""
import contextlib
import io
import logging

from jaxgen.commands.common import run_main
from jaxgen.utils.logger import lines_to_stdout, logger


def test_inside_a_command_each_line_is_printed_bare_to_stdout_once(capsys):
    def main():
        logger.info("pack: wrote out: 1 shard(s)")
        logger.warning("evolve: WARNING healthy: only 2/4 images")
        with lines_to_stdout():                     # a command run inside another: still once
            logger.info("nested")
        return 0

    assert run_main(main) == 0
    out, err = capsys.readouterr()
    assert out == "pack: wrote out: 1 shard(s)\nevolve: WARNING healthy: only 2/4 images\nnested\n"
    assert err == ""


def test_lines_follow_redirect_stdout_and_the_logger_is_restored(caplog):
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), lines_to_stdout():
        logger.info("a line")
    assert buf.getvalue() == "a line\n"
    assert (logger.level, logger.propagate, logger.handlers) == (level, propagate, handlers)
    caplog.set_level(logging.INFO, logger="jaxgen")
    logger.info("seen by caplog")                   # outside a command: records reach the root
    assert caplog.messages == ["seen by caplog"]


def test_without_a_command_info_lines_are_not_printed(capsys):
    logger.info("quiet")
    assert capsys.readouterr() == ("", "")
