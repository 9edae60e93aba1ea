"""Convert datasets between jaxgen's class folders and NVIDIA's dataset_tool.py layout.

    python -m jaxgen nvidia_dataset export SRC OUT.zip      class folders -> NVIDIA zip (or folder)
    python -m jaxgen nvidia_dataset import SRC.zip OUT_DIR  NVIDIA zip (or folder) -> class folders

SRC of export: a jaxgen dataset of class sub-folders, or an export folder of
generate/evolve (its latents/ and preview PNGs are left out); an NVIDIA zip or folder
is read too (e.g. to resize it with --resolution). The images keep their own size and
channels unless --resolution/--channels say otherwise; NVIDIA's format needs one
square power-of-two size. Outputs must be new (a zip that exists, a folder that is
not empty: refused before any work, one line). The format itself, loading and
writing: `jaxgen.data.nvidia_format` (reading), `jaxgen.data.nvidia_writer` (writing).
"""
from __future__ import annotations

import collections
import io
from pathlib import Path
from typing import BinaryIO, Optional, Sequence, Tuple, Union

from PIL import Image

from jaxgen.data.folder import DatasetError, ImageDataset, _is_gray, load_image_folder, scan_image_folder
from jaxgen.data.nvidia_archive import Archive, PathLike
from jaxgen.data.nvidia_format import LABELS_FILE, check_pixels, is_nvidia_dataset, load_nvidia_dataset
from jaxgen.data.nvidia_writer import (EXPORT_KIND, IMPORT_KIND, check_fresh_folder, check_nvidia_output, nvidia_name,
                                       write_class_folders, write_nvidia_dataset)
from jaxgen.utils.logger import logger

__all__ = ["EXPORT_KIND", "IMPORT_KIND", "LABELS_FILE", "check_nvidia_output", "export", "import_",
           "is_nvidia_dataset", "load_any", "load_nvidia_dataset", "nvidia_name",
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
           progress_every: float = 10.0) -> Path:
    """jaxgen class folders `src` (a dataset, a generate/evolve export; or NVIDIA's, to resize
    it) -> NVIDIA's layout `out` (a new .zip, or a new folder)."""
    check_nvidia_output(out)
    if resolution is not None and (resolution < 4 or resolution & (resolution - 1)):
        raise DatasetError(f"--resolution {resolution}: NVIDIA's format needs a power of two >= 4 "
                           "(e.g. 32, 64, 128)")
    ds = load_any(src, resolution, channels)
    logger.info(f"export: {len(ds)} images {ds.resolution}px x{ds.channels} from {src}, {ds.num_classes} "
                f"class(es) ({', '.join(ds.class_names)})")
    p = write_nvidia_dataset(ds.images, ds.labels, ds.class_names, out, progress_every=progress_every)
    logger.info(f"export: wrote {p}: {nvidia_name(0)} ... {nvidia_name(len(ds) - 1)}, {LABELS_FILE} with "
                f"{'labels of ' + str(ds.num_classes) + ' classes' if ds.num_classes > 1 else 'labels null'}")
    return p


def import_(src: str, out: str, resolution: Optional[int] = None, channels: Optional[int] = None,
            progress_every: float = 10.0) -> Path:
    """NVIDIA's zip or folder `src` (or any dataset `load_any` reads) -> jaxgen class folders `out`."""
    check_fresh_folder(out, IMPORT_KIND, "OUT_DIR")
    if not Path(src).expanduser().exists():
        raise DatasetError(f"SRC {src} not found: pass a zip written by NVIDIA's dataset_tool.py or "
                           "jaxgen's export, or a folder with its dataset.json")
    ds = load_any(src, resolution, channels)
    logger.info(f"import: {len(ds)} images {ds.resolution}px x{ds.channels} from {src}, {ds.num_classes} "
                f"class(es) ({', '.join(ds.class_names)})")
    p = write_class_folders(ds, out, progress_every=progress_every)
    logger.info(f"import: wrote {p} (class folders; train with --config.data.path={p})")
    return p


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen nvidia_dataset
    import runpy
    runpy.run_module("jaxgen.commands.nvidia_dataset", run_name="__main__")
