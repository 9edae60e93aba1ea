"""jaxgen.stylegan2.projector: projecting G's own images recovers them (w and w+) and
malformed targets are refused. The files are tested in tests/workflows/test_project.py, the
command in tests/commands/test_project.py, the projection membership AUC in
tests/metrics/test_privacy.py, the loss pieces in tests/stylegan2/test_projection_loss.py.

One tiny generator (tests/tiny_projector.py); every projection runs one image at a time
(batch 1) so the whole module compiles one step program.
"""
import dataclasses

import numpy as np
import pytest

from jaxgen.errors import ConfigError
from jaxgen.stylegan2 import projector as P
from tiny_projector import CFG, shared_tiny

XLA_FAST_COMPILE = True


@pytest.fixture(scope="module")
def tiny():
    return shared_tiny()


@pytest.fixture(scope="module")
def fits(tiny):
    """Two of the targets projected in w and in w+ (60 steps each)."""
    return {wp: P.project_many(tiny["run"], tiny["targets"][:2], dataclasses.replace(CFG, w_plus=wp))
            for wp in (False, True)}


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


def test_refusals(tiny):
    with pytest.raises(ConfigError, match="targets must be images"):
        P.project_many(tiny["run"], np.zeros([8, 8, 3]), CFG)
    with pytest.raises(ConfigError, match="--inception_weight > 0 needs --inception_weights PATH"):
        P.project_many(tiny["run"], tiny["targets"][:1], dataclasses.replace(CFG, inception_weight=1.0))
