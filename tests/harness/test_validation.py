"""Validation before anything is created: bad settings, missing paths, bad data, a folder of the
user's own and a workdir of another config stop with one line, before any data is loaded or
model built, and leave no workdir. The real trainers and configs, but no model is ever built:
each trainer's `load_dataset` is replaced by a guard that stops the run where the data would load."""
import os
import pathlib
import subprocess
import sys
import time

import jax
import pytest
from PIL import Image

from jaxgen import data as data_lib
from jaxgen.classifiers import train as cls_train
from jaxgen.config import load_config
from jaxgen.data import DatasetError
from jaxgen.dcgan import train as dcgan_train
from jaxgen.errors import ConfigError, InputMissing, OutputError, UserError
from jaxgen.harness import validate
from jaxgen.harness.checkpoint import write_descriptor
from jaxgen.stylegan2 import train as sg2_train

REPO = pathlib.Path(__file__).resolve().parents[2]
TRAINERS = {  # config spec -> (trainer module, its train function)
    "acne.py:micro": (sg2_train, sg2_train.train_and_evaluate),
    "depth_emotion.py:tiny": (dcgan_train, dcgan_train.train_and_evaluate),
    "acne_classifier.py:tiny": (cls_train, cls_train.train_classifier),
}


class DataLoaded(Exception):
    """Raised by the guard: validation let the run through to its data."""


@pytest.fixture
def guard(monkeypatch):
    """Each trainer's load_dataset records what it loads, then stops the run (no model is built)."""
    loaded = []

    def load(cfg):
        loaded.append(data_lib.load_dataset(cfg))
        raise DataLoaded(cfg)

    for module, _ in TRAINERS.values():
        monkeypatch.setattr(module, "load_dataset", load)
    return loaded


def _config(spec, *overrides):
    return load_config(str(REPO / "configs" / spec), overrides)


def _classes(root, names=("healthy", "severe"), n=2):
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (12, 12), (60 * i, 100, 30)).save(root / name / f"{i}.png")
    return root


def _one_line(e):
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("spec", sorted(TRAINERS))
@pytest.mark.parametrize("batch", [0, -4])
def test_bad_batch_size_fails_at_once_and_leaves_no_workdir(tmp_path, guard, spec, batch):
    jax.device_count()                              # the backend is up, as in any command
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        TRAINERS[spec][1](_config(spec, f"train.batch_size={batch}"), str(tmp_path / "run"))
    assert time.perf_counter() - t0 < 1.0
    assert f"config.train.batch_size={batch} must be a positive multiple of the" in _one_line(e)
    assert not guard and not (tmp_path / "run").exists()


def test_batch_must_split_over_the_devices_and_values_must_be_in_range():
    assert validate.check_batch_size(8, 4) == 8
    with pytest.raises(ConfigError, match=r"batch_size=6 must be a positive multiple of the 4 device\(s\), "
                                          r"e.g. --config.train.batch_size=8"):
        validate.check_batch_size(6, 4)
    sg2, dcgan, cls = (sg2_train.StyleGAN2Experiment, dcgan_train.DCGANExperiment,
                       cls_train.ClassifierExperiment)
    cases = [("acne.py:micro", sg2, "data.resolution=48", "config.data.resolution=48 must be a power of two"),
             ("acne.py:micro", sg2, "data.resolution=2048", "power of two from 4 to 1024"),
             ("depth_emotion.py:tiny", dcgan, "data.resolution=512", "power of two from 16 to 256"),
             ("acne.py:micro", sg2, "data.channels=2", "config.data.channels=2 must be 1 .grayscale. or 3"),
             ("acne.py:micro", sg2, "train.total_kimg=-1", "config.train.total_kimg=-1.0 must be a number >= 0"),
             ("acne.py:micro", sg2, "train.snapshot_ticks=0", "config.train.snapshot_ticks=0 must be a number >= 1"),
             ("acne_classifier.py:tiny", cls, "train.epochs=-1", "config.train.epochs=-1 must be a number >= 0"),
             ("acne_classifier.py:tiny", cls, "data.resolution=8", "=8 must be a size from 16 to 1024")]
    for spec, experiment, override, message in cases:
        with pytest.raises(ConfigError, match=message):
            validate.check_config(_config(spec, override), experiment.resolution_range, num_devices=1,
                                  power_of_two=experiment.power_of_two)
    # The classifiers read any size: the paper's ResNets use 224 (configs/acne_classifier.py).
    validate.check_config(_config("acne_classifier.py:tiny", "data.resolution=224"), cls.resolution_range,
                          num_devices=1, power_of_two=cls.power_of_two)


def test_missing_paths_empty_data_and_one_class_leave_no_workdir(tmp_path, guard):
    run = tmp_path / "run"
    with pytest.raises(InputMissing) as e:                         # a folder source that is not there
        sg2_train.train_and_evaluate(_config("acne.py:micro", "data.source=folder",
                                             f"data.path={tmp_path / 'nope'}"), str(run))
    assert "config.data.path=" in _one_line(e) and "--config.data.path=<" in str(e.value)
    with pytest.raises(InputMissing) as e:                         # transfer learning from nowhere
        sg2_train.train_and_evaluate(_config("acne.py:micro,finetune", f"data.path={_classes(tmp_path / 'd')}",
                                             f"transfer.init_from={tmp_path / 'base'}"), str(run))
    assert f"config.transfer.init_from='{tmp_path / 'base'}' does not exist" in _one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):     # an empty data folder
        sg2_train.train_and_evaluate(_config("acne.py:micro", "data.source=folder",
                                             f"data.path={tmp_path / 'empty'}"), str(run))
    one = _classes(tmp_path / "one", names=("healthy",))
    with pytest.raises(DatasetError, match=r"1 class\(es\) \(healthy\) but 2 are required"):
        cls_train.train_classifier(_config("acne_classifier.py:tiny", "data.source=folder", f"data.path={one}",
                                           "data.cache_dir="), str(run))
    assert not run.exists()


def test_init_from_is_only_needed_by_a_new_run(tmp_path, guard):
    cfg = _config("acne.py:micro,finetune", f"data.path={_classes(tmp_path / 'd')}", "data.cache_dir=",
                  f"transfer.init_from={tmp_path / 'deleted_base'}")
    run = tmp_path / "run"
    (run / "checkpoints" / "4").mkdir(parents=True)
    (run / "config.json").write_text(cfg.to_json_best_effort(indent=2))
    write_descriptor(run, "stylegan2", class_names=[], resolution=16, channels=3)   # a run's marker
    with pytest.raises(DataLoaded):                                # resuming: not checked
        sg2_train.train_and_evaluate(cfg, str(run))


def test_a_folder_of_the_users_own_is_refused_untouched(tmp_path, guard):
    own = tmp_path / "thesis"
    own.mkdir()
    (own / "thesis.txt").write_text("two years of work")
    with pytest.raises(OutputError) as e:
        sg2_train.train_and_evaluate(_config("acne.py:micro"), str(own))
    assert f"--workdir {own} holds files jaxgen did not write (thesis.txt)" in _one_line(e)
    assert sorted(p.name for p in own.iterdir()) == ["thesis.txt"]
    assert (own / "thesis.txt").read_text() == "two years of work"


def test_a_workdir_of_another_config_is_refused_in_one_line_before_the_data(tmp_path, guard):
    """:tiny in a workdir made by :micro; what may change on resume is not refused."""
    micro = _config("acne.py:micro", f"data.path={tmp_path / 'demo'}")
    run = tmp_path / "run"
    (run / "checkpoints" / "8").mkdir(parents=True)
    (run / "config.json").write_text(micro.to_json_best_effort(indent=2))
    write_descriptor(run, "stylegan2", class_names=[], resolution=16, channels=3)   # a run's marker
    before = (run / "config.json").read_bytes()
    with pytest.raises(OutputError) as e:
        sg2_train.train_and_evaluate(_config("acne.py:tiny"), str(run))
    msg = _one_line(e)
    for diff in ("model.channel_base 256 vs 1024", "model.channel_max 16 vs 64", "model.z_dim 16 vs 64",
                 "data.resolution 16 vs 32", "model.use_noise true vs false", "and 1 more"):
        assert diff in msg, msg
    assert "start fresh with a new --workdir" in msg and len(msg) < 600
    assert not guard and (run / "config.json").read_bytes() == before
    resumable = _config("acne.py:micro", f"data.path={tmp_path / 'other'}", "train.total_kimg=1.0",
                        "train.snapshot_ticks=5", "train.image_snapshot_ticks=5", "metrics.num_fakes=64",
                        "train.g_lr=0.001", "data.cache_dir=", "model.dtype=bfloat16")
    with pytest.raises(DataLoaded):
        sg2_train.train_and_evaluate(resumable, str(run))


@pytest.mark.parametrize("spec", sorted(TRAINERS))
def test_skip_corrupt_reaches_every_trainers_data(tmp_path, guard, spec):
    root = _classes(tmp_path / "data")
    (root / "healthy" / "broken.png").write_text("not a PNG")
    cfg = _config(spec, "data.source=folder", f"data.path={root}", "data.cache_dir=", "data.skip_corrupt=True")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"), pytest.raises(DataLoaded):
        TRAINERS[spec][1](cfg, str(tmp_path / "run"))
    assert [s["path"] for s in guard[0].summary["skipped"]] == [str(root / "healthy" / "broken.png")]
    assert not (tmp_path / "run").exists()


def test_train_py_prints_one_line_and_exits_2_without_a_workdir(tmp_path):
    env = dict(os.environ, JAXGEN_JAX_CACHE="", JAX_PLATFORMS="cpu")
    env.pop("JAXGEN_DEBUG", None)
    out = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/acne.py") + ":micro",
                          "--config.train.batch_size=-4", "--workdir", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if "batch_size" in ln]
    assert len(lines) == 1 and "config.train.batch_size=-4 must be a positive multiple" in lines[0]
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()
