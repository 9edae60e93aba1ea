"""StyleGAN2 loss values and gradients vs NVIDIA's StyleGAN2Loss (shared/fixtures).

The reference ran accumulate_gradients for Gmain, Greg, Dmain and Dreg with
gain 1, const noise, no style mixing, r1_gamma 1, pl_weight 2, pl_mean 0 and
train-mode (non-fused) modconv; see FORMAT.md.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.stylegan2.nvidia import discriminator_from_state_dict, generator_from_state_dict, variables_to_state_dict
from jaxgen.stylegan2 import loss as L


# Gradients and second-order gradients compile slowly; the forward networks' golden parity
# (test_parity.py) keeps the optimised build, these compare the losses with most
# optimisation off (the same HLO; float32 round-off apart, well inside the tolerances).
XLA_FAST_COMPILE = True


def nhwc(a):
    return jnp.asarray(np.asarray(a).transpose(0, 2, 3, 1))


def _close(name, got, want, rtol=1e-4, atol_frac=1e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: {got.shape} != {want.shape}"
    atol = atol_frac * max(float(np.abs(want).max()), 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


class Setup:
    def __init__(self, fixtures_dir, name):
        cfg = json.loads((fixtures_dir / f"{name}_config.json").read_text())
        G, gv = generator_from_state_dict(dict(np.load(fixtures_dir / f"{name}_G.npz")), cfg["G_init_kwargs"])
        D, dv = discriminator_from_state_dict(dict(np.load(fixtures_dir / f"{name}_D.npz")), cfg["D_init_kwargs"])
        self.gv, self.dv = gv, dv
        self.nets = L.Nets(G, D)
        lk = cfg["loss_kwargs"]
        self.cfg = L.LossConfig(r1_gamma=lk["r1_gamma"], pl_weight=lk["pl_weight"],
                                pl_batch_shrink=lk["pl_batch_shrink"], pl_decay=lk["pl_decay"],
                                style_mixing_prob=lk["style_mixing_prob"], noise_mode="const")
        gold = np.load(fixtures_dir / f"{name}_golden.npz")
        self.z, self.c, self.real = jnp.asarray(gold["z"]), jnp.asarray(gold["c"]), nhwc(gold["real_img"])
        self.ref = dict(np.load(fixtures_dir / f"{name}_loss.npz"))
        grads_file = fixtures_dir / f"{name}_loss_grads.npz"
        self.ref_grads = dict(np.load(grads_file)) if grads_file.exists() else None
        self.rng = jax.random.key(0)


@pytest.fixture(scope="module", params=["sg2_small", "sg2_cond"])
def s(request, fixtures_dir):
    return Setup(fixtures_dir, request.param)


_JITTED = {}


def phase_grads(loss_fn, *args, **kwargs):
    """L.phase_grads under jax.jit, as in training (op by op it takes far longer).

    The networks and the loss config are static; everything else is traced, `gain`
    included (its default 1.0 is passed explicitly), so test_gain_scales_loss_and_grads
    reuses test_d_r1's compiled program.
    """
    static = tuple(isinstance(a, (L.Nets, L.LossConfig)) for a in args)
    key = (loss_fn, static) + tuple(a for a, st in zip(args, static) if st)
    if key not in _JITTED:
        def f(dynamic, kw):
            it = iter(dynamic)
            return L.phase_grads(loss_fn, *(a if st else next(it) for a, st in zip(args, static)), **kw)
        _JITTED[key] = jax.jit(f)
    kwargs.setdefault("gain", 1.0)
    return _JITTED[key]([a for a, st in zip(args, static) if not st], kwargs)


def _check_grads(s, phase, net, grads):
    if s.ref_grads is None:
        return 0
    got = variables_to_state_dict({"params": grads})
    prefix = f"{phase}/{net}/"
    ref = {k[len(prefix):]: v for k, v in s.ref_grads.items() if k.startswith(prefix)}
    assert sorted(got) == sorted(ref), f"{phase}: parameter sets differ"
    for k, v in ref.items():
        _close(f"{phase} grad {k}", got[k], v, rtol=1e-4, atol_frac=1e-4)
    return len(ref)


def test_g_main(s):
    loss, grads, aux = phase_grads(L.g_main_loss, s.gv["params"], s.gv["buffers"], s.dv["params"],
                                     s.z, s.c, s.rng, s.nets, s.cfg)
    _close("Gmain gen_img", aux["img"], nhwc(s.ref["Gmain_gen_img"]), atol_frac=1e-5)
    _close("Gmain scores", aux["logits"], s.ref["Gmain/Loss/scores/fake"])
    _close("Gmain loss", aux["loss"], s.ref["Gmain/Loss/G/loss"])
    _close("Gmain mean", loss, s.ref["direct_G_loss_mean"], rtol=1e-5)
    n = _check_grads(s, "Gmain", "G", grads)
    assert s.ref_grads is None or n == 56


def test_g_pl(s):
    randn = nhwc(s.ref["Greg_pl_noise_randn"])
    loss, grads, aux = phase_grads(L.g_pl_loss, s.gv["params"], s.gv["buffers"], s.z, s.c, s.rng,
                                     jnp.zeros(()), s.nets, s.cfg, pl_noise_randn=randn)
    _close("Greg gen_img", aux["img"], nhwc(s.ref["Greg_gen_img"]))
    _close("pl_penalty", aux["pl_penalty"], s.ref["Greg/Loss/pl_penalty"])
    _close("pl_mean", aux["pl_mean"], s.ref["Greg_pl_mean_after"])
    _close("Greg loss", loss, np.mean(s.ref["Greg/Loss/G/reg"]))
    n = _check_grads(s, "Greg", "G", grads)
    assert s.ref_grads is None or n == 56


def test_d_main(s):
    gen_img = nhwc(s.ref["Dmain_gen_img"])
    loss, grads, aux = phase_grads(L.d_main_loss, s.dv["params"], gen_img, s.c, s.real, s.c,
                                     s.rng, s.nets)
    _close("Dmain fake", aux["fake_logits"], s.ref["Dmain/Loss/scores/fake"])
    _close("Dmain real", aux["real_logits"], s.ref["Dmain/Loss/scores/real"])
    _close("Dmain loss", aux["loss"], s.ref["Dmain/Loss/D/loss"])
    _close("Dmain mean", loss, s.ref["direct_D_loss_fake_mean"] + s.ref["direct_D_loss_real_mean"], rtol=1e-5)
    n = _check_grads(s, "Dmain", "D", grads)
    assert s.ref_grads is None or n == 23


def test_d_r1(s):
    loss, grads, aux = phase_grads(L.d_r1_loss, s.dv["params"], s.real, s.c, s.rng, s.nets, s.cfg)
    _close("Dreg real", aux["real_logits"], s.ref["Dreg/Loss/scores/real"])
    _close("r1_penalty", aux["r1_penalty"], s.ref["Dreg/Loss/r1_penalty"])
    _close("Dreg loss", loss, np.mean(s.ref["Dreg/Loss/D/reg"]))
    n = _check_grads(s, "Dreg", "D", grads)
    assert s.ref_grads is None or n == 23


def test_gain_scales_loss_and_grads(s):
    args = (s.dv["params"], s.real, s.c, s.rng, s.nets, s.cfg)
    l1, g1, _ = phase_grads(L.d_r1_loss, *args)
    l16, g16, _ = phase_grads(L.d_r1_loss, *args, gain=16.0)
    np.testing.assert_allclose(float(l16), 16 * float(l1), rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g16)):
        np.testing.assert_allclose(np.asarray(b), 16 * np.asarray(a), rtol=1e-5, atol=1e-9)


def test_style_mixing_changes_the_tail_ws_only(s):
    cfg = L.LossConfig(style_mixing_prob=1.0, noise_mode="const")
    ws_plain, _ = L.map_with_mixing(s.nets, s.gv["params"], s.gv["buffers"], s.z, s.c, s.rng,
                                    L.LossConfig(style_mixing_prob=0.0))
    ws_mix, _ = L.map_with_mixing(s.nets, s.gv["params"], s.gv["buffers"], s.z, s.c, s.rng, cfg)
    same = np.all(np.isclose(np.asarray(ws_mix), np.asarray(ws_plain)), axis=(0, 2))
    cutoff = int(np.argmin(same))  # first w that differs
    assert 1 <= cutoff < ws_plain.shape[1]
    assert same[:cutoff].all() and not same[cutoff:].any()
