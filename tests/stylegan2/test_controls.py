"""Generation controls (jaxgen.stylegan2.controls) and their command (jaxgen.workflows.images)
on an 8 px conditional generator saved as a networks directory."""
import dataclasses
import functools
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image

import tiny_gan
from jaxgen.commands import images as images_command
from jaxgen.errors import ConfigError, OutputError, UserError
from jaxgen.harness.checkpoint import save_networks, write_descriptor
from jaxgen.runs import open_run
from jaxgen.stylegan2 import controls, networks
from jaxgen.stylegan2.projector import ProjectConfig
from jaxgen.utils.images import to_uint8
from jaxgen.workflows import images

XLA_FAST_COMPILE = True   # compile-bound, values compared within this process: see tests/conftest.py

NAMES = ["healthy", "mild", "severe"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A networks dir of tiny_gan's G (8 px, num_ws 4, c_dim 3): random weights of G.init's shapes
    (eval_shape: no init to compile), a non-zero w_avg and noise strength (noise modes differ)."""
    G = networks.build_generator(tiny_gan.G_KW)
    z, c = np.zeros([1, G.z_dim], np.float32), np.zeros([1, G.c_dim], np.float32)
    shapes = jax.eval_shape(lambda k: G.init({"params": k, "noise": k}, z, c, noise_mode="none"),
                            jax.random.key(0))
    rng = np.random.default_rng(0)
    flat = {}
    for k, v in traverse_util.flatten_dict(dict(shapes)).items():
        x = rng.standard_normal(v.shape).astype(np.float32)
        if k[-1] == "bias":
            x = x * 0.1 + (1.0 if k[-2] == "affine" else 0.0)        # NVIDIA's affine bias init is 1
        elif k[-2].startswith("fc"):
            x = x * 100.0                                             # mapping lr multiplier 0.01
        flat[k] = np.float32(0.5) if k[-1] == "noise_strength" else x
    g = traverse_util.unflatten_dict(flat)
    d = tmp_path_factory.mktemp("controls") / "nets"
    save_networks(d, tiny_gan.G_KW, tiny_gan.D_KW, dict(G=g, D=g, G_ema=g), class_names=NAMES)
    return open_run(d)


@functools.lru_cache(maxsize=None)
def _synth_fn(model):
    return jax.jit(lambda v, w: model.apply(v, w, noise_mode="const", method=type(model).synthesize))


def _synth(run, ws):
    """The reference: G.synthesize on the whole batch (padded to 8: one compile), const noise."""
    ws = np.asarray(ws, np.float32)
    pad = np.zeros((8 - len(ws),) + ws.shape[1:], np.float32)
    return np.asarray(_synth_fn(run.model)(run.variables, np.concatenate([ws, pad])))[:len(ws)]


def test_parse_seeds_and_layers():
    assert controls.parse_seeds("0-3,7,10-12") == [0, 1, 2, 3, 7, 10, 11, 12]
    assert controls.parse_seeds(" 5 ") == [5]
    for bad, why in (("1,x", "'x' is not a number"), ("5-2", "runs backwards"), ("", "'' is not"),
                     ("4294967296", "out of range"), ("-1", "not a number")):
        with pytest.raises(ConfigError, match=why):
            controls.parse_seeds(bad)
    assert controls.parse_layers("0-1,3", 4) == [0, 1, 3]
    with pytest.raises(ConfigError, match=r"--layers '2-4'.*has 4 ws: layers 0-3"):
        controls.parse_layers("2-4", 4)
    assert controls.default_layers(18) == list(range(7)) and controls.default_layers(4) == [0, 1]


def test_class_names_and_truncation(run):
    assert controls.class_index(run, "mild") == 1 and controls.class_index(run, "2") == 2
    with pytest.raises(ConfigError, match="its classes are healthy, mild, severe"):
        controls.class_index(run, "moderate")
    with pytest.raises(ConfigError, match="conditional; pick one of its classes: healthy, mild, severe"):
        controls.ws_for(run, [1], None)
    seeds = [3, 4, 5]
    z, c = controls.seed_z(seeds, run.z_dim), controls.one_hot(run, 1, 3)
    np.testing.assert_array_equal(z[1], np.random.RandomState(4).randn(run.z_dim).astype(np.float32))
    plain = controls.ws_for(run, seeds, "mild")
    np.testing.assert_array_equal(plain, controls.map_z(run, z, c))     # psi 1: untruncated
    model_trunc = jax.jit(lambda v, z, c: run.model.apply(v, z, c, 0.5, method=type(run.model).map))(
        run.variables, z, c)
    np.testing.assert_allclose(controls.ws_for(run, seeds, "mild", psi=0.5), model_trunc, atol=1e-5)
    cut = controls.ws_for(run, seeds, "mild", psi=0.5, cutoff=2)
    np.testing.assert_array_equal(cut[:, 2:], plain[:, 2:])             # layers >= cutoff untouched
    np.testing.assert_allclose(cut[:, :2], np.asarray(model_trunc)[:, :2], atol=1e-5)
    mean = controls.class_mean_w(run, "mild", n=100)
    rng = np.random.default_rng([0, 2])
    want = controls.map_z(run, rng.standard_normal([100, run.z_dim]).astype(np.float32),
                          controls.one_hot(run, 1, 100))[:, 0].mean(0)
    np.testing.assert_allclose(mean, want, rtol=1e-6)
    assert np.abs(mean - controls.class_mean_w(run, "severe", n=100)).max() > 1e-3
    at_mean = controls.ws_for(run, seeds, "mild", psi=0.0, centre="class", class_mean_n=100)
    np.testing.assert_array_equal(at_mean, np.broadcast_to(mean, at_mean.shape))
    imgs = controls.render(run, at_mean)
    for img in imgs:                                                    # every seed: the class mean's image
        np.testing.assert_allclose(img, _synth(run, np.broadcast_to(mean, (1,) + at_mean.shape[1:]))[0],
                                   atol=1e-5)
    with pytest.raises(ConfigError, match="--cutoff 5: give 0 .. 4"):
        controls.ws_for(run, seeds, "mild", psi=0.5, cutoff=5)
    uncond = dataclasses.replace(run, model=run.model.clone(c_dim=0))    # no weights needed to refuse
    with pytest.raises(ConfigError, match="--class 'mild': .* is unconditional"):
        controls.class_index(uncond, "mild")
    with pytest.raises(ConfigError, match="--centre class: .* is unconditional; use --centre global"):
        controls.check_truncation(uncond, 0.5, None, "class")


def test_style_mix_interpolation_and_noise(run):
    row_ws, col_ws, mixed = controls.style_mix(run, [1, 2], [3, 4, 5], [0, 2], "healthy", psi=0.7)
    assert mixed.shape == (2, 3, 4, 16)
    want = row_ws[1].copy()
    want[[0, 2]] = col_ws[2][[0, 2]]
    np.testing.assert_array_equal(mixed[1, 2], want)
    cells = controls.render(run, mixed.reshape(6, 4, 16))
    np.testing.assert_allclose(cells, _synth(run, mixed.reshape(6, 4, 16)), atol=1e-5)
    none = controls.mix_ws(row_ws, col_ws, [])
    every = controls.mix_ws(row_ws, col_ws, range(4))
    np.testing.assert_array_equal(none[:, 1], row_ws)
    np.testing.assert_array_equal(every[1], col_ws)
    with pytest.raises(ConfigError, match=r"--layers: \[4\] out of range"):
        controls.style_mix(run, [1], [2], [1, 4], "healthy")

    seeds = [1, 5, 9]
    ends = controls.ws_for(run, seeds, "severe")
    for space in ("w", "z"):
        path = controls.interpolate(run, seeds, 4, space, "severe")
        assert path.shape == (9, 4, 16)
        np.testing.assert_allclose(path[[0, 4, 8]], ends, atol=1e-6)
    w_path = controls.interpolate(run, seeds, 4, "w", "severe")
    np.testing.assert_allclose(w_path[2], (ends[0] + ends[1]) / 2, atol=1e-6)

    const = controls.render(run, ends)
    rnd = controls.render(run, ends, "random", noise_seeds=seeds)
    again = controls.render(run, ends[::-1], "random", noise_seeds=seeds[::-1])
    np.testing.assert_allclose(rnd, again[::-1], atol=1e-6)             # noise follows the seed
    assert np.abs(rnd - const).max() > 1e-3


def test_projected_w_files(run, tmp_path):
    ws = controls.ws_for(run, [7, 8], "mild")
    np.savez(tmp_path / "one.npz", w=ws[:1])                           # NVIDIA's [1, num_ws, w_dim]
    np.savez(tmp_path / "flat.npz", w=ws[0])                           # [num_ws, w_dim]
    np.save(tmp_path / "many.npy", ws)                                  # [N, num_ws, w_dim]
    np.testing.assert_array_equal(controls.load_projected_w(tmp_path / "one.npz", run), ws[:1])
    np.testing.assert_array_equal(controls.load_projected_w(tmp_path / "flat.npz", run), ws[:1])
    np.testing.assert_array_equal(controls.load_projected_w(tmp_path / "many.npy", run), ws)
    np.testing.assert_allclose(controls.render(run, ws), _synth(run, ws), atol=1e-5)
    np.savez(tmp_path / "bad.npz", w=ws[:, :3])
    with pytest.raises(ConfigError, match=r"shape \[2, 3, 16\], but .* takes ws of shape \[N, 4, 16\]"):
        controls.load_projected_w(tmp_path / "bad.npz", run)
    np.savez(tmp_path / "nokey.npz", latents=ws)
    with pytest.raises(ConfigError, match="no array 'w' \\(it has latents\\)"):
        controls.load_projected_w(tmp_path / "nokey.npz", run)
    (tmp_path / "text.npz").write_text("not numbers")
    with pytest.raises(ConfigError, match="text.npz: not a NumPy .npz/.npy file"):
        controls.load_projected_w(tmp_path / "text.npz", run)


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def test_command_modes(run, tmp_path):
    out = tmp_path / "pics"
    images_command.main(["seeds", run.path, "--out", str(out), "--seeds", "2-4", "--class", "mild", "--psi", "0.6"])
    ws = controls.ws_for(run, [2, 3, 4], "mild", psi=0.6)
    want = to_uint8(controls.render(run, ws))
    np.testing.assert_array_equal(_png(out / "mild_seed0003.png"), want[1])
    np.testing.assert_array_equal(np.load(out / "mild_seeds_ws.npz")["w"], ws)
    rec = json.loads((out / "mild_seeds.json").read_text())
    assert (rec["seeds"], rec["cls"], rec["psi"]) == ([2, 3, 4], "mild", 0.6)
    images_command.main(["w", run.path, "--out", str(out), "--projected_w", str(out / "mild_seeds_ws.npz")])
    np.testing.assert_array_equal(_png(out / "projected_0002.png"), want[2])   # the round trip

    images_command.main(["mix", run.path, "--out", str(out), "--rows", "1,2", "--cols", "3-5", "--layers", "0-1",
                 "--class", "healthy"])
    _, _, mixed = controls.style_mix(run, [1, 2], [3, 4, 5], [0, 1], "healthy")
    grid = _png(out / "healthy_mix.png")
    cell = to_uint8(controls.render(run, mixed[1, 0][None]))[0]          # row 2, col 1 of the cells
    scale = 64 // 8
    margin = grid.shape[1] - 4 * 8 * scale                                # the row-label margin
    y, x = 2 * 8 * scale, margin + 1 * 8 * scale
    np.testing.assert_array_equal(grid[y:y + 8 * scale:scale, x:x + 8 * scale:scale], cell)
    assert grid.shape[0] == 3 * 8 * scale

    images_command.main(["interp", run.path, "--out", str(out), "--seeds", "1,5,9", "--steps", "3", "--class", "2"])
    with Image.open(out / "severe_interp.gif") as gif:
        assert gif.n_frames == 7 and gif.size == (128, 128)
    assert _png(out / "severe_interp.png").shape[0] == 2 * 64


def test_command_refusals(run, tmp_path, capsys):
    out = tmp_path / "new"
    cases = [
        (["seeds", run.path, "--out", str(out), "--seeds", "1", "--class", "moderate"],
         "its classes are healthy, mild, severe"),
        (["mix", run.path, "--out", str(out), "--rows", "1", "--cols", "2", "--layers", "3-4",
          "--class", "mild"], "--layers '3-4': 4 is out of range"),
        (["seeds", run.path, "--out", str(out), "--seeds", "1-x", "--class", "mild"], "--seeds '1-x'"),
        (["interp", run.path, "--out", str(out), "--seeds", "1", "--class", "mild"], "at least two seeds"),
        (["seeds", run.path, "--out", str(out), "--seeds", "1", "--class", "mild", "--noise_mode", "loud"],
         "--noise_mode 'loud'"),
        (["w", run.path, "--out", str(out), "--projected_w", str(tmp_path / "none.npz")], "no such file"),
    ]
    for argv, why in cases:
        with pytest.raises(ConfigError, match=why):
            images_command.main(argv)
        assert not out.exists()                                          # nothing created
    for kind in ("dcgan", "classifier"):
        other = tmp_path / kind
        write_descriptor(other, kind, class_names=NAMES, resolution=8, channels=3)
        with pytest.raises(UserError, match=f"is a {kind} run; these controls need a StyleGAN2 run"):
            images_command.main(["seeds", str(other), "--out", str(out), "--seeds", "1"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "holiday.jpg").write_text("x")
    with pytest.raises(OutputError, match="not empty and was not written by jaxgen"):
        images_command.main(["seeds", run.path, "--out", str(mine), "--seeds", "1", "--class", "mild"])
    assert sorted(p.name for p in mine.iterdir()) == ["holiday.jpg"]
    assert not out.exists()


def test_counts_are_bounded_before_anything_is_made(run):
    """Seeds, interpolation frames, mix cells, class-mean latents and projector settings have
    upper bounds, checked from the numbers before any list or array of that size is made."""
    assert len(controls.parse_seeds("0-9999")) == controls.MAX_SEEDS == 10_000
    for text, count in (("0-10000", "10,001"), ("0-5000,0-5000", "10,002"), ("0-99999999", "100,000,000")):
        with pytest.raises(ConfigError, match=f"--seeds '{text}': {count} values, over the 10,000 one call"):
            controls.parse_seeds(text)
    assert len(controls.interpolate(run, [1, 2], 1023, cls="mild")) == controls.MAX_FRAMES == 1024
    with pytest.raises(ConfigError, match=r"--steps 1024 with 2 seeds: 1,025 frames, over the 1024 .* "
                                          r"give at most --steps 1023"):
        controls.interpolate(run, [1, 2], 1024, cls="mild")
    with pytest.raises(ConfigError, match="--steps 100000000 with 3 seeds: 200,000,001 frames"):
        controls.interpolate(run, [1, 2, 3], 10 ** 8, cls="mild")
    with pytest.raises(ConfigError, match="--rows x --cols: 33 x 32 = 1,056 cells, over the 1024"):
        controls.style_mix(run, list(range(33)), list(range(32)), [0], "mild")
    with pytest.raises(ConfigError, match=r"n=10001 latents \(--class_mean_n\): give 1 .. 10000"):
        controls.class_mean_w(run, "mild", n=10_001)
    for field, value in (("steps", 100_001), ("w_avg_samples", 10 ** 9), ("inception_size", 30_000)):
        with pytest.raises(ConfigError, match=f"--{field} {value} is over"):
            ProjectConfig(**{field: value}).check()
    assert ProjectConfig(steps=100_000, w_avg_samples=100_000, inception_size=1024).check().steps == 100_000


def test_seeds_are_written_a_chunk_at_a_time_and_pictures_are_bounded(run, tmp_path, monkeypatch):
    monkeypatch.setattr(images, "RENDER_CHUNK", 3)
    monkeypatch.setattr(images, "GRID_MAX", 4)
    out = tmp_path / "pics"
    images_command.main(["seeds", run.path, "--out", str(out), "--seeds", "2-6", "--class", "mild"])
    want = to_uint8(controls.render(run, controls.ws_for(run, [2, 3, 4, 5, 6], "mild")))
    for i, seed in enumerate(range(2, 7)):                 # chunks [2, 3, 4] and [5, 6]
        np.testing.assert_array_equal(_png(out / f"mild_seed{seed:04d}.png"), want[i])
    grid = _png(out / "mild_seeds_grid.png")               # the first 4 seeds, upscaled to 64 px
    assert grid.shape == (64, 4 * 64, 3)
    np.testing.assert_array_equal(grid[::8, 3 * 64::8], want[3])
    monkeypatch.setattr(images, "PICTURE_BYTES", 10 * 128 * 128 * 3)     # 10 GIF frames of 128 px
    with pytest.raises(ConfigError, match=r"--steps 5 with 3 seeds: 11 images of 8 px .* give at most 10 images"):
        images_command.main(["interp", run.path, "--out", str(tmp_path / "x"), "--seeds", "1,5,9", "--steps", "5",
                     "--class", "2"])
    with pytest.raises(ConfigError, match=r"--rows x --cols: 12 images of 8 px"):
        images_command.main(["mix", run.path, "--out", str(tmp_path / "x"), "--rows", "1,2", "--cols", "3-5",
                     "--class", "mild"])
    assert not (tmp_path / "x").exists()


# Sets a 4 GB address-space limit (`ulimit -v 4000000`), then becomes `python argv`; exec keeps the
# limit (not preexec_fn: a fork that runs Python in this JAX-threaded process may deadlock).
_LIMITED = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (4 * 10 ** 9, 4 * 10 ** 9)); "
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")


def test_huge_counts_end_in_one_line_under_a_4gb_address_space(run, tmp_path):
    """Before, `seeds --seeds 0-99999999` built 10**8 ints and `interp --steps 100000000` 2 x 10**8
    frame weights: a MemoryError traceback here, 4.3 GB and no output without the limit."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAXGEN_JAX_CACHE="")
    env.pop("JAXGEN_DEBUG", None)
    repo = pathlib.Path(__file__).resolve().parents[2]
    for argv, message in ((["seeds", "--seeds", "0-99999999"], "--seeds '0-99999999': 100,000,000 values"),
                          (["interp", "--seeds", "1,5,9", "--steps", "100000000"], "200,000,001 frames")):
        cmd = [sys.executable, "-c", _LIMITED, "-m", "jaxgen", "images", argv[0], str(run.path), "--out",
               str(tmp_path / "out"), "--class", "mild", *argv[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=repo)
        lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith(("WARNING", "I0", "W0"))]
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr[-2000:]
    assert not (tmp_path / "out").exists()
