"""Render the procedural acne-severity demo face dataset as an image folder.

  python -m jaxgen demo_faces --out data/demo_acne --num_per_class 64
  python -m jaxgen demo_faces --out data/demo_acne_test --num_per_class 32 --resolution 32 --seed 1

What the faces are and why: jaxgen/data/demo_faces.py.
"""
from __future__ import annotations

import argparse
import sys

from jaxgen.commands.common import command_parser, dashed_alias, run_main
from jaxgen.data.demo_faces import DEFAULT_CLASSES, GENERATOR_VERSION, VERSIONS, write_demo_dataset, write_preview


def add_render_flags(ap: argparse.ArgumentParser, out: str) -> None:
    """The flags of both demo renderers: --out (default `out`), --num_per_class, --resolution, --seed,
    --overwrite, --no_preview (also the dashed spellings of earlier versions), --quiet."""
    ap.add_argument("--out", default=out, help=f"output folder ({out})")
    ap.add_argument("--num_per_class", type=int, default=64, help="images per class (64)")
    ap.add_argument("--resolution", type=int, default=64, help="power of two, 16..1024 (64)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (0)")
    ap.add_argument("--overwrite", action="store_true",
                    help="re-render even if the folder holds a set with other parameters")
    ap.add_argument("--no_preview", action="store_true", help="do not write preview.png")
    dashed_alias(ap, "--num_per_class", type=int)
    dashed_alias(ap, "--no_preview", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress output")


def parser() -> argparse.ArgumentParser:
    """The render flags, --classes and --version."""
    ap = command_parser("demo_faces", __doc__)
    add_render_flags(ap, "data/demo_acne")
    ap.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                    help="comma-separated subset of " + ",".join(DEFAULT_CLASSES))
    ap.add_argument("--version", type=int, default=GENERATOR_VERSION,
                    help=f"renderer version {VERSIONS} ({GENERATOR_VERSION}; 1 = the first demo sets)")
    return ap


def main(argv=None) -> int:
    """Render the demo set into --out and write its preview.png."""
    args = parser().parse_args(argv)
    write_demo_dataset(args.out, args.num_per_class, args.resolution, args.seed,
                       [c.strip() for c in args.classes.split(",") if c.strip()],
                       progress=not args.quiet, overwrite=args.overwrite, version=args.version)
    if not args.no_preview:
        p = write_preview(args.out)
        if not args.quiet:
            print(f"demo_faces: preview grid written to {p}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
