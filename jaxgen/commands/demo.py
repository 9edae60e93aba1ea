"""`make demo`: the product's main job on the embedded demo faces: a labelled synthetic dataset
from a tiny StyleGAN2-ADA, and how far a classifier that did not pick it agrees with its labels.

  python -m jaxgen demo --workdir runs/demo [--set train.total_kimg=4]

The steps (each resumes; a finished one is skipped) and why: jaxgen/workflows/demo.py.
"""
from __future__ import annotations

import argparse
import sys

from jaxgen.commands.common import command_parser, run_main, use_compile_cache
from jaxgen.workflows.demo import run_demo


def parser() -> argparse.ArgumentParser:
    """--workdir and the GAN config's --set overrides."""
    p = command_parser("demo", __doc__)
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a GAN config value, e.g. --set train.total_kimg=4 (repeatable)")
    return p


def main(argv=None) -> int:
    """Run (or resume) the demo in --workdir."""
    a = parser().parse_args(argv)
    use_compile_cache()
    run_demo(a.workdir, a.set)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
