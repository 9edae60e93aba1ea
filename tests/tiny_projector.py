"""A tiny generator (8 px, 16 channels, w_dim 16) with its discriminator for the projector's tests
(tests/stylegan2/test_projector.py, tests/metrics/test_privacy.py, tests/workflows/test_project.py,
tests/commands/test_project.py).

Every projection there runs one image at a time (batch 1, CFG), so the modules compile one step
program; `shared_tiny` makes the set-up once per test process, so modules that run in the same
process share its Run and with it the compiled programs (all of them set XLA_FAST_COMPILE).
"""
import atexit
import functools
import pathlib
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxgen.harness.checkpoint import save_networks
from jaxgen.runs import open_run
from jaxgen.stylegan2 import networks
from jaxgen.stylegan2 import projector as P

G_KW = dict(z_dim=16, w_dim=16, c_dim=0, img_resolution=8, img_channels=3, channel_base=128, channel_max=16,
            mapping_layers=2)
D_KW = dict(c_dim=0, img_resolution=8, img_channels=3, channel_base=128, channel_max=16)
CFG = P.ProjectConfig(steps=60, w_avg_samples=1000, batch=1)


def save_tiny_networks(folder):
    """The tiny G (noise strengths 0.05: the noise buffers matter) and D saved as a networks
    directory `folder`; returns (G, its variables)."""
    G, D = networks.build(G_KW, D_KW)
    g, d = networks.init_variables(G, D, jax.random.key(0))
    flat = flatten_dict(g["params"])
    flat.update({k: jnp.float32(0.05) for k in flat if k[-1] == "noise_strength"})
    g = dict(g, params=unflatten_dict(flat))
    save_networks(folder, G_KW, D_KW, dict(G=g, D=d, G_ema=g))
    return G, g


def tiny_projection_setup(folder) -> dict:
    """A Run of the tiny G, its networks directory `folder`, targets G drew from known, truncated
    ws with its own const noise, and the targets' `floor`: their MSE against the same ws drawn
    with zero noise (what the projection, whose noise buffers start as fresh random draws, cannot
    be expected to recover)."""
    G, g = save_tiny_networks(folder)
    run = open_run(folder)   # as the command opens it: restored arrays are committed, and jit's cache knows
    w_avg, _ = P.w_stats(run, None, 1000)
    z = np.random.default_rng(1).standard_normal([5, 16]).astype(np.float32)
    w = w_avg + 0.5 * (np.asarray(G.apply(g, z, None, method=G.map)) - w_avg)     # psi 0.5
    targets = P.render(run, w)
    silent = P.render(run, w, {k: np.zeros_like(v) for k, v in P.noise_buffers(g).items()})
    floor = np.mean(np.square(targets - silent), axis=(1, 2, 3))
    return dict(run=run, targets=targets, nets=folder, floor=floor)


@functools.lru_cache(maxsize=None)
def shared_tiny() -> dict:
    """tiny_projection_setup in a temporary folder, once per process (removed at exit)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="jaxgen-tiny-projector-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return tiny_projection_setup(root / "nets")
