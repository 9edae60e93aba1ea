"""Sort generated faces into classes with a trained classifier (the hierarchical pipeline's step 2).

`make_latent_classifier(G, clf_model, clf_resolution)` returns a jit-compiled
function (g_vars, clf_vars, z [N, z_dim], c [N, c_dim]) -> (class [N], confidence [N],
probs [N, K]): generate with G (truncation psi, const noise), map the images to the
classifier's resolution and channels, classify. It is pure, so it also runs inside
evolve.py's jitted genetic-algorithm loop as a fitness term.

`class_fidelity(gen_run, classifier_run)` measures how well a conditional generator
renders its classes: the share of each class's generated faces that a classifier
trained on real faces puts in that class (chance is 1/K). `fidelity_from_probs` gives the
same summary for any labelled faces, e.g. an export judged by a second classifier (`make demo`).
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
    probs, labels = [], []
    for ci in range(len(names)):
        z = np.random.default_rng([seed, ci]).standard_normal((num_per_class, gen.z_dim)).astype(np.float32)
        probs += [np.asarray(classify(clf.variables, gen.generate(
            z[i:i + batch], np.full(len(z[i:i + batch]), ci), psi=psi))) for i in range(0, len(z), batch)]
        labels.append(np.full(num_per_class, ci))
    return fidelity_from_probs(np.concatenate(probs), np.concatenate(labels), names, list(clf.class_names))


def fidelity_from_probs(probs: np.ndarray, labels: np.ndarray, names, clf_names) -> Dict[str, Any]:
    """The fidelity dict from a classifier's probabilities [N, K'] over `clf_names` for N faces
    meant as class labels [N] (indices into `names`): per class the share classified as it
    (accuracy), its mean probability (mean_conf) and the votes (predicted); their mean over the
    classes (accuracy); chance 1/K'; num_per_class (the smallest class)."""
    per_class = {}
    for ci, name in enumerate(names):
        p = probs[labels == ci]
        target = list(clf_names).index(name)
        counts = np.bincount(p.argmax(-1), minlength=len(clf_names))
        per_class[name] = dict(accuracy=float(counts[target] / max(len(p), 1)),
                               mean_conf=float(p[:, target].mean()) if len(p) else 0.0,
                               predicted={n: int(k) for n, k in zip(clf_names, counts)})
    return dict(per_class=per_class, accuracy=float(np.mean([v["accuracy"] for v in per_class.values()])),
                chance=1.0 / len(clf_names), num_per_class=int(min(np.bincount(labels, minlength=len(names)))))
