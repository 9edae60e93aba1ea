"""Render the procedural depth-map face dataset (4 expressions) as an image folder.

  python -m jaxgen depth_faces --out data/demo_depth --num_per_class 64

What the faces are and why: jaxgen/data/depth_faces.py.
"""
from __future__ import annotations

import argparse
import sys

from jaxgen.commands.common import command_parser, run_main
from jaxgen.commands.demo_faces import add_render_flags
from jaxgen.data.depth_faces import write_depth_dataset


def parser() -> argparse.ArgumentParser:
    """The render flags of both demo renderers."""
    ap = command_parser("depth_faces", __doc__)
    add_render_flags(ap, "data/demo_depth")
    return ap


def main(argv=None) -> int:
    """Render the depth-face set into --out (with preview.png)."""
    args = parser().parse_args(argv)
    out = write_depth_dataset(args.out, args.num_per_class, args.resolution, args.seed,
                              progress=not args.quiet, preview=not args.no_preview,
                              overwrite=args.overwrite)
    if not args.no_preview and not args.quiet:
        print(f"depth_faces: preview grid in {out / 'preview.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
