"""Sort generated faces into classes with a trained classifier (the hierarchical pipeline's step 2).

`make_latent_classifier(G, clf_model, clf_resolution)` returns a jit-compiled
function (g_vars, clf_vars, z [N, z_dim], c [N, c_dim]) -> (class [N], confidence [N],
probs [N, K]): generate with G (truncation psi, const noise), map the images to the
classifier's resolution and channels, classify. It is pure, so it also runs inside
evolve.py's jitted genetic-algorithm loop as a fitness term.
"""
from __future__ import annotations

from typing import Callable, Tuple

import jax
import jax.numpy as jnp


def to_classifier_input(img: jnp.ndarray, resolution: int, channels: int) -> jnp.ndarray:
    """G output [N, R, R, C] in [-1, 1] -> [N, res, res, channels] in [-1, 1] (antialiased resize)."""
    n, h, w, c = img.shape
    if (h, w) != (resolution, resolution):
        img = jax.image.resize(img, (n, resolution, resolution, c), method="linear", antialias=True)
    if c != channels:
        img = jnp.mean(img, -1, keepdims=True) if channels == 1 else jnp.repeat(img, channels, -1)
    return jnp.clip(img, -1.0, 1.0)


def make_latent_classifier(G, clf_model, resolution: int, channels: int = 3, psi: float = 1.0
                           ) -> Callable[..., Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]]:
    @jax.jit
    def classify(g_vars, clf_vars, z, c):
        img = G.apply(g_vars, z, c, truncation_psi=psi, noise_mode="const")
        logits = clf_model.apply(clf_vars, to_classifier_input(img, resolution, channels), train=False)
        probs = jax.nn.softmax(logits, axis=-1)
        return jnp.argmax(probs, -1), jnp.max(probs, -1), probs
    return classify
