"""jaxgen.stylegan2.projection_loss: NVIDIA's learning-rate and w-noise schedules, and the noise
regulariser tells white from smooth noise."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.stylegan2 import projection_loss as PL
from jaxgen.stylegan2 import projector as P


def test_schedule_and_noise_regulariser():
    hp = P._hyper(P.ProjectConfig())
    lr = [float(PL.lr_at(t, hp)) for t in (0.0, 0.025, 0.5, 0.875, 1.0)]
    assert lr == pytest.approx([0.0, 0.05, 0.1, 0.1 * (0.5 - 0.5 * np.cos(0.5 * np.pi)), 0.0], abs=1e-7)
    assert float(PL.w_noise_scale(0.375, 2.0, hp)) == pytest.approx(2.0 * 0.05 * 0.25)
    rng = np.random.default_rng(0)
    white = jnp.asarray(rng.standard_normal([32, 32]), jnp.float32)
    # each term of white noise is a squared mean of s*s products of variance v^2: expected v^2 / s^2
    # on the 32, 16, 8 px levels (v = 1, 1/4, 1/16), two directions
    expect = 2 * sum((1 / 4 ** k) ** 2 / (32 / 2 ** k) ** 2 for k in range(3))
    reg_white = float(PL.noise_regularizer([white]))
    yy, xx = np.mgrid[:32, :32] / 32
    smooth = PL.normalize_noise(jnp.asarray(np.sin(2 * np.pi * xx) + np.cos(2 * np.pi * yy), jnp.float32))
    reg_smooth = float(PL.noise_regularizer([smooth]))
    print(f"noise regulariser: white {reg_white:.3g} (expected {expect:.3g}), smooth {reg_smooth:.3g}")
    assert reg_white < 3 * expect and reg_smooth > 1.0               # white ~0, smooth ~1 a term
    assert float(jnp.mean(smooth)) == pytest.approx(0, abs=1e-6)
    assert float(jnp.var(smooth)) == pytest.approx(1, abs=1e-5)
