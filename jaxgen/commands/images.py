"""Pictures from a StyleGAN2 run for a person to look at: seeds, style mixing, interpolation, projected w.

  python -m jaxgen images seeds  RUN --out DIR --seeds 0-7 [--class NAME] [--psi 0.7]
         [--cutoff N] [--centre global|class] [--noise_mode const|random|none] [--which auto|latest|best]
  python -m jaxgen images mix    RUN --out DIR --rows 1,2 --cols 3-5 [--layers 0-3] [...]
  python -m jaxgen images interp RUN --out DIR --seeds 1,5,9 [--steps 8] [--space w|z] [--fps 10] [...]
  python -m jaxgen images w      RUN --out DIR --projected_w projected_w.npz [--noise_mode ...]

What each mode writes and checks: jaxgen/workflows/images.py. The checked synthetic DATASET
export is `python -m jaxgen generate`.
"""
from __future__ import annotations

import argparse
import sys

from jaxgen.commands.common import command_parser, run_main, use_compile_cache
from jaxgen.workflows.images import make_images


def _shared_flags() -> tuple:
    """(the run, output and noise flags of every mode, the truncation flags of seeds/mix/interp)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("run", help="StyleGAN2 workdir, networks directory or NVIDIA .pkl")
    common.add_argument("--out", required=True, help="folder for the pictures: new, empty or an earlier "
                        "images output")
    common.add_argument("--which", default="auto", choices=("auto", "latest", "best"),
                        help="checkpoint of a workdir (auto = latest for generators)")
    common.add_argument("--noise_mode", default="const", help="const | random (reproducible per seed) | none")
    trunc = argparse.ArgumentParser(add_help=False)
    trunc.add_argument("--class", dest="cls", default=None, metavar="NAME",
                       help="class name (or index) of a conditional G")
    trunc.add_argument("--psi", type=float, default=1.0, help="truncation psi (1 = none)")
    trunc.add_argument("--cutoff", type=int, default=None, help="truncate only layers < cutoff (default all)")
    trunc.add_argument("--centre", default="global", help="truncate towards G's mean w (global) or the "
                       "class's mean w (class)")
    trunc.add_argument("--class_mean_n", type=int, default=1000, help="latents averaged for --centre class")
    return common, trunc


def parser() -> argparse.ArgumentParser:
    """One sub-command per mode, sharing the run, output and noise flags."""
    common, trunc = _shared_flags()
    p = command_parser("images", __doc__)
    sub = p.add_subparsers(dest="mode", required=True, metavar="{seeds,mix,interp,w}")
    s = sub.add_parser("seeds", parents=[common, trunc], help="one PNG per seed and a grid")
    s.add_argument("--seeds", required=True, help="e.g. 0-7 or 0-3,7,10-12")
    m = sub.add_parser("mix", parents=[common, trunc], help="style-mixing grid")
    m.add_argument("--rows", required=True, help="row seeds (their ws are kept), e.g. 1,2")
    m.add_argument("--cols", required=True, help="column seeds (their ws replace --layers), e.g. 3-5")
    m.add_argument("--layers", default="", help="w indices taken from the column seed, e.g. 0-3 "
                   "(default: the coarse ones, NVIDIA's 0-6 or the first half)")
    i = sub.add_parser("interp", parents=[common, trunc], help="interpolation strip and GIF between seeds")
    i.add_argument("--seeds", required=True, help="two or more seeds to travel through, e.g. 1,5,9")
    i.add_argument("--steps", type=int, default=8, help="frames from one seed to the next")
    i.add_argument("--space", default="w", help="w (lerp of ws) or z (slerp of latents, then mapping)")
    i.add_argument("--fps", type=float, default=10.0, help="GIF frame rate")
    w = sub.add_parser("w", parents=[common], help="render ws from a file (a projector's projected_w.npz)")
    w.add_argument("--projected_w", required=True, help=".npz with 'w' [1 or N, num_ws, w_dim] (or .npy)")
    return p


def main(argv=None) -> int:
    """Run one mode into --out."""
    a = parser().parse_args(argv)
    use_compile_cache()
    make_images(a)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
