"""Convert datasets between jaxgen's class folders and NVIDIA's dataset_tool.py layout
(zip or folder: 00000/img00000000.png ... + dataset.json labels).

  python -m jaxgen nvidia_dataset export SRC OUT.zip      class folders -> NVIDIA zip (or folder)
  python -m jaxgen nvidia_dataset import SRC.zip OUT_DIR  NVIDIA zip (or folder) -> class folders

What each direction reads and writes: jaxgen/data/nvidia_dataset.py.
"""
from __future__ import annotations

import argparse
import sys

from jaxgen.commands.common import command_parser, run_main
from jaxgen.data.nvidia_dataset import export, import_


def parser() -> argparse.ArgumentParser:
    """`export SRC OUT.zip` or `import SRC.zip OUT_DIR`, each with --resolution, --channels, --progress_every."""
    ap = command_parser("nvidia_dataset", __doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="jaxgen class folders -> NVIDIA zip (or folder)")
    ex.add_argument("src", help="class-folder dataset, or a generate/evolve export folder")
    ex.add_argument("out", help="new .zip file (or a new folder) in NVIDIA's layout")
    im = sub.add_parser("import", help="NVIDIA zip (or folder with dataset.json) -> jaxgen class folders")
    im.add_argument("src", help="zip or folder written by dataset_tool.py (or by export)")
    im.add_argument("out", help="new folder for the class sub-folders")
    for p in (ex, im):
        p.add_argument("--resolution", type=int, default=None,
                       help="resize/crop to R x R (default: the images' own size)")
        p.add_argument("--channels", type=int, default=None, choices=(1, 3),
                       help="1 or 3 (default: 1 when every image is grayscale, else 3)")
        p.add_argument("--progress_every", type=float, default=10.0, help="seconds between progress lines")
    return ap


def main(argv=None) -> int:
    """Export class folders to NVIDIA's layout, or import them back."""
    args = parser().parse_args(argv)
    run = export if args.command == "export" else import_
    run(args.src, args.out, args.resolution, args.channels, args.progress_every)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
