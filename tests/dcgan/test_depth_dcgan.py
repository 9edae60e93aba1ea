"""Tests for the depth-face demo data (jaxgen.data.depth_faces) and the conditional
DCGAN with EMA-teacher distillation (jaxgen.dcgan), incl. a tiny resumable run."""
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxgen.config import load_config
from jaxgen.data import DatasetError, load_dataset
from jaxgen.data.depth_faces import (EXPRESSIONS, _sample_face, face_to_pixel, render_depth_face,
                                     write_depth_dataset)
from jaxgen.dcgan import models as M
from jaxgen.dcgan import train as T
from jaxgen.runs import open_run

XLA_FAST_COMPILE = True   # compile-bound, no golden files: see tests/conftest.py

DEPTH_CONFIG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "depth_emotion.py")


# ------------------------------------------------------------------ depth faces

def test_render_deterministic_seed_dependent_and_checked():
    a = render_depth_face(np.random.default_rng(3), 1, 32)
    b = render_depth_face(np.random.default_rng(3), 1, 32)
    c = render_depth_face(np.random.default_rng(4), 1, 32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 1)
    assert a.tobytes() == b.tobytes()
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 3
    assert render_depth_face(np.random.default_rng(0), 0, 16).shape == (16, 16, 1)
    # bright head on a dark background: centre much brighter than the top corners
    assert a[12:20, 12:20].mean() > a[:4, :4].mean() + 80
    with pytest.raises(ValueError, match="expression"):
        render_depth_face(np.random.default_rng(0), 4, 32)
    with pytest.raises(DatasetError, match="power of two"):
        render_depth_face(np.random.default_rng(0), 0, 48)


def _mouth_curvature(img, f, res, h=4):
    """Row of the darkest pixel (groove / opening, after removing the linear depth
    trend) at the mouth corners minus at its centre, in pixels: < 0 when the
    corners are higher (smile), > 0 for a frown."""
    rows, v = [], f["mouth_v"]
    for u in (-0.55, 0.0, 0.55):
        uu = u * f["mouth_w"] * f["expr"]["width"] + f["yaw"] * np.sqrt(1 - v ** 2)
        x, y = (int(round(p)) for p in face_to_pixel(f, uu, v, res))
        win = img[y - h:y + h + 1, x - 1:x + 2, 0].astype(float).mean(1)
        t = np.arange(len(win))
        rows.append(np.argmin(win - np.polyval(np.polyfit(t, win, 1), t)))
    return (rows[0] + rows[2]) / 2 - rows[1]


def test_expressions_change_mouth_and_keep_identity():
    res, curv, dark = 128, {1: [], 2: []}, {0: [], 3: []}
    for i in range(8):
        imgs = {e: render_depth_face(np.random.default_rng([11, i]), e, res) for e in range(4)}
        for e in (1, 2):
            f = _sample_face(np.random.default_rng([11, i]), e)
            curv[e].append(_mouth_curvature(imgs[e], f, res))
        f = _sample_face(np.random.default_rng([11, i]), 0)
        x, y = (int(round(v)) for v in face_to_pixel(f, f["yaw"], f["mouth_v"], res))
        for e in (0, 3):
            dark[e].append(imgs[e][y - 2:y + 3, x - 2:x + 3].mean())
        # same person: the background/shoulder border (top rows) is identical across classes
        for e in (1, 2, 3):
            assert (imgs[e][:6] == imgs[0][:6]).all()
            assert np.abs(imgs[e].astype(int) - imgs[0].astype(int)).max() > 15
    happy, sad = np.array(curv[1]), np.array(curv[2])
    assert happy.mean() < -1.0 and sad.mean() > 1.0, curv  # smile: corners up; frown: down
    assert (sad - happy >= 1.5).all(), curv                  # for every one of the 8 people
    # surprise: the open mouth is a dark cavity where the neutral mouth is lips/groove
    assert np.mean(dark[3]) < np.mean(dark[0]) - 40, dark


def test_write_depth_dataset_resumable_and_loadable(tmp_path, log_lines):
    out = tmp_path / "depth"
    assert write_depth_dataset(out, num_per_class=2, resolution=16, seed=1, progress=False) == out
    files = sorted(out.glob("*/*.png"))
    assert [p.relative_to(out).as_posix() for p in files] == [
        f"{c}/{c}_{i:05d}.png" for c in sorted(EXPRESSIONS) for i in range(2)]
    with Image.open(files[0]) as im:
        assert im.mode == "L" and im.size == (16, 16)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] and meta["total"] == 8
    assert (out / "preview.png").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in files}
    blob = (out / "sad" / "sad_00001.png").read_bytes()
    write_depth_dataset(out, num_per_class=2, resolution=16, seed=1)
    assert "reused all of 8" in log_lines.read()
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    (out / "sad" / "sad_00001.png").unlink()
    (out / "happy" / "happy_00000.png").write_bytes(b"broken")
    write_depth_dataset(out, num_per_class=2, resolution=16, seed=1)
    assert "rendered 2 of 8" in log_lines.read()
    assert (out / "sad" / "sad_00001.png").read_bytes() == blob
    assert (out / "neutral" / "neutral_00000.png").stat().st_mtime_ns == stamps[out / "neutral" / "neutral_00000.png"]
    with pytest.raises(DatasetError, match="other parameters"):
        write_depth_dataset(out, num_per_class=2, resolution=16, seed=2, progress=False)
    ds = load_dataset(dict(source="depth_demo", path=str(out), resolution=16, num_per_class=2,
                           seed=1, progress=False))
    assert ds.images.shape == (8, 16, 16, 1) and ds.class_names == sorted(EXPRESSIONS)
    assert np.bincount(ds.labels).tolist() == [2, 2, 2, 2]
    with Image.open(out / "sad" / "sad_00001.png") as im:
        assert (np.asarray(im) == ds.images[5, ..., 0]).all()


# ----------------------------------------------------------------------- models

@pytest.mark.parametrize("res", [16, 32, 64])
@pytest.mark.parametrize("ch", [1, 3])
def test_generator_discriminator_shapes(res, ch):
    G = M.Generator(resolution=res, channels=ch, num_classes=4, z_dim=8, widths=(16, 8))
    D = M.Discriminator(resolution=res, channels=ch, num_classes=4, widths=(16, 8))
    z, c = jnp.zeros([3, 8]), jnp.array([0, 1, 3])
    img, gv = jax.eval_shape(lambda: G.init_with_output(jax.random.key(0), z, c))
    assert img.shape == (3, res, res, ch) and img.dtype == jnp.float32
    names = set(gv["params"])
    assert {"label_embed", "fc", "conv4", f"conv{res}", "to_image"} <= names
    assert len(names) == 4 + int(np.log2(res)) - 2
    logits, dv = jax.eval_shape(lambda: D.init_with_output(jax.random.key(0), jnp.zeros(img.shape), c))
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    assert gv["params"][f"conv{res}"]["kernel"].shape == (3, 3, 8, 8)
    assert dv["params"]["from_image"]["kernel"].shape == (3, 3, ch, 8)


def test_models_labels_values_and_dtype():
    G = M.Generator(resolution=16, channels=1, num_classes=3, z_dim=8, widths=(16, 8), dtype="bfloat16")
    D = M.Discriminator(resolution=16, channels=1, num_classes=3, widths=(16, 8))
    z = jax.random.normal(jax.random.key(1), [4, 8])
    c = jnp.array([0, 1, 2, 1])
    gp = jax.jit(G.init)(jax.random.key(2), z, c)["params"]
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(gp))
    g_apply, d_apply = jax.jit(G.apply), jax.jit(D.apply)
    x = g_apply({"params": gp}, z, c)
    assert x.dtype == jnp.float32 and float(jnp.abs(x).max()) <= 1.0
    x1 = g_apply({"params": gp}, z, jax.nn.one_hot(c, 3))
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x1))
    x2 = g_apply({"params": gp}, z, (c + 1) % 3)
    assert float(jnp.abs(x - x2).mean()) > 1e-3
    dp = jax.jit(D.init)(jax.random.key(3), x, c)["params"]
    l1, l2 = d_apply({"params": dp}, x, c), d_apply({"params": dp}, x, (c + 1) % 3)
    assert l1.shape == (4,) and float(jnp.abs(l1 - l2).max()) > 1e-4
    with pytest.raises(ValueError, match="power of two"):
        M.stage_widths((8,), 24)
    assert M.stage_widths((32, 16), 32) == {4: 32, 8: 16, 16: 16, 32: 16}


# ------------------------------------------------------------------------ losses

def _sp(x):
    return np.log1p(np.exp(x))


def test_losses_match_numpy():
    r = np.random.default_rng(0)
    real, fake, t_real, t_fake = (r.normal(size=5).astype(np.float32) for _ in range(4))
    s_img, t_img = r.normal(size=(2, 4, 4, 1)).astype(np.float32), r.normal(size=(2, 4, 4, 1)).astype(np.float32)
    g_gan = _sp(-fake).mean()
    d_gan = _sp(-real).mean() + _sp(fake).mean()
    kd_g = np.abs(s_img - t_img).mean()
    kd_d = (np.sum((real - t_real) ** 2) + np.sum((fake - t_fake) ** 2)) / 10
    g, aux = M.generator_loss(fake, s_img, t_img, kd_weight=0.7)
    np.testing.assert_allclose([float(g), float(aux["gan"]), float(aux["kd"])],
                               [g_gan + 0.7 * kd_g, g_gan, kd_g], rtol=1e-5)
    d, aux = M.discriminator_loss(real, fake, t_real, t_fake, kd_weight=0.3)
    np.testing.assert_allclose([float(d), float(aux["gan"]), float(aux["kd"])],
                               [d_gan + 0.3 * kd_d, d_gan, kd_d], rtol=1e-5)
    # weight 0: exactly the plain cDCGAN losses, no teacher needed
    g0, aux0 = M.generator_loss(fake, kd_weight=0.0)
    d0, _ = M.discriminator_loss(real, fake, kd_weight=0.0)
    assert float(g0) == float(M.g_gan_loss(fake)) and float(aux0["kd"]) == 0.0
    assert float(d0) == float(M.d_gan_loss(real, fake))
    np.testing.assert_allclose(float(g0), g_gan, rtol=1e-5)
    # the teacher is stop-gradient: no gradient flows into its outputs
    gt = jax.grad(lambda t: M.kd_g_loss(s_img, t))(t_img)
    gs = jax.grad(lambda s: M.kd_g_loss(s, t_img))(s_img)
    assert float(jnp.abs(gt).max()) == 0.0
    np.testing.assert_allclose(np.asarray(gs), np.sign(s_img - t_img) / s_img.size, rtol=1e-6)
    gtd = jax.grad(lambda t: M.kd_d_loss(real, fake, t, t_fake))(t_real)
    assert float(jnp.abs(gtd).max()) == 0.0


def test_ema_update_formula():
    t = {"a": np.array([1.0, 2.0], np.float32), "b": {"c": np.array(4.0, np.float32)}}
    s = {"a": np.array([3.0, -2.0], np.float32), "b": {"c": np.array(0.0, np.float32)}}
    out = M.ema_update(t, s, 0.9)
    np.testing.assert_allclose(out["a"], [0.9 * 1 + 0.1 * 3, 0.9 * 2 - 0.1 * 2], rtol=1e-6)
    np.testing.assert_allclose(out["b"]["c"], 3.6, rtol=1e-6)


# ------------------------------------------------------------------- train step

def _tiny_models():
    G = M.Generator(resolution=16, channels=1, num_classes=4, z_dim=8, embed_dim=4, widths=(8, 8, 8))
    D = M.Discriminator(resolution=16, channels=1, num_classes=4, widths=(8, 8, 8))
    return G, D


def test_train_step_updates_params_and_teacher_by_ema():
    G, D = _tiny_models()
    g_tx, d_tx = T.make_optimizers(load_config(DEPTH_CONFIG).train)
    s0 = T.init_state(G, D, g_tx, d_tx, jax.random.key(0))
    step = jax.jit(T.make_train_step(G, D, g_tx, d_tx, T.StepConfig(
        z_dim=8, kd_g_weight=0.5, kd_d_weight=0.1, ema_decay=0.9)))
    imgs = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 1)), jnp.float32)
    labels = jnp.array([0, 1, 2, 3], jnp.int32)
    key = jax.random.key(5)
    s1, m1 = step(s0, imgs, labels, key)
    assert int(s1.step) == 1
    for old, new, t_old, t_new in ((s0.g_params, s1.g_params, s0.g_teacher, s1.g_teacher),
                                   (s0.d_params, s1.d_params, s0.d_teacher, s1.d_teacher)):
        moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), old, new)
        assert min(jax.tree_util.tree_leaves(moved)) > 0  # every leaf is trained
        jax.tree_util.tree_map(lambda to, tn, sn: np.testing.assert_allclose(
            tn - to, 0.1 * (sn - to), atol=1e-7), t_old, t_new, new)
    # teacher == student at init, so the first step's KD terms are 0 (up to rounding)
    assert float(m1["kd/G"]) < 1e-10 and float(m1["kd/D"]) < 1e-10
    s2, m2 = step(s1, imgs, labels, key)
    assert float(m2["kd/G"]) > 1e-5 and float(m2["kd/D"]) > 1e-8
    np.testing.assert_allclose(float(m2["loss/G"]), float(m2["loss/G_gan"]) + 0.5 * float(m2["kd/G"]), rtol=1e-5)
    np.testing.assert_allclose(float(m2["loss/D"]), float(m2["loss/D_gan"]) + 0.1 * float(m2["kd/D"]), rtol=1e-5)
    s2b, _ = step(s1, imgs, labels, key)  # the step's RNG is fold_in(key, step): deterministic
    np.testing.assert_array_equal(np.asarray(s2.g_params["fc"]["kernel"]), np.asarray(s2b.g_params["fc"]["kernel"]))
    plain = jax.jit(T.make_train_step(G, D, g_tx, d_tx, T.StepConfig(z_dim=8)))
    _, mp = plain(s1, imgs, labels, key)
    assert float(mp["kd/G"]) == 0.0 and float(mp["loss/G"]) == float(mp["loss/G_gan"])


# -------------------------------------------------------------------- end to end

def _config(tmp_path, total_kimg):
    c = load_config(DEPTH_CONFIG + ":tiny")
    c.data.path = str(tmp_path / "data16")
    c.data.resolution = 16
    c.data.num_per_class = 4
    c.model.z_dim, c.model.embed_dim, c.model.widths = 8, 4, (8, 8, 8)
    c.train.batch_size = 8
    c.train.total_kimg = total_kimg
    c.train.kimg_per_tick = 0.016           # 2 steps a tick
    c.train.snapshot_ticks = c.train.image_snapshot_ticks = 1
    c.train.grid_cols = 2
    return c


def test_train_and_evaluate_writes_outputs_and_resumes(tmp_path, log_lines):
    wd = tmp_path / "run"
    T.train_and_evaluate(_config(tmp_path, 0.032), str(wd))  # 4 steps
    out = log_lines.read()
    assert "tick 2" in out and "Resuming" not in out
    assert sorted(os.listdir(wd / "checkpoints")) == ["2", "4"]
    for name in ("reals.png", "fakes_00000032.png", "final.png", "student_final.png"):
        assert (wd / "samples" / name).is_file(), name
    assert (wd / "losses.png").is_file()
    with Image.open(wd / "samples" / "final.png") as im:
        assert im.height == 4 * 64  # one row per class, upscaled to 64 px cells
    run = open_run(wd)
    params = run.variables["params"]
    assert run.kind == "dcgan" and run.class_names == ("happy", "neutral", "sad", "surprise")
    assert (run.z_dim, run.resolution, run.channels, run.step) == (8, 16, 1, 4)
    x = run.generate(jax.random.normal(jax.random.key(0), [4, 8]), [0, 1, 2, 3])
    assert x.shape == (4, 16, 16, 1) and np.abs(x).max() <= 1.0 and x.std() > 0

    T.train_and_evaluate(_config(tmp_path, 0.064), str(wd))  # resume to 8 steps
    out = log_lines.read()
    assert "Resuming from step 4" in out and "tick 3" in out and "tick 1 " not in out
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["tick"] for r in rows] == [1, 2, 3, 4] and [r["step"] for r in rows] == [2, 4, 6, 8]
    run8 = open_run(wd)
    params8 = run8.variables["params"]
    assert run8.step == 8

    # the resumed run equals an uninterrupted one
    T.train_and_evaluate(_config(tmp_path, 0.064), str(tmp_path / "straight"))
    straight = open_run(tmp_path / "straight").variables["params"]
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), params8, straight)
    assert float(np.abs(params8["fc"]["kernel"] - params["fc"]["kernel"]).max()) > 0


def test_config_variants():
    c = load_config(DEPTH_CONFIG + ":tiny,nokd")
    assert c.task == "dcgan" and c.data.resolution == 32 and c.data.channels == 1
    assert c.kd.g_weight == 0.0 and c.kd.d_weight == 0.0 and c.kd.ema_decay == 0.994
    full = load_config(DEPTH_CONFIG)
    assert full.data.resolution == 64 and full.kd.g_weight > 0 and full.kd.d_weight > 0
    assert len(M.stage_widths(full.model.widths, 64)) == 5
    with pytest.raises(ValueError, match="unknown variant"):
        load_config(DEPTH_CONFIG + ":huge")
