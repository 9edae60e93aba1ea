"""Parity of the Flax StyleGAN2 G and D with NVIDIA's stylegan2-ada-pytorch.

Golden arrays come from the official code (shared/fixtures, see FORMAT.md):
mapping, synthesis (noise const/none, psi 1/0.7, fused and non-fused
modconv), every block's outputs and D's logits must match to 1e-4 absolute.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.stylegan2.nvidia import (ConversionError, discriminator_from_state_dict, generator_from_state_dict,
                                      state_dict_to_variables, variables_to_state_dict,
                                      reference_variables, build_generator)
from jaxgen.stylegan2.generator import Generator

ATOL = 1e-4
NAMES = ["sg2_small", "sg2_cond"]


def nhwc(a):
    return np.asarray(a).transpose(0, 2, 3, 1)


class Fixture:
    def __init__(self, fixtures_dir, name):
        self.cfg = json.loads((fixtures_dir / f"{name}_config.json").read_text())
        self.G_sd = dict(np.load(fixtures_dir / f"{name}_G.npz"))
        self.D_sd = dict(np.load(fixtures_dir / f"{name}_D.npz"))
        self.gold = dict(np.load(fixtures_dir / f"{name}_golden.npz"))
        self.G, self.gv = generator_from_state_dict(self.G_sd, self.cfg["G_init_kwargs"])
        self.D, self.dv = discriminator_from_state_dict(self.D_sd, self.cfg["D_init_kwargs"])
        self.synth = jax.jit(lambda v, ws, fused: self.G.apply(
            v, ws, "const", fused, method=Generator.synthesize), static_argnums=2)


@pytest.fixture(scope="module", params=NAMES)
def fx(request, fixtures_dir):
    return Fixture(fixtures_dir, request.param)


def _close(name, got, want, atol=ATOL):
    got = np.asarray(got)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    err = float(np.abs(got - want).max())
    assert err <= atol, f"{name}: max abs diff {err:.3g} > {atol}"
    return err


def test_mapping_matches(fx):
    g = fx.gold
    ws, inter = fx.G.apply(fx.gv, g["z"], g["c"], method=Generator.map,
                           capture_intermediates=True, mutable=["intermediates"])
    _close("ws_psi1", ws, g["ws_psi1"])
    m = inter["intermediates"]["mapping"]
    num_layers = fx.G.mapping_layers
    for i in range(num_layers):
        _close(f"mapping fc{i}", m[f"fc{i}"]["__call__"][0], g[f"inter_mapping_fc{i}"])
    if fx.G.c_dim:
        _close("mapping embed", m["embed"]["__call__"][0], g["inter_mapping_embed"])
    ws7 = fx.G.apply(fx.gv, g["z"], g["c"], 0.7, method=Generator.map)
    _close("ws_psi0.7", ws7, g["ws_psi0.7"])


def test_truncation_cutoff_only_touches_first_ws(fx):
    g = fx.gold
    ws = fx.G.apply(fx.gv, g["z"], g["c"], 0.7, 3, method=Generator.map)
    _close("cutoff head", ws[:, :3], g["ws_psi0.7"][:, :3])
    _close("cutoff tail", ws[:, 3:], g["ws_psi1"][:, 3:])
    # psi = 0 collapses every w onto w_avg.
    ws0 = fx.G.apply(fx.gv, g["z"], g["c"], 0.0, method=Generator.map)
    w_avg = fx.G_sd["mapping.w_avg"]
    _close("psi0", ws0, np.broadcast_to(w_avg, ws0.shape), atol=1e-6)


@pytest.mark.parametrize("fused", [False, True], ids=["nonfused", "fused"])
def test_synthesis_images_match(fx, fused):
    g = fx.gold
    for ws_key, suffix in [("ws_psi1", ""), ("ws_psi0.7", "_psi0.7")]:
        ws = jnp.asarray(g[ws_key])
        for mode in ("const", "none"):
            img = fx.G.apply(fx.gv, ws, mode, fused, method=Generator.synthesize)
            _close(f"img_{mode}{suffix}", img, nhwc(g[f"img_{mode}{suffix}"]))


def test_full_generator_call_equals_mapping_then_synthesis(fx):
    g = fx.gold
    img = fx.G.apply(fx.gv, g["z"], g["c"], noise_mode="const")
    _close("G(z, c)", img, nhwc(g["img_const"]))


def test_synthesis_block_outputs_match(fx):
    g = fx.gold
    _, inter = fx.G.apply(fx.gv, jnp.asarray(g["ws_psi1"]), "const", method=Generator.synthesize,
                          capture_intermediates=True, mutable=["intermediates"])
    s = inter["intermediates"]["synthesis"]
    checked = 0
    for res in fx.cfg["derived"]["synthesis_block_resolutions"]:
        x, img = s[f"b{res}"]["__call__"][0]
        _close(f"b{res} x", x, nhwc(g[f"inter_synth_b{res}_x"]))
        _close(f"b{res} img", img, nhwc(g[f"inter_synth_b{res}_img"]))
        _close(f"b{res} torgb", s[f"b{res}"]["torgb"]["__call__"][0], nhwc(g[f"inter_synth_b{res}_torgb"]))
        if res >= 8:
            _close(f"b{res} conv0", s[f"b{res}"]["conv0"]["__call__"][0],
                   nhwc(g[f"inter_synth_b{res}_conv0"]))
        checked += 1
    assert checked == len(fx.cfg["derived"]["synthesis_block_resolutions"])


def test_discriminator_logits_match(fx):
    g = fx.gold
    for key in ["img_const", "img_none", "img_const_psi0.7", "img_none_psi0.7", "real_img"]:
        logit_key = "logits_real" if key == "real_img" else f"logits_{key}"
        logits = fx.D.apply(fx.dv, nhwc(g[key]), g["c"])
        _close(logit_key, logits, g[logit_key])


def test_discriminator_block_outputs_match(fx):
    g = fx.gold
    _, inter = fx.D.apply(fx.dv, nhwc(g["img_const"]), g["c"], capture_intermediates=True,
                          mutable=["intermediates"])
    d = inter["intermediates"]
    for res in fx.cfg["derived"]["D_block_resolutions"]:
        x, img = d[f"b{res}"]["__call__"][0]
        assert img is None  # resnet: the image is only read by the first block
        _close(f"D b{res} x", x, nhwc(g[f"inter_D_b{res}_x"]))
    b4 = d["b4"]
    _close("D mbstd", b4["mbstd"]["__call__"][0], nhwc(g["inter_D_b4_mbstd"]))
    _close("D conv", b4["conv"]["__call__"][0], nhwc(g["inter_D_b4_conv"]))
    _close("D fc", b4["fc"]["__call__"][0], g["inter_D_b4_fc"])
    _close("D out", b4["out"]["__call__"][0], g["inter_D_b4_out"])
    if fx.D.c_dim:
        _close("D cmap", d["mapping"]["__call__"][0], g["inter_D_mapping_cmap"])


def test_jitted_synthesis_matches(fx):
    ws = jnp.asarray(fx.gold["ws_psi1"])
    for fused in (False, True):
        _close(f"jit fused={fused}", fx.synth(fx.gv, ws, fused), nhwc(fx.gold["img_const"]))


def test_random_noise_is_seeded_and_scaled_by_strength(fx):
    ws = jnp.asarray(fx.gold["ws_psi1"])
    run = lambda seed: fx.G.apply(fx.gv, ws, "random", method=Generator.synthesize,  # noqa: E731
                                  rngs={"noise": jax.random.key(seed)})
    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.abs(a - c).max()) > 1e-3
    # With every noise_strength zeroed, random noise has no effect at all.
    zeroed = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.zeros_like(v) if "noise_strength" in jax.tree_util.keystr(p) else v, fx.gv)
    none = fx.G.apply(zeroed, ws, "none", method=Generator.synthesize)
    rnd = fx.G.apply(zeroed, ws, "random", method=Generator.synthesize, rngs={"noise": jax.random.key(3)})
    np.testing.assert_allclose(np.asarray(rnd), np.asarray(none), atol=1e-6)


def test_state_dict_round_trip(fx):
    back = variables_to_state_dict(fx.gv)
    expected = {k: v for k, v in fx.G_sd.items() if not k.endswith("resample_filter")}
    assert sorted(back) == sorted(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    assert len(expected) + sum(k.endswith("resample_filter") for k in fx.G_sd) == len(fx.G_sd)


def test_param_counts_match_official(fx):
    count = lambda v: sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(v["params"]))  # noqa: E731
    assert count(fx.gv) == fx.cfg["derived"]["G_num_params"]
    assert count(fx.dv) == fx.cfg["derived"]["D_num_params"]


def test_wrong_config_names_the_mismatching_keys(fixtures_dir):
    cfg = json.loads((fixtures_dir / "sg2_small_config.json").read_text())
    sd = dict(np.load(fixtures_dir / "sg2_small_G.npz"))
    bad = dict(cfg["G_init_kwargs"], mapping_kwargs={"num_layers": 3})
    with pytest.raises(ConversionError, match=r"missing key mapping\.fc2\.weight"):
        generator_from_state_dict(sd, bad)
    bad_res = dict(cfg["G_init_kwargs"], img_resolution=64)
    with pytest.raises(ConversionError, match=r"synthesis\.b64"):
        generator_from_state_dict(sd, bad_res)
    g = build_generator(cfg["G_init_kwargs"])
    ref = reference_variables(g)
    sd_wrong = dict(sd)
    sd_wrong["synthesis.b8.conv0.weight"] = np.zeros([64, 64, 1, 1], np.float32)
    with pytest.raises(ConversionError, match=r"synthesis\.b8\.conv0\.weight: shape \(64, 64, 1, 1\)"):
        state_dict_to_variables(sd_wrong, ref)
