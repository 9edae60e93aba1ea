"""jaxgen.stylegan2.projector: projecting G's own images recovers them (w and w+), the noise
regulariser tells white from smooth noise, the files round-trip, and the projection membership
AUC separates reconstructible from unreconstructible sets.

One tiny generator (8 px, 16 channels, w_dim 16) with its discriminator; every projection
runs one image at a time (batch 1) so the whole module compiles one step program.
"""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from flax.traverse_util import flatten_dict, unflatten_dict
from PIL import Image

import evaluate
from jaxgen.cli import run_main
from jaxgen.data.folder import ImageDataset
from jaxgen.errors import ConfigError, InputMissing, OutputError
from jaxgen.harness.checkpoint import save_networks
from jaxgen.metrics import datasheet as DS
from jaxgen.metrics.suite import FeatureNet
from jaxgen.runs import open_run
from jaxgen.stylegan2 import networks
from jaxgen.stylegan2 import projector as P
from jaxgen.utils.images import to_uint8

XLA_FAST_COMPILE = True
G_KW = dict(z_dim=16, w_dim=16, c_dim=0, img_resolution=8, img_channels=3, channel_base=128, channel_max=16,
            mapping_layers=2)
D_KW = dict(c_dim=0, img_resolution=8, img_channels=3, channel_base=128, channel_max=16)
CFG = P.ProjectConfig(steps=60, w_avg_samples=1000, batch=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A Run of the tiny G (noise strengths 0.05: the noise buffers matter), its networks
    directory, targets G drew from known, truncated ws with its own const noise, and the
    targets' `floor`: their MSE against the same ws drawn with zero noise (what the projection,
    whose noise buffers start as fresh random draws, cannot be expected to recover)."""
    G, D = networks.build(G_KW, D_KW)
    g, d = networks.init_variables(G, D, jax.random.key(0))
    flat = flatten_dict(g["params"])
    flat.update({k: jnp.float32(0.05) for k in flat if k[-1] == "noise_strength"})
    g = dict(g, params=unflatten_dict(flat))
    nets = tmp_path_factory.mktemp("proj") / "nets"
    save_networks(nets, G_KW, D_KW, dict(G=g, D=d, G_ema=g))
    run = open_run(nets)   # as the command opens it: restored arrays are committed, and jit's cache knows
    w_avg, _ = P.w_stats(run, None, 1000)
    z = np.random.default_rng(1).standard_normal([5, 16]).astype(np.float32)
    w = w_avg + 0.5 * (np.asarray(G.apply(g, z, None, method=G.map)) - w_avg)     # psi 0.5
    targets = P.render(run, w)
    silent = P.render(run, w, {k: np.zeros_like(v) for k, v in P.noise_buffers(g).items()})
    floor = np.mean(np.square(targets - silent), axis=(1, 2, 3))
    return dict(run=run, targets=targets, nets=nets, floor=floor)


@pytest.fixture(scope="module")
def fits(tiny):
    """Two of the targets projected in w and in w+ (60 steps each)."""
    quiet = lambda s: None  # noqa: E731
    return {wp: P.project_many(tiny["run"], tiny["targets"][:2], dataclasses.replace(CFG, w_plus=wp), log=quiet)
            for wp in (False, True)}


def test_schedule_and_noise_regulariser():
    hp = P._hyper(P.ProjectConfig())
    lr = [float(P.lr_at(t, hp)) for t in (0.0, 0.025, 0.5, 0.875, 1.0)]
    assert lr == pytest.approx([0.0, 0.05, 0.1, 0.1 * (0.5 - 0.5 * np.cos(0.5 * np.pi)), 0.0], abs=1e-7)
    assert float(P.w_noise_scale(0.375, 2.0, hp)) == pytest.approx(2.0 * 0.05 * 0.25)
    rng = np.random.default_rng(0)
    white = jnp.asarray(rng.standard_normal([32, 32]), jnp.float32)
    # each term of white noise is a squared mean of s*s products of variance v^2: expected v^2 / s^2
    # on the 32, 16, 8 px levels (v = 1, 1/4, 1/16), two directions
    expect = 2 * sum((1 / 4 ** k) ** 2 / (32 / 2 ** k) ** 2 for k in range(3))
    reg_white = float(P.noise_regularizer([white]))
    yy, xx = np.mgrid[:32, :32] / 32
    smooth = P.normalize_noise(jnp.asarray(np.sin(2 * np.pi * xx) + np.cos(2 * np.pi * yy), jnp.float32))
    reg_smooth = float(P.noise_regularizer([smooth]))
    print(f"noise regulariser: white {reg_white:.3g} (expected {expect:.3g}), smooth {reg_smooth:.3g}")
    assert reg_white < 3 * expect and reg_smooth > 1.0               # white ~0, smooth ~1 a term
    assert float(jnp.mean(smooth)) == pytest.approx(0, abs=1e-6)
    assert float(jnp.var(smooth)) == pytest.approx(1, abs=1e-5)


def test_projection_recovers_g_images(tiny, fits):
    L = tiny["run"].model.num_ws
    for wp, p in fits.items():
        start = np.mean(np.square(p.snapshots[:, 0] - p.targets), axis=(1, 2, 3))
        fall = p.losses["dist"][:, :5].mean(1) / p.losses["dist"][:, -5:].mean(1)
        print(f"w_plus={wp}: start MSE {start}, final {p.mse}, noise floor {tiny['floor'][:2]}, dist fell {fall}x")
        # measured: MSE 0.13, 0.20 at w_avg -> 0.037, 0.025 (w) and 0.024, 0.022 (w+), of which the
        # targets' own noise alone is 0.015, 0.013; dist fell 2.8x, 6.0x (w) and 5.1x, 7.6x (w+)
        assert np.all(p.mse < start / 3) and np.all(p.mse < 3 * tiny["floor"][:2])
        assert np.all(fall > 2), fall
        assert p.w.shape == (2, L, 16) and p.snapshots.shape == (2, len(p.snapshot_steps), 8, 8, 3)
        assert p.snapshot_steps[0] == 0 and p.snapshot_steps[-1] == 60 and p.losses["pixel"].shape == (2, 60)
        assert sorted(p.noise) == sorted(P.noise_buffers(tiny["run"].variables))
        assert p.features == ("pixel", "discriminator")
        for v in p.noise.values():                                   # renormalised every step
            assert np.allclose(v.mean(axis=(1, 2)), 0, atol=1e-5) and np.allclose(v.var(axis=(1, 2)), 1, atol=1e-4)
    w, noise, losses, snaps = fits[True].item(1)                          # project()'s record
    assert w.shape == (L, 16) and losses["dist"].shape == (60,) and snaps.shape[1:] == (8, 8, 3)
    assert np.all(fits[False].w == fits[False].w[:, :1])                   # w: one vector, repeated
    assert not np.allclose(fits[True].w, fits[True].w[:, :1])
    assert np.mean(fits[True].mse) <= np.mean(fits[False].mse) * 1.05      # w+ fits at least as well


def test_cli_files_round_trip_and_resume(tiny, tmp_path, capsys):
    run, img = tiny["run"], to_uint8(tiny["targets"][2])
    Image.fromarray(img).save(tmp_path / "face.png")
    out = tmp_path / "one"
    args = [str(tiny["nets"]), "--steps", "20", "--w_avg_samples", "1000", "--batch", "1"]
    assert P.main(args + ["--target", str(tmp_path / "face.png"), "--out", str(out)]) == 0
    with np.load(out / P.NPZ) as z:
        assert z["w"].shape == (1, run.model.num_ws, 16) and z["w"].dtype == np.float32
    proj = np.asarray(Image.open(out / "proj.png"))
    again = P.render_projected(open_run(tiny["nets"]), out / P.NPZ)
    assert np.array_equal(to_uint8(again[0]), proj)                      # npz -> synthesize == proj.png
    w, noise = P.load_projected(out / P.NPZ)
    direct = jax.jit(lambda v, w: run.model.apply(v, w, noise_mode="const", method=run.model.synthesize))(
        P.with_noise(run.variables, noise), w)
    assert np.abs(np.asarray(direct) - again).max() < 1e-4
    assert np.array_equal(np.asarray(Image.open(out / "target.png")), img)
    s = json.loads((out / "losses.json").read_text())
    assert len(s["losses"]["dist"]) == 20 and s["mse"] < s["start_mse"] and s["mse_run_noise"] >= 0
    assert Image.open(out / "progress.png").size == (64 * (len(s["snapshot_steps"]) + 1), 64)
    assert (out / "losses.png").is_file()
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(img).save(folder / "a.png")
    Image.fromarray(np.pad(img, [(2, 2), (4, 4), (0, 0)])).convert("RGBA").save(folder / "b.png")  # 16x12
    many = tmp_path / "many"
    assert P.main(args + ["--targets", str(folder), "--out", str(many)]) == 0
    assert "b.png: 16x12 -> centre-cropped, resized to 8x8" in capsys.readouterr().out
    assert sorted(json.loads((many / "summary.json").read_text())) == ["a.png", "b.png"]
    assert np.asarray(Image.open(many / "b" / "target.png")).shape == (8, 8, 3)
    stamp = (many / "a" / P.NPZ).stat().st_mtime_ns
    assert P.main(args + ["--targets", str(folder), "--out", str(many)]) == 0
    assert "2 of 2 images already projected" in capsys.readouterr().out
    assert (many / "a" / P.NPZ).stat().st_mtime_ns == stamp


def test_membership_auc(tiny):
    run, quiet = tiny["run"], (lambda s: None)
    g_imgs = tiny["targets"][2:5]
    noise = np.random.default_rng(3).uniform(-1, 1, [3, 8, 8, 3]).astype(np.float32)
    pixels_only = dataclasses.replace(CFG, d_weight=0.0)                   # the membership default
    same = P.projection_membership(run, g_imgs[:2], g_imgs[:2], 30, cfg=pixels_only, log=quiet)
    assert same["auc"] == 0.5 and same["train_mse"] == same["holdout_mse"]   # same images, same draws

    def ds(x):
        return ImageDataset(to_uint8(x), np.zeros(len(x), np.int32), ["all"], [f"{i}.png" for i in range(len(x))])
    colours = FeatureNet("colours", False, lambda x: {"pool3": x.mean(axis=(1, 2)).astype(np.float32) / 255})
    sheet = DS.compute(ds(g_imgs), ds(g_imgs), ds(noise), colours, k_pr=1, k_dc=1,
                       projection=dict(run=run, steps=60, config=pixels_only))
    pm = sheet["privacy"]["projection_membership"]
    print(f"G images MSE {pm['train_mse']}, noise images MSE {pm['holdout_mse']}")
    assert pm["auc"] == 1.0 and pm["images"] == dict(train=3, holdout=3)   # G's own images: all better
    assert same["features"] == pm["features"] == ["pixel"]
    # uniform noise has variance 1/3 about its mean, and G cannot draw it (measured 0.33-0.36);
    # G's own images: 0.04, 0.09, 0.11
    assert min(pm["holdout_mse"]) > 0.25 > max(pm["train_mse"])
    md = DS.markdown(sheet, {})
    assert "| membership AUC (projection, 60 steps: training images reconstruct better) | 1.000 |" in md


def test_refusals(tiny, tmp_path, capsys):
    face = tmp_path / "face.png"
    Image.fromarray(np.zeros([8, 8, 3], np.uint8)).save(face)
    base = [str(tiny["nets"]), "--steps", "5"]
    with pytest.raises(InputMissing, match="--target .*nope.png does not exist"):
        P.main(base + ["--target", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o1")])
    with pytest.raises(ConfigError, match="exactly one of them"):
        P.main(base + ["--out", str(tmp_path / "o2")])
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ConfigError, match="bad.png is not a readable image"):
        P.main(base + ["--target", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o3")])
    with pytest.raises(ConfigError, match="--class healthy: .* is unconditional"):
        P.main(base + ["--target", str(face), "--class", "healthy", "--out", str(tmp_path / "o4")])
    with pytest.raises(ConfigError, match="--steps 0 cannot work"):
        P.main(base[:2] + ["0", "--target", str(face), "--out", str(tmp_path / "o5")])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty and was not written by jaxgen"):
        P.main(base + ["--target", str(face), "--out", str(mine)])
    with pytest.raises(SystemExit) as e:
        run_main(lambda: P.main(base + ["--target", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o6")]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: --target")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 7))
    with pytest.raises(ConfigError, match="targets must be images"):
        P.project_many(tiny["run"], np.zeros([8, 8, 3]), CFG)


def test_datasheet_projection_flag_needs_the_generator():
    with flagsaver.flagsaver():
        flags.FLAGS(["evaluate.py", "--datasheet", "--projection_steps", "5", "--synthetic", "s", "--real", "r",
                     "--holdout", "h", "--out", "o"])
        with pytest.raises(ConfigError, match="--projection_steps needs --checkpoint"):
            evaluate.main([])
