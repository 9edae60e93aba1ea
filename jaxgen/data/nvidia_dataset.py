"""Convert datasets between jaxgen's class folders and NVIDIA's dataset_tool.py layout.

    python -m jaxgen.data.nvidia_dataset export SRC OUT.zip      class folders -> NVIDIA zip (or folder)
    python -m jaxgen.data.nvidia_dataset import SRC.zip OUT_DIR  NVIDIA zip (or folder) -> class folders

SRC of export: a jaxgen dataset of class sub-folders, or an export folder of
generate/evolve (its latents/ and preview PNGs are left out); an NVIDIA zip or folder
is read too (e.g. to resize it with --resolution). The images keep their own size and
channels unless --resolution/--channels say otherwise; NVIDIA's format needs one
square power-of-two size. Outputs must be new (a zip that exists, a folder that is
not empty: refused before any work, one line). The format itself, loading and
writing: `jaxgen.data.nvidia_format` (re-exported here).
"""
from __future__ import annotations

import argparse
import collections
import io
import sys
from pathlib import Path
from typing import BinaryIO, Optional, Sequence, Tuple, Union

from PIL import Image

from jaxgen.cli import run_main
from jaxgen.data.folder import DatasetError, ImageDataset, _is_gray, load_image_folder, scan_image_folder
from jaxgen.data.nvidia_format import (EXPORT_KIND, IMPORT_KIND, LABELS_FILE, Archive, PathLike,
                                       check_fresh_folder, check_nvidia_output, check_pixels, is_nvidia_dataset,
                                       load_nvidia_dataset, nvidia_name, write_class_folders,
                                       write_nvidia_dataset)

__all__ = ["EXPORT_KIND", "IMPORT_KIND", "LABELS_FILE", "check_nvidia_output", "export", "import_",
           "is_nvidia_dataset", "load_any", "load_nvidia_dataset", "main", "nvidia_name",
           "write_class_folders", "write_nvidia_dataset"]


def _header(name: str, f: Union[str, BinaryIO]) -> Tuple[Tuple[int, int], str]:
    """(size, mode) of image file `f` from its header; DatasetError naming `name` when it is not
    an image PIL reads or has over MAX_PIXELS pixels (its native size would not fit in memory)."""
    try:
        with Image.open(f) as img:      # reads the header only
            check_pixels(img, name)
            return img.size, img.mode
    except DatasetError:
        raise
    except Image.DecompressionBombError as e:       # PIL's own bound, checked on open: over 2x MAX_IMAGE_PIXELS
        raise DatasetError(f"{name} has too many pixels to decode ({e}); resize it or leave it out") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure
        raise DatasetError(f"{name} is not a readable image ({type(e).__name__}: {' '.join(str(e).split())[:100]}); "
                           "delete or re-save it") from None


def _native_format(files: Sequence[Tuple[str, Union[str, BinaryIO]]]) -> Optional[Tuple[int, int]]:
    """(resolution, channels) the image files ((name, path or file object) pairs) are stored at:
    one square size; 1 channel if all are grayscale. None for no files (the loader then says so)."""
    sizes, gray = collections.Counter(), True
    for name, f in files:
        size, mode = _header(name, f)
        sizes[size] += 1
        gray = gray and _is_gray(mode)
    if not sizes:
        return None
    (w, h), _ = sizes.most_common(1)[0]
    if len(sizes) > 1 or w != h:
        shown = ", ".join(f"{a}x{b}: {c}" for (a, b), c in sizes.most_common(4))
        raise DatasetError(f"the images are not all one square size ({shown}): pass --resolution R to "
                           "resize and centre-crop them to R x R (a power of two, e.g. 64)")
    return w, 1 if gray else 3


def load_any(src: PathLike, resolution: Optional[int] = None, channels: Optional[int] = None) -> ImageDataset:
    """NVIDIA's zip/folder (`is_nvidia_dataset`) or jaxgen class folders `src`, uncached; the
    resolution and channels default to the images' own (`_native_format`)."""
    nvidia = is_nvidia_dataset(src)
    if not (resolution and channels):
        if nvidia:
            with Archive(src) as arch:          # NVIDIA's format has one size: its first image tells
                files = [(f"{n} in {arch.path}", io.BytesIO(arch.read(n))) for n in arch.image_names()[:1]]
        else:
            files = [(p, p) for p, _ in scan_image_folder(src)[0]]
        found = _native_format(files) or (64, 3)
        resolution, channels = resolution or found[0], channels or found[1]
    load = load_nvidia_dataset if nvidia else load_image_folder
    return load(src, resolution, channels, cache_dir=None)


def export(src: str, out: str, resolution: Optional[int] = None, channels: Optional[int] = None,
           progress_every: float = 10.0, log=print) -> Path:
    """jaxgen class folders `src` (a dataset, a generate/evolve export; or NVIDIA's, to resize
    it) -> NVIDIA's layout `out` (a new .zip, or a new folder)."""
    check_nvidia_output(out)
    if resolution is not None and (resolution < 4 or resolution & (resolution - 1)):
        raise DatasetError(f"--resolution {resolution}: NVIDIA's format needs a power of two >= 4 "
                           "(e.g. 32, 64, 128)")
    ds = load_any(src, resolution, channels)
    log(f"export: {len(ds)} images {ds.resolution}px x{ds.channels} from {src}, {ds.num_classes} "
        f"class(es) ({', '.join(ds.class_names)})")
    p = write_nvidia_dataset(ds.images, ds.labels, ds.class_names, out, progress_every=progress_every, log=log)
    log(f"export: wrote {p}: {nvidia_name(0)} ... {nvidia_name(len(ds) - 1)}, {LABELS_FILE} with "
        f"{'labels of ' + str(ds.num_classes) + ' classes' if ds.num_classes > 1 else 'labels null'}")
    return p


def import_(src: str, out: str, resolution: Optional[int] = None, channels: Optional[int] = None,
            progress_every: float = 10.0, log=print) -> Path:
    """NVIDIA's zip or folder `src` (or any dataset `load_any` reads) -> jaxgen class folders `out`."""
    check_fresh_folder(out, IMPORT_KIND, "OUT_DIR")
    if not Path(src).expanduser().exists():
        raise DatasetError(f"SRC {src} not found: pass a zip written by NVIDIA's dataset_tool.py or "
                           "jaxgen's export, or a folder with its dataset.json")
    ds = load_any(src, resolution, channels)
    log(f"import: {len(ds)} images {ds.resolution}px x{ds.channels} from {src}, {ds.num_classes} "
        f"class(es) ({', '.join(ds.class_names)})")
    p = write_class_folders(ds, out, progress_every=progress_every, log=log)
    log(f"import: wrote {p} (class folders; train with --config.data.path={p})")
    return p


def main(argv=None) -> int:
    """CLI: `export SRC OUT.zip` (class folders -> NVIDIA) or `import SRC.zip OUT_DIR` (back)."""
    ap = argparse.ArgumentParser(prog="python -m jaxgen.data.nvidia_dataset", description=(
        "Convert datasets between jaxgen's class folders and NVIDIA's dataset_tool.py layout "
        "(zip or folder: 00000/img00000000.png ... + dataset.json labels)."))
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
    args = ap.parse_args(argv)
    run = export if args.command == "export" else import_
    run(args.src, args.out, args.resolution, args.channels, args.progress_every)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
