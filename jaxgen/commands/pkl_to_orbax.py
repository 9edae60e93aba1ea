"""Convert an official StyleGAN2-ADA snapshot `.pkl` into a jaxgen networks checkpoint.

  python -m jaxgen pkl_to_orbax stylegan2-ffhq-config-f.pkl runs/ffhq_f

PyTorch snapshots and TensorFlow-era pickles both work; the pickle's code is never run.
OUT (new or empty) receives run.json, networks/ (G, D, G_ema) and a preview.png of G_ema
samples (--no_preview skips it); use it with --config.transfer.init_from=OUT. How the pickle is
read and converted: jaxgen/stylegan2/pkl_to_orbax.py.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np

from jaxgen.commands.common import command_parser, dashed_alias, run_main
from jaxgen.stylegan2.pkl_to_orbax import convert_pkl, write_preview


def parser() -> argparse.ArgumentParser:
    """PKL, OUT and --no_preview (also --no-preview, the older spelling)."""
    p = command_parser("pkl_to_orbax", __doc__)
    p.add_argument("pkl", type=pathlib.Path,
                   help="official snapshot (PyTorch dict with G, D, G_ema, or TensorFlow (G, D, Gs))")
    p.add_argument("out", type=pathlib.Path, help="output directory: new or empty")
    p.add_argument("--no_preview", action="store_true", help="skip preview.png")
    dashed_alias(p, "--no_preview", action="store_true")
    return p


def main(argv=None) -> int:
    """Convert PKL into the networks directory OUT and write its preview."""
    args = parser().parse_args(argv)
    t0 = time.time()
    info, nets = convert_pkl(args.pkl, args.out)
    n_params = {k: sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(v["params"]))
                for k, v in nets.items()}
    print(f"converted {args.pkl} -> {args.out} in {time.time() - t0:.1f}s: "
          f"G {n_params['G']:,} params, D {n_params['D']:,}, "
          f"{info['G_kwargs']['img_resolution']}px, c_dim {info['G_kwargs']['c_dim']}")
    if not args.no_preview:
        print(f"preview: {write_preview(args.out, info['G_kwargs'], nets['G_ema'])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
