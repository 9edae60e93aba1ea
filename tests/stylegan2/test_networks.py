"""G and D build for every power-of-two resolution 4..1024 and 1 or 3 channels, conditional or not."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.stylegan2.discriminator import Discriminator
from jaxgen.stylegan2.generator import Generator
from jaxgen.stylegan2.synthesis import num_ws_for

XLA_FAST_COMPILE = True   # compile-bound, no golden files: see tests/conftest.py


@pytest.mark.parametrize("res,ch,c_dim", [(4, 3, 0), (8, 1, 2), (16, 3, 4), (1024, 3, 0), (256, 1, 3)])
def test_shapes_for_any_resolution_and_channels(res, ch, c_dim):
    G = Generator(z_dim=32, c_dim=c_dim, w_dim=32, img_resolution=res, img_channels=ch, mapping_layers=2,
                  channel_base=max(res * 4, 64), channel_max=32)
    D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=ch, channel_base=max(res * 4, 64),
                      channel_max=32)
    z, c = jnp.zeros([4, 32]), jnp.zeros([4, c_dim])
    img = jnp.zeros([4, res, res, ch])
    if res >= 256:  # shapes only (abstract evaluation): no compute for the big ones
        gv = jax.eval_shape(lambda k: G.init({"params": k}, z, c, noise_mode="none"), jax.random.key(0))
        out = jax.eval_shape(lambda v: G.apply(v, z, c, noise_mode="none"), gv)
        dv = jax.eval_shape(lambda k: D.init({"params": k}, img, c), jax.random.key(0))
        logits = jax.eval_shape(lambda v: D.apply(v, img, c), dv)
    else:
        gv = jax.jit(lambda k: G.init({"params": k}, z, c, noise_mode="none"))(jax.random.key(0))
        out = jax.jit(lambda v: G.apply(v, z, c, noise_mode="const"))(gv)
        dv = jax.jit(lambda k: D.init({"params": k}, img, c))(jax.random.key(1))
        logits = jax.jit(lambda v, x: D.apply(v, x, c))(dv, np.asarray(out))
        assert np.isfinite(np.asarray(out)).all() and np.isfinite(np.asarray(logits)).all()
    assert out.shape == (4, res, res, ch)
    assert logits.shape == (4, 1)
    assert G.num_ws == num_ws_for(res) == 2 * int(np.log2(res)) - 2


def test_bad_resolution_and_input_shape_errors():
    with pytest.raises(ValueError, match="power of two"):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=48, img_channels=3).init(
            {"params": jax.random.key(0)}, jnp.zeros([1, 8]), jnp.zeros([1, 0]))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=64, channel_max=16)
    with pytest.raises(ValueError, match=r"expects images \[N, 16, 16, 3\]"):
        D.init({"params": jax.random.key(0)}, jnp.zeros([2, 3, 16, 16]), jnp.zeros([2, 0]))
