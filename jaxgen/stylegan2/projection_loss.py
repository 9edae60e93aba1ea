"""The projector's objective (jaxgen/stylegan2/projector.py optimises it): pure pieces, jittable.

NVIDIA's schedule (stylegan2-ada-pytorch projector.py): the learning rate ramped up linearly
over the first lr_rampup of the steps and down (half-cosine) over the last lr_rampdown
(`lr_at`); the exploration noise on w, of std w_std * w_noise * max(0, 1 - t / w_noise_ramp)^2
(`w_noise_scale`); the multiscale autocorrelation regulariser on the noise buffers
(`noise_regularizer`) and their renormalisation after every step (`normalize_noise`).

The perceptual distance (why not NVIDIA's): NVIDIA compares LPIPS features of VGG16, which
jaxgen has no offline copy of. `feature_distance` is the LPIPS recipe (features unit-normalised
over channels at each pixel, squared differences summed over channels, averaged over pixels,
summed over layers) on the features at hand: the run's own discriminator (`d_features`: its
DiscriminatorBlock inputs after conv0 and outputs, read through Flax's capture_intermediates so
discriminator.py is untouched), a network trained on this very domain that always comes with a
jaxgen run; and the FID Inception's stem and Mixed_5d/6e stages (`inception_features`).

hp, where taken, is the projector's traced hyperparameters {'lr', 'lr_rampdown', 'lr_rampup',
'w_noise', 'w_noise_ramp', ...} (float32 scalars); t = step / steps.
"""
from __future__ import annotations

from typing import List, Sequence

import jax
import jax.numpy as jnp

from jaxgen.stylegan2.discriminator import DiscriminatorBlock

INCEPTION_STAGES = ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e")


def lr_at(t, hp) -> jnp.ndarray:
    """NVIDIA's learning rate at t = step / steps: hp lr x cosine ramp-down x linear ramp-up."""
    down = jnp.minimum(1.0, (1.0 - t) / hp["lr_rampdown"])
    down = 0.5 - 0.5 * jnp.cos(down * jnp.pi)
    up = jnp.where(hp["lr_rampup"] > 0, jnp.minimum(1.0, t / jnp.maximum(hp["lr_rampup"], 1e-12)), 1.0)
    return hp["lr"] * down * up


def w_noise_scale(t, w_std, hp) -> jnp.ndarray:
    """Std of the exploration noise added to w at t = step / steps (NVIDIA's quadratic ramp)."""
    return w_std * hp["w_noise"] * jnp.square(jnp.maximum(0.0, 1.0 - t / hp["w_noise_ramp"]))


def noise_regularizer(noises: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """NVIDIA's noise regulariser: for every buffer [H, W] and its 2x2-average pyramid down to
    8 px, the squared mean product with itself shifted by one pixel along x and along y.
    ~0 for white noise (~1/H^2 a term), large (~1 a term) for a smooth unit-variance field."""
    reg = jnp.float32(0.0)
    for n in noises:
        while True:
            reg += jnp.mean(n * jnp.roll(n, 1, axis=1)) ** 2 + jnp.mean(n * jnp.roll(n, 1, axis=0)) ** 2
            if n.shape[0] <= 8:
                break
            n = n.reshape(n.shape[0] // 2, 2, n.shape[1] // 2, 2).mean(axis=(1, 3))
    return reg


def normalize_noise(n: jnp.ndarray) -> jnp.ndarray:
    """A noise buffer moved to zero mean and unit variance (what NVIDIA does after each step)."""
    n = n - jnp.mean(n)
    return n * jax.lax.rsqrt(jnp.mean(jnp.square(n)))


def _unit(f: jnp.ndarray) -> jnp.ndarray:
    """[..., C] features unit-normalised over channels (LPIPS's normalize_tensor)."""
    f = f.astype(jnp.float32)
    return f / jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True) + 1e-10)


def feature_distance(a: Sequence[jnp.ndarray], b: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """LPIPS-style distance of two lists of unit features [1, H, W, C]: per layer the squared
    difference summed over channels and averaged over pixels, summed over layers."""
    return sum(jnp.mean(jnp.sum(jnp.square(x - y), axis=-1)) for x, y in zip(a, b))


def _is_d_feature(module, method_name: str) -> bool:
    """capture_intermediates filter: D's blocks and their conv0 (the full-resolution features)."""
    if isinstance(module, DiscriminatorBlock):
        return method_name == "__call__"
    return module.name == "conv0" and isinstance(module.parent, DiscriminatorBlock)


def d_features(D, d_vars, img: jnp.ndarray, c: jnp.ndarray) -> List[jnp.ndarray]:
    """The discriminator's unit features of img [1, R, R, C] (c [1, c_dim]): each block's conv0
    output [1, r, r, tmp] and block output [1, r/2, r/2, out], finest first."""
    _, state = D.apply(d_vars, img, c, capture_intermediates=_is_d_feature, mutable=["intermediates"])
    out = []
    for res in D.block_resolutions:
        block = state["intermediates"][f"b{res}"]
        out += [_unit(block["conv0"]["__call__"][0]), _unit(block["__call__"][0][0])]
    return out


def inception_features(net, variables, img: jnp.ndarray) -> List[jnp.ndarray]:
    """The unit features (INCEPTION_STAGES) of img [1, R, R, C] in [-1, 1] in the FID Inception
    `net` (jaxgen.metrics.inception.FIDInceptionV3) with its `variables`."""
    x = jnp.clip((img + 1.0) * 0.5, 0.0, 1.0)
    x = jnp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    _, state = net.apply(variables, x, mutable=["intermediates"])
    stages = state["intermediates"]["stages"][0]
    return [_unit(stages[s]) for s in INCEPTION_STAGES]
