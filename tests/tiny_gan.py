"""A very small StyleGAN2 set-up (8x8 px, 16 channels) for fast training tests."""
import contextlib

import jax
import numpy as np

from jaxgen.stylegan2 import networks, state as state_lib
from jaxgen.stylegan2.loss import LossConfig
from jaxgen.stylegan2.step import StepConfig, make_train_step

G_KW = dict(z_dim=16, w_dim=16, c_dim=3, img_resolution=8, img_channels=3, channel_base=128,
            channel_max=16, mapping_layers=2)
D_KW = dict(c_dim=3, img_resolution=8, img_channels=3, channel_base=128, channel_max=16)

# The training tests check the loop's logic, not XLA's code generation, and their time
# is mostly compiling the train step: compile with most optimisation off, which halves
# that. The HLO is the same; results agree with an optimised build to float32 round-off
# (after a few GAN steps that is ~1e-5, so a run and its reference must be compiled the
# same way). FAST_COMPILE is for jax.jit(..., compiler_options=...) in this process;
# fast_compile() (a context, for in-process trainer runs) and fast_compile_env() (the
# environment of a train.py subprocess) both set jax_disable_most_optimizations, so the
# two compile to the same executable and share the persistent compilation cache.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@contextlib.contextmanager
def fast_compile():
    """Compile everything jitted inside the block with most XLA optimisation off."""
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", old)


def fast_compile_env(env):
    """A copy of `env` in which a train.py subprocess compiles as under `fast_compile()`."""
    return dict(env, JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def setup(batch=8, augment="ada", freeze_d=0, lr=0.002, seed=0, c_dim=3, net_kw=None, **step_kw):
    """net_kw: extra G and D kwargs (e.g. dtype, conv_clamp); step_kw: StepConfig fields."""
    net_kw = dict(net_kw or {}, c_dim=c_dim)
    G, D = networks.build(dict(G_KW, **net_kw), dict(D_KW, **net_kw))
    g_vars, d_vars = networks.init_variables(G, D, jax.random.key(seed))
    g_tx = state_lib.make_optimizer(state_lib.OptConfig(lr=lr, reg_interval=4))
    d_tx = state_lib.make_optimizer(state_lib.OptConfig(lr=lr, reg_interval=16),
                                    state_lib.freeze_d_fn(D.block_resolutions, freeze_d))
    st = state_lib.init_state(g_vars, d_vars, g_tx, d_tx)
    cfg = StepConfig(batch_size=batch, loss=LossConfig(r1_gamma=1.0), augment=augment,
                     ema_kimg=0.01, **step_kw)
    step = make_train_step(cfg, G, D, g_tx, d_tx)
    rng = np.random.default_rng(seed)
    real = rng.uniform(-1, 1, [batch, 8, 8, 3]).astype(np.float32)
    c = np.eye(c_dim, dtype=np.float32)[rng.integers(0, c_dim, batch)] if c_dim else \
        np.zeros([batch, 0], np.float32)
    return dict(G=G, D=D, state=st, step=step, real=real, c=c, key=jax.random.key(seed + 1))
