"""jaxgen.commands.common, around every command: an expected error is one line on stderr with exit status 2,
a bug keeps its traceback; bad config overrides name the field; the compile cache follows the env."""
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from jaxgen.classifiers.keras_h5 import KerasH5Error
from jaxgen.commands import common
from jaxgen.data.folder import DatasetError
from jaxgen.errors import ConfigError, UserError
from jaxgen.harness.checkpoint import CheckpointError
from jaxgen.metrics.inception import InceptionWeightsError
from jaxgen.runs import RunError
from jaxgen.stylegan2.nvidia import ConversionError
from jaxgen.utils.pickle_records import InvalidCheckpointError, UnsafePickleError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _raise(exc):
    def main():
        raise exc
    return main


def test_user_error_is_one_line_with_exit_2(capsys, monkeypatch):
    monkeypatch.delenv(common.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as e:
        common.run_main(_raise(DatasetError("no images in /data/x\n  (give --config.data.path)")))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: no images in /data/x (give --config.data.path)\n"


def test_debug_env_shows_the_traceback(monkeypatch):
    monkeypatch.setenv(common.DEBUG_ENV, "1")
    with pytest.raises(ConfigError, match="batch"):
        common.run_main(_raise(ConfigError("batch_size=0 must be >= 1")))


def test_bugs_are_not_hidden(monkeypatch):
    monkeypatch.delenv(common.DEBUG_ENV, raising=False)
    with pytest.raises(ZeroDivisionError):
        common.run_main(_raise(ZeroDivisionError("a bug")))
    assert common.run_main(lambda: 7) == 7


def test_every_expected_error_class_is_a_user_error():
    for cls in (KerasH5Error, CheckpointError, InceptionWeightsError, RunError, ConversionError,
                InvalidCheckpointError, UnsafePickleError, DatasetError, ConfigError):
        assert issubclass(cls, UserError), cls


def test_unknown_override_names_the_field_and_the_config():
    argv = ["--config", "configs/acne.py:micro", "--config.data.skip_corupt=True", "--workdir", "x"]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        msg = common.override_error(argv)
        assert common.override_error(["--config=configs/acne.py:micro", "--config.train.batch_size=2"]) is None
        assert "'nope'" in common.override_error(["--config=configs/acne.py", "--config.nope.x=1"])
    finally:
        os.chdir(cwd)
    assert msg.startswith("--config.data.skip_corupt: configs/acne.py:micro has no field 'data.skip_corupt'")
    assert "skip_corrupt" in msg   # the real field is listed


def test_train_py_bad_flag_is_one_line_and_creates_nothing(tmp_path):
    """The whole command as a user runs it: one line on stderr, exit 2, no workdir."""
    workdir = tmp_path / "run"
    env = dict(os.environ, JAXGEN_JAX_CACHE="")
    env.pop(common.DEBUG_ENV, None)
    r = subprocess.run([sys.executable, "train.py", "--config", "configs/acne.py:micro",
                        "--config.data.nonexistent=1", "--workdir", str(workdir)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["error: --config.data.nonexistent: configs/acne.py:micro has no field "
                     f"'data.nonexistent' (fields there: {lines[0].split('fields there: ')[1]}"], lines
    assert not workdir.exists()


def test_compile_cache_follows_the_env(monkeypatch, tmp_path):
    """Every command keeps compiled programs in $JAXGEN_JAX_CACHE; '' turns the cache off."""
    before = jax.config.jax_compilation_cache_dir
    try:
        monkeypatch.setenv(common.CACHE_ENV, str(tmp_path / "xla"))
        assert common.use_compile_cache() == str(tmp_path / "xla")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
        monkeypatch.setenv(common.CACHE_ENV, "")
        assert common.use_compile_cache() is None
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")  # left as it was
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
