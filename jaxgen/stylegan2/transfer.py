"""Transfer learning: start a StyleGAN2 run from another run's G, D and G_ema, loudly.

`init_from` is anything `jaxgen.runs.open_run` opens as a StyleGAN2 run: an
official NVIDIA snapshot `.pkl` (restricted unpickler), a networks directory
(`python -m jaxgen pkl_to_orbax`) or a training workdir (its latest
checkpoint). Arrays are copied by name where the shapes agree; everything else
keeps its fresh initialisation, as NVIDIA's `copy_params_and_buffers` does
(nothing is reshaped or cropped).

Unlike NVIDIA's code, which then trains a near-fresh network without a word when
the resolution or channel widths differ from the source, every network's transfer
is reported (arrays copied, skipped for a shape mismatch, absent from the source,
and the share of parameters copied), and a network with less than
`config.transfer.min_share` (default 0.9) of its parameters copied stops the run
with an error naming what differs; `--config.transfer.min_share=0` allows it.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from jaxgen.errors import ConfigError
from jaxgen.runs import open_run
from jaxgen.utils.logger import logger
from jaxgen.utils.trees import copy_matching, flat_paths


def transfer_report(dst: Dict, src: Dict, copied: List[str], kept: List[str]) -> Dict:
    """What one network's transfer did: arrays and parameters copied, the rest by reason.

    dst: the configured network's variables, src: the source's; copied / kept: the paths
    `copy_matching` returns. share = copied parameters / all parameters of dst."""
    d, s = flat_paths(dst), flat_paths(src)
    size = {k: int(np.size(v)) for k, v in d.items()}
    total = sum(size.values())
    mismatch = [f"{k} {tuple(np.shape(s[k]))}->{tuple(np.shape(d[k]))}" for k in kept if k in s]
    return dict(arrays=len(d), copied=len(copied), parameters=total,
                share=sum(size[k] for k in copied) / max(total, 1),
                shape_mismatch=mismatch, not_in_source=[k for k in kept if k not in s],
                unused_from_source=sorted(set(s) - set(d)))


def _line(name: str, r: Dict) -> str:
    """One logged line per network, with the first few skipped arrays."""
    skipped = r["shape_mismatch"] + r["not_in_source"]
    more = f": {', '.join(skipped[:4])}" + (" ..." if len(skipped) > 4 else "") if skipped else ""
    return (f"transfer {name}: {r['copied']}/{r['arrays']} arrays, {r['share']:.1%} of {r['parameters']:,} "
            f"parameters copied; {len(r['shape_mismatch'])} skipped (shape differs), "
            f"{len(r['not_in_source'])} not in the source, {len(r['unused_from_source'])} source arrays unused{more}")


def transfer(g_vars: Dict, d_vars: Dict, init_from: str, min_share: float = 0.9) -> Tuple[Dict, Dict, Dict, Dict]:
    """(G, D, G_ema variables initialised from `init_from` where names and shapes match, and the
    report per network); ConfigError when a network keeps less than `min_share` of its parameters."""
    src = open_run(init_from, "latest", kinds=("stylegan2",)).networks
    out, report = [], {}
    for name, dst in (("G", g_vars), ("D", d_vars), ("G_ema", g_vars)):
        if src.get(name) is None:
            raise ConfigError(f"config.transfer.init_from={init_from} has no {name} network; give a "
                              "StyleGAN2 run, networks directory or NVIDIA snapshot with G, D and G_ema")
        new, copied, kept = copy_matching(dst, src[name])
        r = report[name] = transfer_report(dst, src[name], copied, kept)
        logger.info(_line(name, r))
        if r["share"] < float(min_share):
            what = ", ".join(r["shape_mismatch"][:3]) or ", ".join(r["not_in_source"][:3])
            raise ConfigError(
                f"config.transfer.init_from={init_from}: only {r['share']:.1%} of {name}'s parameters "
                f"transfer (e.g. {what}): the source has another resolution or widths, so training would "
                "start from a near-fresh network. Match config.model (resolution, channel_base/max, "
                f"z_dim, w_dim) to the source, or set --config.transfer.min_share={r['share']:.2f} (or 0) "
                "to train from this partial start")
        out.append(new)
    return out[0], out[1], out[2], report
