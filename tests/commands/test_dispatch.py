"""`python -m jaxgen`: the command list, an unknown command, and the old `python -m jaxgen.<module>` paths."""
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from jaxgen import __main__ as dispatch

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(*argv):
    env = dict(os.environ, JAXGEN_JAX_CACHE="")
    env.pop("JAXGEN_DEBUG", None)
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_lists_every_command_in_one_line_each():
    r = _run("-m", "jaxgen")
    assert r.returncode == 0, r.stderr[-2000:]
    listed = [ln.split()[0] for ln in r.stdout.split("commands:\n", 1)[1].splitlines()]
    assert listed == list(dispatch.COMMANDS)
    for name in dispatch.COMMANDS:      # each is a module of the command layer (not imported here)
        assert importlib.util.find_spec(f"jaxgen.commands.{name}") is not None, name


def test_unknown_command_is_one_line_with_exit_2(capsys):
    assert dispatch.main(["nope", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown command 'nope'") and "demo_faces" in err


def test_runs_a_command_with_its_flags(tmp_path, capsys):
    out = tmp_path / "faces"
    assert dispatch.main(["demo_faces", "--out", str(out), "--num_per_class", "1", "--resolution", "16",
                          "--classes", "mild", "--no_preview", "--quiet"]) == 0
    assert sorted(p.name for p in (out / "mild").iterdir()) == ["mild_00000.png"]
    with pytest.raises(SystemExit) as e:
        dispatch.main(["pack", "--help"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("usage: python -m jaxgen pack [-h]")


def test_an_absl_command_through_the_dispatcher_is_one_line():
    r = _run("-m", "jaxgen", "train", "--config", "configs/acne.py:micro", "--config.data.nope=1", "--workdir", "x")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --config.data.nope: configs/acne.py:micro has no field 'data.nope' (fields there: "
        + r.stderr.split("fields there: ")[1].strip()], r.stderr[-2000:]


def test_the_old_module_path_still_runs_the_command():
    r = _run("-m", "jaxgen.data.pack", "--help")
    assert r.returncode == 0 and "usage: python -m jaxgen pack" in r.stdout, r.stderr[-2000:]
