"""An unconditional GAN whose samples a classifier of the real faces labels: the acne paper's
sorting step as the whole method, with snapshots for the utility curve.

  python -m jaxgen labelled --workdir runs/labelled_tiny              # the :tiny configs
  python -m jaxgen labelled --workdir runs/labelled --multiple 4 --curve 0.25,0.5 \\
      --gan_config configs/acne.py --classifier_config configs/acne_classifier.py

The steps (gan, sorter, export, curve), why, and how a rerun resumes: jaxgen/workflows/labelled.py.
"""
from __future__ import annotations

import argparse
import sys

from jaxgen.commands.common import command_parser, run_main, use_compile_cache
from jaxgen.commands.pipeline import add_workflow_flags
from jaxgen.config import load_config
from jaxgen.workflows.labelled import DEFAULTS, parse_fractions, run_labelled


def parser() -> argparse.ArgumentParser:
    """The two config specs with overrides, the workdir, the export's size and the curve."""
    p = command_parser("labelled", __doc__)
    add_workflow_flags(p, DEFAULTS)
    p.add_argument("--multiple", type=int, default=1, help="export this many x the real images per class")
    p.add_argument("--pool_multiple", type=float, default=4.0, help="candidates drawn per kept image")
    p.add_argument("--curve", default="", help="fractions of total_kimg to snapshot, e.g. 0.25,0.5")
    p.add_argument("--sorter", default="", help="a classifier run trained on the real faces (default: train one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a GAN config value")
    p.add_argument("--set_classifier", action="append", default=[], metavar="KEY=VALUE",
                   help="override a classifier config value")
    return p


def main(argv=None) -> int:
    """Run (or resume) every step in --workdir."""
    a = parser().parse_args(argv)
    curve = parse_fractions(a.curve)
    use_compile_cache()
    run_labelled(load_config(a.gan_config, a.set), load_config(a.classifier_config, a.set_classifier), a.workdir,
                 a.multiple, curve, a.pool_multiple, a.test, a.sorter)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
