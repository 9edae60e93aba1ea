"""Sort generated faces into classes with a trained classifier (the hierarchical pipeline's step 2).

`make_latent_classifier(G, clf_model, clf_resolution)` returns a jit-compiled
function (g_vars, clf_vars, z [N, z_dim], c [N, c_dim]) -> (class [N], confidence [N],
probs [N, K]): generate with G (truncation psi, const noise), map the images to the
classifier's resolution and channels, classify. It is pure, so it also runs inside
evolve.py's jitted genetic-algorithm loop as a fitness term.

`class_fidelity(gen_run, classifier_run)` measures how well a conditional generator
renders its classes: the share of each class's generated faces that a classifier
trained on real faces puts in that class (`make demo` prints it; chance is 1/K).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import ConfigError


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


def class_fidelity(gen, clf, num_per_class: int = 64, seed: int = 0, psi: float = 1.0,
                   batch: int = 64) -> Dict[str, Any]:
    """How well a conditional generator renders its classes, as a classifier sees them.

    gen, clf: `jaxgen.runs.Run`s (a conditional StyleGAN2 / DCGAN run, a classifier run
    with the same class names). For each class, `num_per_class` faces from latents of
    default_rng([seed, class]) are classified; returns {'per_class': {class: dict(accuracy
    (share put in that class), mean_conf (mean probability of that class), predicted
    {class: count})}, 'accuracy': the mean over classes, 'chance': 1 / K}."""
    names = list(gen.class_names)
    if not gen.num_classes or set(names) - set(clf.class_names):
        raise ConfigError(f"class fidelity needs a conditional generator whose classes {names} are "
                          f"classes of the classifier {clf.path} ({list(clf.class_names)})")
    classify = jax.jit(lambda v, x: jax.nn.softmax(clf.model.apply(
        v, to_classifier_input(x, clf.resolution, clf.channels), train=False), -1))
    per_class = {}
    for ci, name in enumerate(names):
        z = np.random.default_rng([seed, ci]).standard_normal((num_per_class, gen.z_dim)).astype(np.float32)
        probs = np.concatenate([np.asarray(classify(clf.variables, gen.generate(
            z[i:i + batch], np.full(len(z[i:i + batch]), ci), psi=psi))) for i in range(0, len(z), batch)])
        target = list(clf.class_names).index(name)
        counts = np.bincount(probs.argmax(-1), minlength=len(clf.class_names))
        per_class[name] = dict(accuracy=float(counts[target] / num_per_class),
                               mean_conf=float(probs[:, target].mean()),
                               predicted={n: int(k) for n, k in zip(clf.class_names, counts)})
    return dict(per_class=per_class, accuracy=float(np.mean([v["accuracy"] for v in per_class.values()])),
                chance=1.0 / len(clf.class_names), num_per_class=int(num_per_class))
