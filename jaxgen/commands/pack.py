"""Pack an image folder, an NVIDIA dataset zip or a prepared TFDS split into shards
that training reads by index (--config.data.path=OUT).

  python -m jaxgen pack SRC OUT --resolution R [--channels C] [--encoding raw|png]
  python -m jaxgen pack mnist OUT --source tfds --resolution 32 --split train --data_dir DIR

The format, why it is made so, and the writer: jaxgen/data/pack.py; the reader: jaxgen/data/packed.py.
"""
from __future__ import annotations

import argparse
import sys

from jaxgen.commands.common import command_parser, run_main
from jaxgen.data.pack import SHARD_BYTES, pack_dataset
from jaxgen.data.packed import ENCODINGS


def parser() -> argparse.ArgumentParser:
    """`SRC OUT --resolution R [--channels C] [--encoding raw|png] [--source folder|tfds ...]`."""
    ap = command_parser("pack", __doc__)
    ap.add_argument("src", help="image folder, NVIDIA zip/folder, or (with --source tfds) a TFDS name")
    ap.add_argument("out", help="new folder for the pack (or an earlier pack, replaced)")
    ap.add_argument("--resolution", type=int, required=True, help="square size R of the packed images")
    ap.add_argument("--channels", type=int, default=3, choices=(1, 3), help="1 (grayscale) or 3 (RGB)")
    ap.add_argument("--encoding", default="raw", choices=ENCODINGS,
                    help="raw: no decoding when read (default); png: about half the bytes")
    ap.add_argument("--source", default="folder", choices=("folder", "tfds"))
    ap.add_argument("--split", default="train", help="TFDS split (e.g. train, train[:90%%])")
    ap.add_argument("--data_dir", default=None, help="TFDS data_dir (default $TFDS_DATA_DIR)")
    ap.add_argument("--image_key", default="image")
    ap.add_argument("--label_key", default="label", help="TFDS label feature ('' for unlabelled)")
    ap.add_argument("--max_examples", type=int, default=None)
    ap.add_argument("--skip_corrupt", action="store_true", help="leave unreadable files out (listed)")
    ap.add_argument("--shard_mb", type=float, default=SHARD_BYTES / 2 ** 20, help="MiB of records per shard")
    ap.add_argument("--progress_every", type=float, default=10.0, help="seconds between progress lines")
    return ap


def main(argv=None) -> int:
    """Pack SRC into OUT (see the flags)."""
    a = parser().parse_args(argv)
    src = a.src if a.source == "folder" else dict(
        source="tfds", name=a.src, split=a.split, data_dir=a.data_dir, image_key=a.image_key,
        label_key=a.label_key or None, max_examples=a.max_examples)
    pack_dataset(src, a.out, a.resolution, a.channels, a.encoding, int(a.shard_mb * 2 ** 20), a.skip_corrupt,
                 progress_every=a.progress_every)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
