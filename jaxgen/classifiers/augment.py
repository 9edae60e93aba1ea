"""On-device augmentation for classifier training: rotation, brightness, horizontal flip.

The acne paper trains its classifiers with random rotations, brightness changes
and horizontal flips. All three run inside the jitted train step on float
images in [0, 1] (NHWC), per sample, from one PRNG key:

  * flip: with probability 0.5, x[:, ::-1]
  * brightness: add U(-max_delta, max_delta), clip to [0, 1]
  * rotation: U(-max_degrees, max_degrees) about the centre, bilinear, edge pixels
    repeated outside the image (no black corners for the classifier to learn)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates


def _rotate_one(img: jnp.ndarray, angle: jnp.ndarray) -> jnp.ndarray:
    h, w, c = img.shape
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # Inverse map: where in the source does each output pixel come from.
    sy = cos * (yy - cy) - sin * (xx - cx) + cy
    sx = sin * (yy - cy) + cos * (xx - cx) + cx
    return jnp.stack([map_coordinates(img[..., k], [sy, sx], order=1, mode="nearest")
                      for k in range(c)], axis=-1)


def augment_batch(images: jnp.ndarray, key: jax.Array, max_degrees: float = 15.0,
                  max_brightness: float = 0.1, flip: bool = True) -> jnp.ndarray:
    """images: float [N, H, W, C] in [0, 1] -> same shape, augmented per sample."""
    n = images.shape[0]
    k_flip, k_b, k_r = jax.random.split(key, 3)
    x = images
    if flip:
        do = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
        x = jnp.where(do, x[:, :, ::-1], x)
    if max_degrees > 0:
        angles = jax.random.uniform(k_r, (n,), minval=-max_degrees, maxval=max_degrees) * (jnp.pi / 180)
        x = jax.vmap(_rotate_one)(x, angles)
    if max_brightness > 0:
        delta = jax.random.uniform(k_b, (n, 1, 1, 1), minval=-max_brightness, maxval=max_brightness)
        x = jnp.clip(x + delta, 0.0, 1.0)
    return x
