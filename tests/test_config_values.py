"""Config values and workdir paths that cannot work stop in one line before anything is built or
created (issue 28, item 8): a zero channel_max, a NaN or infinite float (it passed every range check
and failed only after a 52 s compile, leaving a workdir without a checkpoint), a --workdir below a
file, and one in a folder that cannot be written."""
import os
import pathlib
import subprocess
import sys
import time

import pytest

from jaxgen.config import load_config
from jaxgen.dcgan import train as dcgan_train
from jaxgen.errors import ConfigError, OutputError, UserError
from jaxgen.harness import validate
from jaxgen.stylegan2 import train as sg2_train
from jaxgen.utils import outputs

REPO = pathlib.Path(__file__).resolve().parents[1]


class DataLoaded(Exception):
    """Raised by the guard: validation let the run through to its data."""


@pytest.fixture
def guard(monkeypatch):
    """The trainers stop where they would load the data (no model is built)."""
    def load(cfg):
        raise DataLoaded(cfg)
    for module in (sg2_train, dcgan_train):
        monkeypatch.setattr(module, "load_dataset", load)


def _config(spec, *overrides):
    return load_config(str(REPO / "configs" / spec), overrides)


def _refused(error, config, workdir, trainer=sg2_train.train_and_evaluate):
    """The one-line message of `error` raised at once by `trainer`; no workdir is created."""
    t0 = time.perf_counter()
    with pytest.raises(error) as e:
        trainer(config, str(workdir))
    assert time.perf_counter() - t0 < 2.0
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg, msg
    assert not pathlib.Path(workdir).exists()
    return msg


@pytest.mark.parametrize("override,message", [
    ("model.channel_max=0", "config.model.channel_max=0 must be a whole number >= 1"),
    ("model.channel_base=-8", "config.model.channel_base=-8 must be a whole number >= 1"),
    ("model.z_dim=0", "config.model.z_dim=0 must be a whole number >= 1"),
    ("model.channel_base=8", "config.model.channel_base=8 gives no feature maps at 16 px"),
    ("train.g_lr=nan", "config.train.g_lr=nan must be a finite number (not NaN or infinite)"),
    ("train.r1_gamma=inf", "config.train.r1_gamma=inf must be a finite number"),
    ("ada.target=-inf", "config.ada.target=-inf must be a finite number"),
])
def test_bad_values_stop_before_the_data_and_leave_no_workdir(tmp_path, guard, override, message):
    assert message in _refused(ConfigError, _config("acne.py:micro", override), tmp_path / "run")


def test_nan_inside_a_tuple_and_in_the_dcgan(tmp_path, guard):
    cfg = _config("acne.py:micro")
    cfg.train.betas = (0.0, float("nan"))
    assert "config.train.betas[1]=nan must be a finite number" in _refused(ConfigError, cfg, tmp_path / "run")
    cfg = _config("depth_emotion.py:tiny")
    cfg.model.widths = (128, 0, 32, 16)
    assert "config.model.widths=(128, 0, 32, 16): each must be a whole number >= 1" in \
        _refused(ConfigError, cfg, tmp_path / "run", dcgan_train.train_and_evaluate)
    with pytest.raises(DataLoaded):                            # the defaults pass
        sg2_train.train_and_evaluate(_config("acne.py:micro"), str(tmp_path / "ok"))
    validate.check_finite({"a": {"b": 1.5, "c": [1, 2.0]}, "s": "nan"})   # a string 'nan' is no float


def test_a_workdir_below_a_file_is_refused(tmp_path, guard):
    f = tmp_path / "results.csv"
    f.write_text("a,b\n")
    msg = _refused(OutputError, _config("acne.py:micro"), f / "run")
    assert msg == (f"--workdir {f / 'run'} lies below {f}, which is a file, not a folder; choose a folder "
                   "with --workdir")
    assert f.read_text() == "a,b\n"
    with pytest.raises(OutputError, match="which is a file"):              # every command's --out too
        outputs.check_output(f / "deep" / "out", "generate")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_workdir_in_a_read_only_folder_is_refused(tmp_path, guard):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        msg = _refused(OutputError, _config("acne.py:micro"), ro / "runs" / "a")
        assert msg.startswith(f"--workdir {ro / 'runs' / 'a'}: the folder {ro} is not writable")
    finally:
        ro.chmod(0o755)


def test_an_unwritable_folder_is_refused_as_the_os_reports_it(tmp_path, guard, monkeypatch):
    """The same check where root runs the suite: os.access answers as for a user without write access."""
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: pathlib.Path(p) != ro)
    msg = _refused(OutputError, _config("acne.py:micro"), ro / "runs" / "a")
    assert msg == (f"--workdir {ro / 'runs' / 'a'}: the folder {ro} is not writable (permission denied); "
                   "nothing was written: choose a folder you can write with --workdir")
    with pytest.raises(OutputError, match="is not writable"):              # a new output in it, too
        outputs.check_output(ro / "ev", "evolve")
    assert outputs.check_output(ro, "evolve") == ro                        # an existing one may be read
    (ro / "run").mkdir()
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: pathlib.Path(p) != ro / "run")
    with pytest.raises(OutputError, match=f"--workdir {ro / 'run'}: the folder {ro / 'run'} is not writable"):
        sg2_train.train_and_evaluate(_config("acne.py:micro"), str(ro / "run"))   # training always writes


def test_train_py_nan_learning_rate_is_one_line_with_exit_2_and_no_workdir(tmp_path):
    env = dict(os.environ, JAXGEN_JAX_CACHE="", JAX_PLATFORMS="cpu")
    env.pop("JAXGEN_DEBUG", None)
    for flag, message in (("--config.train.g_lr=nan", "config.train.g_lr=nan must be a finite number"),
                          ("--config.model.channel_max=0", "config.model.channel_max=0 must be a whole number")):
        r = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/acne.py") + ":micro",
                            flag, "--workdir", str(tmp_path / "run")],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert r.returncode == 2, r.stderr[-3000:]
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), r.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == []           # no workdir, no data render
