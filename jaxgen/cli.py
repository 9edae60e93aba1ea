"""What every command does around its main: expected errors as one line, exit status 2.

  python train.py ...            # a UserError prints `error: <message>` and exits 2
  JAXGEN_DEBUG=1 python train.py ...   # the same error with its full traceback

`run_absl(main)` is `absl.app.run(main)` for the top-level scripts (train.py,
evolve.py, evaluate.py); `run_main(main)` wraps an argparse `main()` of a
`python -m jaxgen....` module. An exception that is not a `jaxgen.errors.UserError`
is a bug and keeps its traceback. A `--config.<field>=value` naming a field the
config does not have fails inside absl's flag parsing; it is reported as one line
that names the flag and the config file. A training run stopped by SIGTERM, SIGINT
or SIGUSR1 (`jaxgen.errors.TrainingStopped`, raised once its checkpoint is saved)
prints one line naming the signal, the step and kimg saved and the command that
resumes it, and exits with status 75 (EX_TEMPFAIL: unfinished, run it again).
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Callable, List, NoReturn, Optional, Sequence

import jax
from absl import app

from jaxgen.config import load_config
from jaxgen.errors import TrainingStopped, UserError

DEBUG_ENV = "JAXGEN_DEBUG"
CACHE_ENV = "JAXGEN_JAX_CACHE"


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


def run_main(main: Callable[[], object]) -> object:
    """`main()`'s result; a UserError becomes one line and exit status 2 (unless debugging),
    a TrainingStopped its line and exit status 75 (`stopped`)."""
    try:
        return main()
    except UserError as e:
        if debugging():
            raise
        fail(str(e))
    except TrainingStopped as e:
        stopped(e)


def run_absl(main: Callable[[List[str]], object], config_flags: Sequence[str] = ("config",)) -> None:
    """`absl.app.run(main)` with UserErrors and bad `--<config flag>.<field>` overrides as one line."""
    started = []

    def wrapped(argv):
        started.append(True)
        return main(argv)

    try:
        app.run(wrapped)
    except UserError as e:
        if debugging():
            raise
        fail(str(e))
    except TrainingStopped as e:
        stopped(e)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        if started or debugging():
            raise
        fail(override_error(sys.argv[1:], config_flags) or f"could not parse the flags: {e}")


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
