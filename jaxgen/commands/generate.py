"""Write a synthetic image-folder dataset from a trained generator, checked and with its datasheet.

  python -m jaxgen generate --checkpoint runs/acne_tiny --out data/synthetic_tiny --num_per_class 64 \\
      [--classes healthy,severe] [--psi 1.0] [--seed 0] [--best] [--real DIR] [--holdout DIR] \\
      [--identity auto|dlib|pixel] [--identity_threshold T] [--identity_percentile P] [--no_datasheet] \\
      [--rebuild] [--label_by CLASSIFIER_RUN [--keep top|threshold] [--min_conf P] [--pool_multiple M] \\
      [--allow_short]] [--batch B]

Every candidate is checked against the generator's real training faces (near-copies are
refused), the export resumes when run again, and a datasheet is written beside the images.
What each flag decides and why: jaxgen/workflows/generate.py.
"""
from __future__ import annotations

import argparse
import sys

from jaxgen.commands.common import command_parser, run_main, use_compile_cache
from jaxgen.workflows.generate import export_dataset


def _check_flags(p: argparse.ArgumentParser) -> None:
    """What every candidate is checked against: --real, --holdout and the identity model."""
    p.add_argument("--real", default="", help="the generator's training faces (default: its config's data)")
    p.add_argument("--holdout", default="", help="held-out real faces for the datasheet (default: demo _test)")
    p.add_argument("--identity", default="auto", help="auto | dlib | pixel (pixel: near-copies only)")
    p.add_argument("--identity_threshold", type=float, default=-1.0,
                   help="default: the model's (dlib 0.6); pixel: calibrated on the training faces")
    p.add_argument("--identity_percentile", type=float, default=1.0,
                   help="pixel without --identity_threshold: refuse candidates nearer a training face than "
                   "this percentile of the training faces' distances to their nearest other one (1)")
    p.add_argument("--max_tries", type=float, default=4.0,
                   help="candidates per wanted image before giving up (without --label_by)")
    p.add_argument("--no_datasheet", action="store_true", help="skip the datasheet (no holdout at hand)")
    p.add_argument("--feature_net", default="random_inception",
                   help="datasheet features without --inception_weights (labelled not comparable)")
    p.add_argument("--inception_weights", default="", help="the FID Inception .pth (comparable numbers)")


def _label_flags(p: argparse.ArgumentParser) -> None:
    """--label_by and how it keeps candidates."""
    p.add_argument("--label_by", default="", help="classifier run that labels the candidates (needed for an "
                   "unconditional generator; class-filters a conditional one)")
    p.add_argument("--keep", default=None, help="with --label_by: top (default) | threshold")
    p.add_argument("--min_conf", type=float, default=None, help="with --label_by: confidence floor "
                   "(default 0.5 for threshold, 0 for top)")
    p.add_argument("--pool_multiple", type=float, default=None,
                   help="with --label_by: candidates per wanted image (x classes unconditional; default 4)")
    p.add_argument("--allow_short", action="store_true", help="with --label_by: write a class that cannot be "
                   "filled with what was found")


def parser() -> argparse.ArgumentParser:
    """The generator, the output folder, what to generate and what to check against."""
    p = command_parser("generate", __doc__)
    p.add_argument("--checkpoint", required=True, help="generator run, networks dir or NVIDIA .pkl")
    p.add_argument("--out", required=True, help="dataset folder: new, empty or an earlier generate output")
    p.add_argument("--num_per_class", type=int, default=64)
    p.add_argument("--classes", default="", help="comma-separated class names (default: all)")
    p.add_argument("--psi", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--best", action="store_true", help="use the best-FID checkpoint of a workdir")
    _check_flags(p)
    _label_flags(p)
    p.add_argument("--batch", type=int, default=32, help="candidates generated and classified at a time")
    p.add_argument("--rebuild", action="store_true", help="replace an export made with other settings in --out "
                   "(only the images and files it wrote are removed) instead of refusing it")
    return p


def main(argv=None) -> int:
    """Export the dataset; print how many images are new and how many there are."""
    a = parser().parse_args(argv)
    use_compile_cache()
    classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    r = export_dataset(a.checkpoint, a.out, a.num_per_class, a.psi, a.seed, a.best, batch=a.batch,
                       classes=classes, real=a.real, holdout=a.holdout, identity=a.identity,
                       threshold=a.identity_threshold, datasheet=not a.no_datasheet, feature_net=a.feature_net,
                       inception_weights=a.inception_weights, max_tries=a.max_tries, label_by=a.label_by,
                       keep=a.keep, min_conf=a.min_conf, pool_multiple=a.pool_multiple,
                       allow_short=a.allow_short, percentile=a.identity_percentile, rebuild=a.rebuild)
    short = "".join(f"; {n} SHORT: {k} of {a.num_per_class}" for n, k in r.get("short", {}).items())
    print(f"wrote {r['written']} new images; {r['total']} in {r['out']}{short}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
