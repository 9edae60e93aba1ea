"""evaluate.py's modes: each takes only its own flags; the earlier spellings still reach their mode."""
import os
import pathlib
import subprocess
import sys

import pytest

from jaxgen.commands import evaluate
from jaxgen.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[2]


def _evaluate(*argv):
    env = dict(os.environ, JAXGEN_JAX_CACHE="")
    env.pop("JAXGEN_DEBUG", None)
    return subprocess.run([sys.executable, "evaluate.py", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_flag_of_another_mode_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        evaluate.parse(["evaluate.py", "utility", "--holdout", "h", "--out", "o"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == ("error: --holdout is a flag of datasheet, not of utility "
                                         "(python evaluate.py utility --help lists its flags)\n")
    with pytest.raises(SystemExit) as e:
        evaluate.parse(["evaluate.py", "fid", "--nonsense=1"])
    assert e.value.code == 2 and capsys.readouterr().err == "error: Unknown command line flag 'nonsense'\n"


def test_old_spellings_map_to_their_mode(capsys):
    cases = {("--utility", "--real_train", "r"): ["utility", "--real_train", "r"],
             ("--datasheet=true", "--synthetic", "s"): ["datasheet", "--synthetic", "s"],
             ("--compare", "c.py:tiny", "--compare.seed=1"): ["compare", "--config", "c.py:tiny", "--config.seed=1"],
             ("--classifier", "a,b", "--test", "t"): ["classifier", "--classifier", "a,b", "--test", "t"],
             ("--checkpoint", "runs/x"): ["fid", "--checkpoint", "runs/x"]}
    for old, new in cases.items():
        assert evaluate.new_spelling(["evaluate.py", *old]) == ["evaluate.py", *new]
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"earlier spelling of `python evaluate.py {new[0]} ...`" in err
    assert evaluate.new_spelling(["evaluate.py", "utility", "--out", "o"]) == ["evaluate.py", "utility", "--out", "o"]
    assert capsys.readouterr().err == ""


def test_each_mode_checks_its_own_inputs():
    with pytest.raises(ConfigError, match="--projection_steps needs --checkpoint"):
        evaluate.main(evaluate.parse(["evaluate.py", "datasheet", "--projection_steps", "5", "--synthetic", "s",
                                      "--real", "r", "--holdout", "h", "--out", "o"]))
    with pytest.raises(ConfigError, match="classifier needs --classifier"):
        evaluate.main(evaluate.parse(["evaluate.py", "classifier", "--test", "t"]))


def test_the_old_utility_spelling_reaches_the_utility_mode():
    """The whole command as a user runs it: the note, then the utility mode's own one-line error."""
    r = _evaluate("--utility", "--real_train", "data/x")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [
        "note: `python evaluate.py --utility ...` is the earlier spelling of `python evaluate.py utility ...`; "
        "use that (the old one goes in a later release)",
        "error: utility needs --real_train, --synthetic, --test and --out"]
