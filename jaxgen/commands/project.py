"""Project a real image into a StyleGAN2 generator's latent space (w or w+), as NVIDIA does.

  python -m jaxgen project runs/acne --target face.png --steps 1000 --out runs/proj
  python -m jaxgen project runs/acne --targets faces/ --w_plus --out runs/projs

One folder per target (--targets: one sub-folder per image, resumable) with projected_w.npz
(w [1, num_ws, w_dim] as NVIDIA's, plus the optimised noise buffers), proj.png, target.png,
progress.png, losses.json and losses.png: jaxgen/workflows/project.py. The old path
`python -m jaxgen.stylegan2.projector` runs this command for one release.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional, Sequence

from jaxgen.commands.common import command_parser, run_main, use_compile_cache
from jaxgen.errors import ConfigError, InputMissing
from jaxgen.stylegan2.projector import ProjectConfig
from jaxgen.workflows.project import project_files


def _parser() -> argparse.ArgumentParser:
    p = command_parser("project", __doc__)
    p.add_argument("run", help="StyleGAN2 training workdir, networks directory or NVIDIA .pkl")
    p.add_argument("--target", default="", help="one image to project (any size: centre-cropped, resized)")
    p.add_argument("--targets", default="", help="a folder of images: one sub-folder of --out each (resumable)")
    p.add_argument("--out", required=True, help="output folder: new, empty or an earlier projection's")
    p.add_argument("--class", dest="class_name", default="", help="the targets' class (conditional runs)")
    p.add_argument("--w_plus", action="store_true", help="one w per layer (w+) instead of one w")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=8, help="--targets: images optimised side by side")
    p.add_argument("--pixel_weight", type=float, default=1.0, help="pixel MSE term")
    p.add_argument("--d_weight", type=float, default=1.0, help="LPIPS-style term on D's features")
    p.add_argument("--inception_weights", default="", help="FID Inception .pth: adds its features")
    p.add_argument("--inception_weight", type=float, default=None, help="default 1 with --inception_weights")
    p.add_argument("--noise_reg", type=float, default=1e5, help="noise regulariser weight (NVIDIA's)")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (NVIDIA's)")
    p.add_argument("--w_avg_samples", type=int, default=10000, help="z mapped for w_avg and w_std")
    p.add_argument("--best", action="store_true", help="a workdir's best-FID checkpoint")
    return p


def _config(a: argparse.Namespace) -> ProjectConfig:
    inc = a.inception_weight if a.inception_weight is not None else float(bool(a.inception_weights))
    cfg = ProjectConfig(steps=a.steps, w_plus=a.w_plus, lr=a.lr, noise_reg=a.noise_reg, pixel_weight=a.pixel_weight,
                        d_weight=a.d_weight, inception_weight=inc, w_avg_samples=a.w_avg_samples, seed=a.seed,
                        batch=a.batch).check()
    if inc > 0 and not a.inception_weights:
        raise ConfigError("--inception_weight > 0 needs --inception_weights PATH (the FID Inception .pth)")
    if a.inception_weights and not pathlib.Path(a.inception_weights).is_file():
        raise InputMissing(f"--inception_weights {a.inception_weights} does not exist; give the FID Inception .pth")
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    use_compile_cache()
    a = _parser().parse_args(argv)
    project_files(a.run, a.out, _config(a), a.target, a.targets, a.class_name, a.inception_weights, a.best)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
