"""Pytree helpers shared by the products: copy arrays between variable trees by name."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np


def flat_paths(tree: Any) -> Dict[str, Any]:
    """{'a/b/c': leaf} for every leaf of a nested dict (or any pytree)."""
    return {jax.tree_util.keystr(p, simple=True, separator="/"): v
            for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def copy_matching(dst: Any, src: Any) -> Tuple[Any, List[str], List[str]]:
    """Copy arrays of `src` into `dst` where path and shape agree.

    Why: transfer learning (an FFHQ G into an acne G, Keras ImageNet weights into a
    classifier) keeps whatever fits and re-initialises the rest, as NVIDIA's
    `copy_params_and_buffers` does. Returns (new dst, copied paths, dst paths left
    at their initial values).
    """
    s = flat_paths(src)
    copied, kept = [], []

    def pick(path, v):
        key = jax.tree_util.keystr(path, simple=True, separator="/")
        if key in s and tuple(np.shape(s[key])) == tuple(v.shape):
            copied.append(key)
            return jnp.asarray(s[key], v.dtype)
        kept.append(key)
        return v
    return jax.tree_util.tree_map_with_path(pick, dst), copied, kept
