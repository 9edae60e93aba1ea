"""What every command does around its main: expected errors as one line, exit status 2.

  python -m jaxgen pack ...              # a UserError prints `error: <message>` and exits 2
  JAXGEN_DEBUG=1 python train.py ...     # the same error with its full traceback

`run_main(main)` wraps an argparse `main()` (`command_parser` makes every parser the same
way); `run_absl(main, parse)` is `absl.app.run` for the absl commands (train, evolve,
evaluate), whose `parse` reads one `absl.flags.FlagValues` of the command (`parse_flags`).
Both print the library's log lines (the "jaxgen" logger, `jaxgen.utils.logger`) to stdout
while the command runs, each as the bare message.
An exception that is not a `jaxgen.errors.UserError` is a bug and keeps its traceback. A
`--config.<field>=value` naming a field the config does not have fails inside the flag
parsing; it is reported as one line that names the flag and the config file. A training
run stopped by SIGTERM, SIGINT or SIGUSR1 (`jaxgen.errors.TrainingStopped`, raised once its
checkpoint is saved) prints one line naming the signal, the step and kimg saved and the
command that resumes it, and exits with status 75 (EX_TEMPFAIL: unfinished, run it again).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from typing import Any, Callable, Iterator, List, NoReturn, Optional, Sequence

import jax
from absl import app, flags, logging

from jaxgen.config import load_config
from jaxgen.errors import TrainingStopped, UserError
from jaxgen.utils.logger import lines_to_stdout

DEBUG_ENV = "JAXGEN_DEBUG"
CACHE_ENV = "JAXGEN_JAX_CACHE"
HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull", "-?")


def use_compile_cache() -> Optional[str]:
    """Keep compiled XLA programs in $JAXGEN_JAX_CACHE (default ~/.cache/jaxgen/xla; '' = off).

    Every command calls it first: a resumed run, the pipeline's four fine-tunes and the
    utility benchmark's nine classifiers of one config compile their steps once (a cold
    32 px StyleGAN2 step set takes minutes on 2 CPU cores). Returns the folder used."""
    cache = os.environ.get(CACHE_ENV, os.path.expanduser("~/.cache/jaxgen/xla"))
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return cache or None


def debugging() -> bool:
    """True when $JAXGEN_DEBUG asks for tracebacks (any value but '', '0', 'false')."""
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def fail(message: str) -> NoReturn:
    """Print `error: message` (one line) to stderr and exit with status 2."""
    line = " ".join(str(message).split())     # one line, whatever the message held
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.exit(2)


def stopped(stop: TrainingStopped) -> NoReturn:
    """Print the stop's line (signal, step, kimg, checkpoint) and the command that resumes the
    run, this process's own command line, to stderr; exit with `stop.exit_status` (75)."""
    line = " ".join(str(stop).split())
    print(f"{line}; to resume, run the same command again: {shlex.join(sys.orig_argv)}",
          file=sys.stderr, flush=True)
    sys.exit(stop.exit_status)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Inside: a UserError becomes one line and exit status 2 (unless debugging), a
    TrainingStopped its line and exit status 75 (`stopped`); anything else passes."""
    try:
        yield
    except UserError as e:
        if debugging():
            raise
        fail(str(e))
    except TrainingStopped as e:
        stopped(e)


def run_main(main: Callable[[], object]) -> object:
    """`main()`'s result, its expected errors as one line (`one_line_errors`), the library's
    log lines printed to stdout meanwhile (`lines_to_stdout`)."""
    with lines_to_stdout(), one_line_errors():
        return main()


def run_absl(main: Callable[[Any], object], parse: Callable[[List[str]], Any],
             config_flags: Sequence[str] = ("config",)) -> None:
    """`absl.app.run(main, flags_parser=parse)`: `parse(sys.argv)` reads the flags and its result
    is main's argument; main starts with the XLA compile cache on and absl's log at WARNING.
    Expected errors are one line (`one_line_errors`); so is an exception of
    the flag parsing, a bad `--<config flag>.<field>` override above all (`override_error`)."""
    def parse_or_fail(argv: List[str]) -> Any:
        try:
            return parse(argv)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            if isinstance(e, UserError) or debugging():
                raise
            fail(override_error(sys.argv[1:], config_flags) or f"could not parse the flags: {e}")

    def started(parsed: Any) -> object:
        use_compile_cache()
        logging.set_verbosity(logging.WARNING)   # after app.run's own logging set-up
        return main(parsed)

    with lines_to_stdout(), one_line_errors():
        app.run(started, flags_parser=parse_or_fail)


def parse_flags(fv: flags.FlagValues, argv: Sequence[str], doc: str) -> flags.FlagValues:
    """Parse `argv` (the program name first) into the command's own flags `fv`: --help prints
    `doc` and the flags (exit 0); an unknown or bad flag, or an argument that is no flag, is one
    line with exit status 2. absl's own flags (logging) are then marked parsed, at their defaults."""
    if any(a in HELP_FLAGS for a in argv[1:]):
        with contextlib.suppress(BrokenPipeError):      # `--help | head`
            print(f"{doc.strip()}\n\nflags:\n{flags_help(fv)}", flush=True)
        sys.exit(0)
    fv.unparse_flags()              # a second parse in one process starts from the defaults too
    try:
        rest = fv(list(argv))
    except flags.Error as e:
        fail(str(e))
    if len(rest) > 1:
        fail(f"unexpected argument(s) {' '.join(rest[1:])}: this command takes --flags only "
             f"({argv[0]} --help lists them)")
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(list(argv[:1]))
    return fv


def flags_help(fv: flags.FlagValues) -> str:
    """The flags of `fv` as absl's --help lists them (name, help, default), without module headers."""
    lines = fv.get_help(prefix="  ", include_special_flags=False).splitlines()
    return "\n".join(line for line in lines if line.startswith("    "))


def command_parser(name: str, doc: str, **kwargs) -> argparse.ArgumentParser:
    """The argparse parser of command `name`, made the project's way: prog `python -m jaxgen
    <name>`; the description is the first paragraph of `doc` (the command module's docstring)
    and the rest of it (its examples) the epilog, both printed as written. Long flags are
    snake_case (`--num_per_class`) and take `--flag=value` or `--flag value`."""
    head, _, rest = doc.strip().partition("\n\n")
    return argparse.ArgumentParser(prog=f"python -m jaxgen {name}", description=head, epilog=rest or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def dashed_alias(p: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Also accept the dashed spelling of the snake_case `flag` (`--num-per-class` for
    `--num_per_class`), as earlier versions did; hidden from --help. kwargs: its type or action."""
    p.add_argument(flag.replace("_", "-"), dest=flag[2:], default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                   **kwargs)


def override_error(argv: Sequence[str], config_flags: Sequence[str] = ("config",)) -> Optional[str]:
    """The message for the first `--<flag>.<field>=v` whose field the config lacks, else None."""
    for flag in config_flags:
        spec = _flag_value(argv, flag)
        if spec is None:
            continue
        try:
            config = load_config(spec)
        except Exception:  # noqa: BLE001 - the config itself is broken: absl's error stands
            return None
        for arg in argv:
            if arg.startswith(f"--{flag}.") and "=" in arg:
                key = arg[len(flag) + 3:].split("=", 1)[0]
                missing = _missing_field(config, key)
                if missing:
                    return (f"{arg.split('=', 1)[0]}: {spec} has no field {missing!r}"
                            f" (fields there: {', '.join(sorted(_fields_at(config, missing)))})")
    return None


def _flag_value(argv: Sequence[str], flag: str) -> Optional[str]:
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{flag}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _missing_field(config, key: str) -> Optional[str]:
    """The first prefix of dotted `key` that `config` does not have ('data.nope'), or None."""
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        if not hasattr(node, "keys") or part not in node.keys():
            return ".".join(parts[:i + 1])
        node = node[part]
    return None


def _fields_at(config, missing: str) -> List[str]:
    node = config
    for part in missing.split(".")[:-1]:
        node = node[part]
    return list(node.keys())
