"""Transfer learning: start a StyleGAN2 run from another run's G, D and G_ema.

`init_from` is anything `jaxgen.runs.open_run` opens as a StyleGAN2 run: an
official NVIDIA snapshot `.pkl` (restricted unpickler), a networks directory
(`python -m jaxgen.stylegan2.pkl_to_orbax`) or a training workdir (its latest
checkpoint). Arrays are copied by name where the shapes agree; everything else
keeps its fresh initialisation and is listed (e.g. a label embedding that an
unconditional FFHQ model lacks), as NVIDIA's `copy_params_and_buffers` does.
"""
from __future__ import annotations

import logging
from typing import Dict, Tuple

from jaxgen.errors import ConfigError
from jaxgen.runs import open_run
from jaxgen.utils.trees import copy_matching


def transfer(g_vars: Dict, d_vars: Dict, init_from: str) -> Tuple[Dict, Dict, Dict]:
    """(G, D, G_ema) variables initialised from `init_from` where names and shapes match."""
    src = open_run(init_from, "latest", kinds=("stylegan2",)).networks
    out = []
    for name, dst in (("G", g_vars), ("D", d_vars), ("G_ema", g_vars)):
        if src.get(name) is None:
            raise ConfigError(f"config.transfer.init_from={init_from} has no {name} network; give a "
                              "StyleGAN2 run, networks directory or NVIDIA snapshot with G, D and G_ema")
        new, copied, kept = copy_matching(dst, src[name])
        if not copied:
            raise ConfigError(f"config.transfer.init_from={init_from}: no {name} array matches the configured model; "
                             "check config.model (resolution, z_dim, w_dim, channel_base/max)")
        if kept:
            logging.warning("transfer %s: %d arrays copied, %d kept at init: %s", name, len(copied),
                            len(kept), ", ".join(kept[:8]) + (" ..." if len(kept) > 8 else ""))
        out.append(new)
    return out[0], out[1], out[2]
