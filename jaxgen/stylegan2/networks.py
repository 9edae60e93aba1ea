"""Build StyleGAN2 G and D from a config or a run descriptor, and initialise them.

`model_kwargs(config.model, resolution, channels, c_dim)` gives the JSON-able
constructor kwargs that go into run.json; `build(G_kwargs, D_kwargs)` makes the
Flax modules from them; `init_variables` draws NVIDIA's initialisation.
Transfer learning from another run is `jaxgen.stylegan2.transfer`.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.stylegan2.discriminator import Discriminator
from jaxgen.stylegan2.generator import Generator

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def check_dtype(dtype: Any) -> None:
    """ConfigError (one line, naming the flag) unless `dtype` is a name in DTYPES."""
    if dtype not in DTYPES:
        raise ConfigError(f"--config.model.dtype={dtype!r}: choose one of {', '.join(sorted(DTYPES))}")


def model_kwargs(model_cfg: Any, resolution: int, channels: int, c_dim: int) -> Tuple[Dict, Dict]:
    """(G_kwargs, D_kwargs) from `config.model` and the dataset's shape and label count."""
    check_dtype(model_cfg.dtype)
    common = dict(img_resolution=int(resolution), img_channels=int(channels), c_dim=int(c_dim),
                  channel_base=int(model_cfg.channel_base), channel_max=int(model_cfg.channel_max),
                  conv_clamp=model_cfg.conv_clamp, num_lowp_res=int(model_cfg.num_lowp_res),
                  dtype=model_cfg.dtype)
    g = dict(common, z_dim=int(model_cfg.z_dim), w_dim=int(model_cfg.w_dim),
             mapping_layers=int(model_cfg.mapping_layers))
    if not bool(model_cfg.get("use_noise", True)):
        g["use_noise"] = False      # only when off, so the kwargs of earlier runs stay as they were
    d = dict(common, mbstd_group_size=int(model_cfg.mbstd_group_size))
    return g, d


def _module_kwargs(kwargs: Dict) -> Dict:
    """JSON-able kwargs (dtype names, lists) -> the module's constructor arguments."""
    kw = dict(kwargs)
    if isinstance(kw.get("dtype"), str):
        kw["dtype"] = DTYPES[kw["dtype"]]
    if isinstance(kw.get("resample_filter"), list):
        kw["resample_filter"] = tuple(kw["resample_filter"])
    return kw


def build_generator(G_kwargs: Dict) -> Generator:
    """The Generator module from its JSON-able kwargs (run.json's G_kwargs)."""
    return Generator(**_module_kwargs(G_kwargs))


def build(G_kwargs: Dict, D_kwargs: Dict) -> Tuple[Generator, Discriminator]:
    """(G, D) modules from their JSON-able kwargs (run.json's G_kwargs and D_kwargs)."""
    return build_generator(G_kwargs), Discriminator(**_module_kwargs(D_kwargs))


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
