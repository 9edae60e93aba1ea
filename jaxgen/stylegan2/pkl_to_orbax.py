"""Convert an official StyleGAN2-ADA snapshot `.pkl` into a jaxgen networks checkpoint.

  python -m jaxgen pkl_to_orbax stylegan2-ffhq-config-f.pkl runs/ffhq_f

The pickle is read with the restricted unpickler (`safe_pickle`): the network
source code that NVIDIA embeds in every snapshot is never executed; only the
tensors and the constructor kwargs are taken. Both kinds of NVIDIA pickle work:
PyTorch snapshots (dict with G, D, G_ema) and TensorFlow-era StyleGAN2 /
StyleGAN2-ADA pickles ((G, D, Gs) tuple; Gs becomes G_ema; see `nvidia_tf`).
The output directory holds `run.json` (kind stylegan2, jaxgen G/D kwargs) and
`networks/` (orbax: G, D, G_ema), plus a `preview.png` of G_ema samples so you
can check the conversion by eye.
Use the result with `--config.transfer.init_from=<dir>` (or pass the .pkl directly).

The output directory must be new or empty (a folder of other files is refused,
and so is a second conversion into the same directory); both are checked before
the pickle is read (`jaxgen.utils.outputs`). `--no_preview` skips preview.png.
"""
from __future__ import annotations

import hashlib
import pathlib
from typing import Any, Dict, Tuple

import jax
import numpy as np

from jaxgen.errors import InputMissing
from jaxgen.harness.checkpoint import CheckpointError, save_networks
from jaxgen.stylegan2.networks import build_generator
from jaxgen.stylegan2.nvidia import (ConversionError, discriminator_from_state_dict,
                                     discriminator_kwargs, generator_from_state_dict, generator_kwargs)
from jaxgen.stylegan2.nvidia_tf import convert_tf_snapshot
from jaxgen.utils.images import save_grid
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.utils.pickle_records import PersistentModule
from jaxgen.utils.safe_pickle import is_tf_network_pkl, load_network_pkl

OUTPUT_KIND = "networks"
OUT_FLAG = "OUT (the 2nd argument)"


def convert_snapshot(path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(info with G_kwargs/D_kwargs, {'G', 'D', 'G_ema'} Flax variables) of an NVIDIA snapshot
    (PyTorch, or a TensorFlow-era (G, D, Gs) pickle: G_ema = Gs)."""
    if is_tf_network_pkl(path):
        return convert_tf_snapshot(path)
    data = load_network_pkl(path)
    recs = {}
    for name in ("G", "D", "G_ema"):
        rec = data.get(name)
        if not isinstance(rec, PersistentModule):
            raise ConversionError(f"{path}: {name!r} is missing or not an NVIDIA network "
                                  f"(got {type(rec).__name__}); give a StyleGAN2-ADA training snapshot")
        recs[name] = rec
    g_init, d_init = recs["G"].init_kwargs, recs["D"].init_kwargs
    _, g_vars = generator_from_state_dict(recs["G"].state_dict(), g_init)
    _, ema_vars = generator_from_state_dict(recs["G_ema"].state_dict(), recs["G_ema"].init_kwargs)
    _, d_vars = discriminator_from_state_dict(recs["D"].state_dict(), d_init)
    info = dict(G_kwargs=generator_kwargs(g_init), D_kwargs=discriminator_kwargs(d_init))
    return info, dict(G=g_vars, D=d_vars, G_ema=ema_vars)


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_preview(out_dir: pathlib.Path, G_kwargs: Dict[str, Any], ema_vars: Any, n: int = 8,
                  psi: float = 0.7) -> pathlib.Path:
    """A grid of n G_ema samples (seeds 0..n-1, truncation psi) as preview.png."""
    G = build_generator(G_kwargs)
    z = np.stack([np.random.RandomState(s).randn(G.z_dim) for s in range(n)]).astype(np.float32)
    c = np.zeros([n, G.c_dim], np.float32)
    if G.c_dim:
        c[np.arange(n), np.arange(n) % G.c_dim] = 1
    img = jax.jit(lambda v, z, c: G.apply(v, z, c, truncation_psi=psi, noise_mode="const"))(ema_vars, z, c)
    return save_grid(np.asarray(img), out_dir / "preview.png", cols=n)


def check_conversion_output(out: pathlib.Path) -> None:
    """Refuse (before any work) an output folder of other files or one that holds networks already."""
    check_output(out, OUTPUT_KIND, OUT_FLAG)
    if (out / "networks").exists():
        raise CheckpointError(f"{out / 'networks'} already exists; choose a new output directory")


def convert_pkl(pkl: pathlib.Path, out: pathlib.Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Convert the NVIDIA snapshot `pkl` into the networks directory `out` (new or empty; checked
    before the pickle is read). Returns (info with G_kwargs/D_kwargs, {'G', 'D', 'G_ema'} variables)."""
    if not pkl.is_file():
        raise InputMissing(f"{pkl} is not a file; give the path of an NVIDIA snapshot .pkl")
    check_conversion_output(out)
    info, nets = convert_snapshot(pkl)
    claim_output(out, OUTPUT_KIND, OUT_FLAG)
    save_networks(out, info["G_kwargs"], info["D_kwargs"], nets, source=str(pkl.absolute()),
                  source_sha256=_sha256(pkl))
    return info, nets


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen pkl_to_orbax
    import runpy
    runpy.run_module("jaxgen.commands.pkl_to_orbax", run_name="__main__")
