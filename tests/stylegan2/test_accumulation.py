"""Gradient accumulation (config.train.batch_gpu): a step of 32 examples run as 4 rounds of 8
makes the same update as the 32 at once, and a batch_gpu that cannot split the batch is refused.

The step compared is step 0, so every phase runs (Gmain, Greg path length, Dmain, Dreg R1),
with ADA's full 'bgc' pipeline at p = 0.5, style mixing on every batch and 'const' synthesis
noise (random noise is drawn per round: same distribution, other numbers; see accumulation.py).

Tolerance. Both steps compute the same sums in another order (4 partial sums of 8 instead of
one of 32, another fusion of the scanned round), so they differ by float32 round-off, which
is relative to the size of what is summed: a whole gradient leaf, not each element. So every
leaf is compared with |acc - full| <= TOL * max|full leaf|, on what the step changed: the
parameter and G_ema steps (new - old, at most about lr), Adam's moments (mu = the gradient,
as beta1 = 0; nu ~ its square), the w_avg change, pl_mean, the ADA sums and the metrics.
Adam's epsilon is 1e-3 here (NVIDIA's is 1e-8): its first step is lr * g / (|g| + eps), and
with eps = 1e-8 a gradient element within round-off of zero can move its step by up to
2 lr, a conditioning problem of that comparison, not of the accumulation; with eps = 1e-3
the parameter step moves by at most lr * |dg| / eps.
Measured on a 2-core CPU: largest |acc - full| / max|leaf| 7.2e-5 (a G weight's step),
4.4e-5 (Adam's nu of a noise strength), w_avg 3.6e-6, metrics <= 1.8e-6, pl_mean 0. That is
this step's round-off floor: the SAME whole-batch step compiled with and without XLA's
optimisations differs by 6.8e-5 / 4.3e-5 / 7.2e-6 in the same places. TOL = 1e-3 leaves 14x
headroom; the mistakes it guards against are far larger: summed instead of averaged rounds
(Adam's nu x16), per-round pl_mean or w_avg updates, or rounds that draw other random numbers
than the whole batch (synthesis noise in 'random' mode moves the states by 10-100% of a leaf).
"""
import pathlib

import jax
import numpy as np
import pytest

import tiny_gan
from jaxgen.config import load_config
from jaxgen.errors import ConfigError
from jaxgen.stylegan2 import loss as L, networks, state as state_lib
from jaxgen.stylegan2.accumulation import WHOLE, Part, round_keys, take_round
from jaxgen.stylegan2.loss import LossConfig
from jaxgen.stylegan2.step import StepConfig, make_train_step, sample_labels
from jaxgen.stylegan2.train import step_config, train_and_evaluate

XLA_FAST_COMPILE = True   # both steps compile the same way in this process

REPO = pathlib.Path(__file__).resolve().parents[2]
BATCH, BATCH_GPU = 32, 8  # D's minibatch-std group size is 4 (tiny_gan.D_KW's default): divides 8
TOL = 1e-3                # of each leaf's largest magnitude (see the module docstring)


def _step_and_state(batch_gpu: int):
    """The tiny networks' jitted train step with `batch_gpu` (0 = whole batch) and its
    initial state (ADA p = 0.5)."""
    G, D = networks.build(tiny_gan.G_KW, tiny_gan.D_KW)
    g_vars, d_vars = networks.init_variables(G, D, jax.random.key(0))
    g_tx = state_lib.make_optimizer(state_lib.OptConfig(lr=0.002, eps=1e-3, reg_interval=4))
    d_tx = state_lib.make_optimizer(state_lib.OptConfig(lr=0.002, eps=1e-3, reg_interval=16))
    state = state_lib.init_state(g_vars, d_vars, g_tx, d_tx, ada_p=0.5)
    cfg = StepConfig(batch_size=BATCH, batch_gpu=batch_gpu, augment="fixed", ema_kimg=0.01,
                     loss=LossConfig(r1_gamma=1.0, style_mixing_prob=1.0, noise_mode="const"))
    step = make_train_step(cfg, G, D, g_tx, d_tx)
    return jax.jit(step, compiler_options=tiny_gan.FAST_COMPILE), state


def _batch():
    """Reals [32, 8, 8, 3] in [-1, 1], one-hot labels [32, 3] and the step's key."""
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, [BATCH, 8, 8, 3]).astype(np.float32)
    c = np.eye(3, dtype=np.float32)[rng.integers(0, 3, BATCH)]
    return real, c, jax.random.key(1)


def _changes(new, old):
    """What one step did to a state, leaf by leaf: parameter, G_ema and buffer steps (new - old),
    and the rest as they are (optimizer moments, pl_mean, ADA sums, counters)."""
    step = lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64)  # noqa: E731
    out = {k: jax.tree_util.tree_map(step, getattr(new, k), getattr(old, k))
           for k in ("g_params", "d_params", "ema_params", "g_buffers")}
    kept = ("g_opt", "d_opt", "pl_mean", "ada_sign_sum", "ada_count", "nimg")
    out.update({k: getattr(new, k) for k in kept})
    return out


def _worst(acc, full):
    """Largest |acc - full| / max|full leaf| over all leaves (0 where both are exactly 0)."""
    worst = 0.0
    for a, f in zip(jax.tree_util.tree_leaves(acc), jax.tree_util.tree_leaves(full)):
        a, f = np.asarray(a, np.float64), np.asarray(f, np.float64)
        err, scale = float(np.max(np.abs(a - f), initial=0.0)), float(np.max(np.abs(f), initial=0.0))
        worst = max(worst, err / scale if scale else err)
    return worst


def test_batch_of_32_as_4_rounds_of_8_equals_32_at_once():
    real, c, key = _batch()
    full_step, state = _step_and_state(0)
    acc_step, _ = _step_and_state(BATCH_GPU)
    full, m_full = full_step(state, real, c, key)
    acc, m_acc = acc_step(state, real, c, key)
    assert float(m_full["loss/pl_penalty_w"]) == float(m_full["loss/r1_penalty_w"]) == 1.0  # all 4 phases ran
    assert sorted(m_acc) == sorted(m_full)
    want, got = _changes(full, state), _changes(acc, state)
    moved = max(float(np.max(np.abs(d))) for d in jax.tree_util.tree_leaves(want["g_params"]))
    assert moved > 1e-3                                   # the step trained G (lr = 0.002)
    errors = {k: _worst(got[k], want[k]) for k in want}
    errors.update({f"metrics {k}": _worst(m_acc[k], m_full[k]) for k in m_full})
    print("largest |acc - full| / max|leaf|:", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < TOL, errors


def _micro_config(tmp_path, **train):
    """configs/acne.py:micro (batch 4, minibatch-std group 4) with its demo data under tmp_path."""
    c = load_config(str(REPO / "configs/acne.py") + ":micro")
    c.data.path, c.data.cache_dir = str(tmp_path / "demo"), ""
    c.train.update(train)
    return c


@pytest.mark.parametrize("batch_gpu, why", [(3, r"must be 0 \(off\) or divide the batch size 4"),
                                            (2, r"must be a multiple of the minibatch-std group size 4")])
def test_batch_gpu_that_cannot_split_the_batch_is_a_config_error(tmp_path, batch_gpu, why):
    with pytest.raises(ConfigError, match=rf"^--config\.train\.batch_gpu={batch_gpu} {why}") as e:
        train_and_evaluate(_micro_config(tmp_path, batch_gpu=batch_gpu), str(tmp_path / "run"))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "demo").exists()


def test_config_batch_gpu_reaches_the_step(tmp_path):
    c = _micro_config(tmp_path, batch_size=32, batch_gpu=8)
    assert (step_config(c).batch_gpu, step_config(c).rounds) == (8, 4)
    assert step_config(_micro_config(tmp_path)).rounds == 1     # default 0: the whole batch at once


def test_generated_labels_come_from_the_real_batch():
    """Generated labels are rows of the real batch's labels: a one-class (fixed-label) batch
    gives only that class, a mixed batch its frequencies, an unconditional one [B, 0]."""
    key = jax.random.key(0)
    one_class = np.eye(4, dtype=np.float32)[np.full(8, 2)]
    assert np.array_equal(np.asarray(sample_labels(key, 16, one_class)).argmax(-1), np.full(16, 2))
    mixed = np.eye(4, dtype=np.float32)[np.array([0, 0, 0, 1, 1, 1, 3, 3])]
    freq = np.bincount(np.asarray(sample_labels(key, 4000, mixed)).argmax(-1), minlength=4) / 4000
    np.testing.assert_allclose(freq, [3 / 8, 3 / 8, 0, 2 / 8], atol=0.03)   # 4.5 binomial sd
    assert sample_labels(key, 5, np.zeros((8, 0), np.float32)).shape == (5, 0)


def test_a_round_takes_its_strided_rows_of_the_draws_and_its_own_noise_key():
    """Round r of R holds rows r, r + R, ... of every per-sample array (inputs and draws), the
    batch's one style-mixing cutoff and its own synthesis-noise key; one round is the batch."""
    x = np.arange(16, dtype=np.float32).reshape(8, 2)
    key = jax.random.key(0)
    g = L.GDraws(L.Mixing(np.int32(3), x + 100), round_keys(key, 4))
    rows, gr = take_round((x, g), Part(np.int32(1), 4))
    assert np.array_equal(rows, x[[1, 5]]) and np.array_equal(gr.mixing.z2, x[[1, 5]] + 100)
    assert int(gr.mixing.cutoff) == 3
    assert np.array_equal(jax.random.key_data(gr.noise), jax.random.key_data(jax.random.fold_in(key, 1)))
    whole, gw = take_round((x, L.GDraws(g.mixing, round_keys(key, 1))), WHOLE)
    assert whole is x and np.array_equal(jax.random.key_data(gw.noise), jax.random.key_data(key))
