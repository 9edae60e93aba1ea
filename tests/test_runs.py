"""jaxgen.runs: one way to open every kind of run (StyleGAN2, DCGAN, classifier, networks dir)."""
import json

import jax
import ml_collections
import numpy as np
import pytest

import tiny_gan
from jaxgen.classifiers.models import build_classifier
from jaxgen.dcgan import models as dcgan_models
from jaxgen.harness.checkpoint import (CheckpointError, TrainCheckpointer, save_networks,
                                       write_descriptor)
from jaxgen.runs import Run, RunError, is_run, open_run
from jaxgen.stylegan2 import networks

XLA_FAST_COMPILE = True   # compile-bound, no golden files: see tests/conftest.py

NAMES = ["a", "b", "c"]


def _save(workdir, state, step=3, subdir="checkpoints"):
    ck = TrainCheckpointer(workdir, subdir=subdir)
    ck.save(step, state, dict(tick=1))
    ck.close()


@pytest.fixture(scope="module")
def sg2():
    G, D = networks.build(tiny_gan.G_KW, tiny_gan.D_KW)
    g, d = networks.init_variables(G, D, jax.random.key(0))
    ema = jax.tree_util.tree_map(lambda x: x * 1.01, g)    # tell G_ema from G
    return dict(G=G, g=g, d=d, ema=ema)


def test_stylegan2_workdir_and_networks_dir_open_the_same_way(sg2, tmp_path):
    wd = tmp_path / "sg2"
    _save(wd, dict(step=np.int32(3), g_params=sg2["g"]["params"], g_buffers=sg2["g"]["buffers"],
                   d_params=sg2["d"]["params"], ema_params=sg2["ema"]["params"],
                   ema_buffers=sg2["ema"]["buffers"]))
    write_descriptor(wd, "stylegan2", class_names=NAMES, resolution=8, channels=3,
                     G_kwargs=tiny_gan.G_KW, D_kwargs=tiny_gan.D_KW)
    run = open_run(wd)
    assert isinstance(run, Run) and run.kind == "stylegan2" and run.step == 3
    assert (run.class_names, run.resolution, run.channels, run.num_classes, run.z_dim) == \
        (tuple(NAMES), 8, 3, 3, 16)
    jax.tree_util.tree_map(np.testing.assert_array_equal, run.variables, sg2["ema"])   # G_ema
    jax.tree_util.tree_map(np.testing.assert_array_equal, run.d_variables, sg2["d"])
    z = np.random.default_rng(0).standard_normal([4, 16]).astype(np.float32)
    img = run.generate(z, [0, 1, 2, 0])
    want = jax.jit(lambda v, z, c: sg2["G"].apply(v, z, c, noise_mode="const"))(
        sg2["ema"], z, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    np.testing.assert_allclose(img, np.asarray(want), rtol=1e-5, atol=1e-5)

    nd = tmp_path / "nets"
    save_networks(nd, tiny_gan.G_KW, tiny_gan.D_KW, dict(G=sg2["g"], D=sg2["d"], G_ema=sg2["ema"]),
                  class_names=NAMES)
    again = open_run(nd)
    assert again.kind == "stylegan2" and again.step is None and again.class_names == tuple(NAMES)
    np.testing.assert_allclose(again.generate(z, [0, 1, 2, 0]), img, rtol=1e-6, atol=1e-6)
    assert is_run(wd) and is_run(nd) and not is_run(tmp_path)


def test_dcgan_and_classifier_runs(tmp_path):
    cfg = ml_collections.ConfigDict(dict(z_dim=8, embed_dim=4, widths=(16, 8)))
    gk, dk = dcgan_models.model_kwargs(cfg, 16, 1, 3)
    G, D = dcgan_models.build(gk, dk)
    c = np.zeros([2], np.int32)
    g = jax.jit(G.init)(jax.random.key(0), np.zeros([2, 8], np.float32), c)["params"]
    d = jax.jit(D.init)(jax.random.key(1), np.zeros([2, 16, 16, 1], np.float32), c)["params"]
    wd = tmp_path / "dcgan"
    _save(wd, dict(step=np.int32(3), g_params=g, g_teacher=g, d_params=d), step=4)
    write_descriptor(wd, "dcgan", class_names=NAMES, resolution=16, channels=1, G_kwargs=gk, D_kwargs=dk)
    run = open_run(wd)
    assert (run.kind, run.step, run.num_classes, run.resolution, run.channels) == ("dcgan", 4, 3, 16, 1)
    z = np.ones([2, 8], np.float32)
    want = jax.jit(G.apply)({"params": g}, z, np.array([1, 2], np.int32))
    np.testing.assert_allclose(run.generate(z, [1, 2]), np.asarray(want), atol=1e-6)

    model = build_classifier("small_cnn", 3)
    v = jax.jit(lambda k: model.init(k, np.zeros([1, 16, 16, 3], np.float32), train=False))(jax.random.key(2))
    cd = tmp_path / "cls"
    state = dict(step=np.int32(5), params=v["params"], batch_stats=v.get("batch_stats", {}))
    _save(cd, state, step=5, subdir="best")
    _save(cd, state, step=9)
    write_descriptor(cd, "classifier", class_names=NAMES, resolution=16, channels=3, model="small_cnn",
                     model_kwargs={})
    clf = open_run(cd)
    assert (clf.kind, clf.step, clf.class_names) == ("classifier", 5, tuple(NAMES))   # best by default
    assert open_run(cd, "latest").step == 9
    with pytest.raises(RunError, match="not a generator"):
        clf.generate(z)
    with pytest.raises(RunError, match="is a classifier run; expected stylegan2 or dcgan"):
        open_run(cd, kinds=("stylegan2", "dcgan"))
    with pytest.raises(RunError, match="no best/ checkpoint"):
        open_run(wd, "best")


def test_legacy_descriptor_and_errors(sg2, tmp_path):
    wd = tmp_path / "old"
    _save(wd, dict(g_params=sg2["g"]["params"], g_buffers=sg2["g"]["buffers"], d_params=sg2["d"]["params"],
                   ema_params=sg2["g"]["params"], ema_buffers=sg2["g"]["buffers"]))
    (wd / "model.json").write_text(json.dumps(dict(format="jaxgen-networks", version=1, G_kwargs=tiny_gan.G_KW,
                                                   D_kwargs=tiny_gan.D_KW, class_names=NAMES)))
    run = open_run(wd)
    assert run.kind == "stylegan2" and run.class_names == tuple(NAMES) and run.resolution == 8
    with pytest.raises(RunError, match="does not exist"):
        open_run(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(RunError, match="not an NVIDIA snapshot"):
        open_run(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a jaxgen run"):
        open_run(tmp_path / "empty")
    with pytest.raises(ValueError, match="run kind"):
        write_descriptor(tmp_path / "bad", "vae", class_names=[], resolution=8, channels=1)
