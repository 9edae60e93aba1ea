"""Build G and D from a config, and initialise them from a checkpoint (transfer learning).

`init_from` may name
  * an official NVIDIA snapshot `.pkl` (read with the restricted unpickler),
  * a jaxgen networks checkpoint (from `python -m jaxgen.stylegan2.pkl_to_orbax`),
  * a jaxgen training workdir (its latest checkpoint).
Arrays are copied by name where the shapes agree; everything else keeps its
fresh initialisation and is listed (e.g. a label embedding that an
unconditional FFHQ model lacks), as NVIDIA's `copy_params_and_buffers` does.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.stylegan2.discriminator import Discriminator
from jaxgen.stylegan2.generator import Generator

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def model_kwargs(model_cfg: Any, resolution: int, channels: int, c_dim: int) -> Tuple[Dict, Dict]:
    """(G_kwargs, D_kwargs) from `config.model` and the dataset's shape and label count."""
    if model_cfg.dtype not in DTYPES:
        raise ValueError(f"config.model.dtype={model_cfg.dtype!r}: choose one of {sorted(DTYPES)}")
    common = dict(img_resolution=int(resolution), img_channels=int(channels), c_dim=int(c_dim),
                  channel_base=int(model_cfg.channel_base), channel_max=int(model_cfg.channel_max),
                  conv_clamp=model_cfg.conv_clamp, num_lowp_res=int(model_cfg.num_lowp_res),
                  dtype=model_cfg.dtype)
    g = dict(common, z_dim=int(model_cfg.z_dim), w_dim=int(model_cfg.w_dim),
             mapping_layers=int(model_cfg.mapping_layers))
    d = dict(common, mbstd_group_size=int(model_cfg.mbstd_group_size))
    return g, d


def build(G_kwargs: Dict, D_kwargs: Dict) -> Tuple[Generator, Discriminator]:
    g = dict(G_kwargs)
    d = dict(D_kwargs)
    for kw in (g, d):
        if isinstance(kw.get("dtype"), str):
            kw["dtype"] = DTYPES[kw["dtype"]]
        if isinstance(kw.get("resample_filter"), list):
            kw["resample_filter"] = tuple(kw["resample_filter"])
    return Generator(**g), Discriminator(**d)


def init_variables(G: Generator, D: Discriminator, key: jax.Array) -> Tuple[Dict, Dict]:
    """Fresh G and D variables (NVIDIA's init: N(0,1) weights, 0 biases, 1 for affine biases)."""
    kg, kd = jax.random.split(key)
    z = jnp.zeros([1, G.z_dim])
    c = jnp.zeros([1, G.c_dim])
    g_vars = jax.jit(lambda k: G.init({"params": k, "noise": k}, z, c, noise_mode="none"))(kg)
    n = 4
    img = jnp.zeros([n, D.img_resolution, D.img_resolution, D.img_channels])
    d_vars = jax.jit(lambda k: D.init({"params": k}, img, jnp.zeros([n, D.c_dim])))(kd)
    return dict(g_vars), dict(d_vars)


def _flat(tree: Any) -> Dict[str, Any]:
    return {jax.tree_util.keystr(p, simple=True, separator="/"): v
            for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def copy_matching(dst: Dict, src: Dict) -> Tuple[Dict, List[str], List[str]]:
    """Copy arrays of `src` into `dst` where path and shape agree.

    Returns (new dst, copied paths, dst paths left at their initial values).
    """
    s = _flat(src)
    copied, kept = [], []

    def pick(path, v):
        key = jax.tree_util.keystr(path, simple=True, separator="/")
        if key in s and tuple(np.shape(s[key])) == tuple(v.shape):
            copied.append(key)
            return jnp.asarray(s[key], v.dtype)
        kept.append(key)
        return v
    return jax.tree_util.tree_map_with_path(pick, dst), copied, kept


def load_init_networks(init_from: str) -> Dict[str, Any]:
    """{'G', 'D', 'G_ema'} variables from a .pkl, networks checkpoint or workdir."""
    path = pathlib.Path(init_from)
    if not path.exists():
        raise FileNotFoundError(f"config.transfer.init_from={init_from!r} does not exist")
    if path.suffix == ".pkl":
        from jaxgen.stylegan2.pkl_to_orbax import convert_snapshot
        _, nets = convert_snapshot(path)
        return nets
    from jaxgen.harness.checkpoint import load_networks
    _, nets = load_networks(path)
    return nets


def transfer(g_vars: Dict, d_vars: Dict, init_from: str) -> Tuple[Dict, Dict, Dict]:
    """(G, D, G_ema) variables initialised from `init_from` where names and shapes match."""
    src = load_init_networks(init_from)
    out = []
    for name, dst in (("G", g_vars), ("D", d_vars), ("G_ema", g_vars)):
        if name not in src:
            raise ValueError(f"{init_from} has no {name} network")
        new, copied, kept = copy_matching(dst, src[name])
        if not copied:
            raise ValueError(f"init_from={init_from}: no {name} array matches the configured model; "
                             "check config.model (resolution, z_dim, w_dim, channel_base/max)")
        if kept:
            logging.warning("transfer %s: %d arrays copied, %d kept at init: %s", name, len(copied),
                            len(kept), ", ".join(kept[:8]) + (" ..." if len(kept) > 8 else ""))
        out.append(new)
    return out[0], out[1], out[2]
