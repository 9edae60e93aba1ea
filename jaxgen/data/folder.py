"""Load a user's image folder into memory as a square, fixed-size image array.

Why: people bring their own (small, often messy) medical photo collections.
This loader accepts them as they come -- any size or aspect ratio, JPEG/PNG/
BMP/WebP, grayscale, RGBA, palette or 16-bit files, rotated phone photos --
and turns them into one uint8 array that the GAN and classifier code use.

Layout (classes are the top-level sub-folders, searched recursively):

    root/healthy/a.jpg, root/severe/x/b.png   -> labelled, classes sorted by name
    root/a.png, root/b.jpg                     -> one unlabelled class (root's name)

Each image: EXIF rotation applied, alpha composited over white, converted to
`channels` (1 or 3), short side resized to `resolution` with an antialiasing
LANCZOS filter and centre-cropped to a square. The result is an
`ImageDataset`: images uint8 [N, H, W, C] (NHWC), labels int32 [N],
class_names, paths. Decoded arrays are cached as .npz keyed by the file list
(sizes and mtimes), resolution and channels, so a second load is fast.

Model-side helpers: `to_float` maps uint8 to float32 in [-1, 1] (the GAN
convention), `to_uint8` inverts it. Training batches come from the harness
(`jaxgen.harness`), a pure function of (seed, step).

Every problem with the input raises `DatasetError` (a ValueError) with a
message that names the bad path or value and says how to fix it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from jaxgen.utils.images import to_uint8 as _to_uint8_range
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_CACHE_VERSION = 1
PathLike = Union[str, os.PathLike]


class DatasetError(ValueError):
    """A dataset could not be found or read; the message says how to fix it."""


@dataclasses.dataclass
class ImageDataset:
    """Images in memory: images uint8 [N, H, W, C], labels int32 [N] in
    [0, len(class_names)), class_names, and the source path of each image."""

    images: np.ndarray
    labels: np.ndarray
    class_names: List[str]
    paths: List[str]

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N,H,W,C], got {self.images.dtype} "
                             f"{self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels shape {self.labels.shape} != ({len(self.images)},)")
        if len(self.paths) != len(self.images):
            raise ValueError("one path per image is required")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])


def check_resolution(resolution, minimum: int = 4, maximum: Optional[int] = None) -> int:
    """Return `resolution` as int if it is a power of two in [minimum, maximum]."""
    ok = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
    if not ok or resolution < minimum or resolution & (resolution - 1):
        raise DatasetError(f"resolution must be a power of two >= {minimum} (e.g. 64, 128, "
                           f"256), got {resolution!r}")
    if maximum is not None and resolution > maximum:
        raise DatasetError(f"resolution must be <= {maximum}, got {resolution}")
    return int(resolution)


def check_channels(channels) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DatasetError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    return int(channels)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_under(folder: Path) -> List[Path]:
    """All non-hidden image files below `folder`, recursively, in sorted order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / n for n in filenames if _is_image(n)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def scan_image_folder(root: PathLike) -> Tuple[List[Tuple[str, int]], List[str]]:
    """List (path, label) for every image under `root`, and the class names.

    Classes are the non-hidden top-level sub-folders that contain images
    (recursively), sorted by name; images directly in `root` are then ignored
    (with a warning). With no such sub-folder, the images directly in `root`
    form one class named after `root`. The order is deterministic.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        hint = " (it is a file; pass its folder)" if root.exists() else ""
        raise DatasetError(f"dataset folder not found: {root}{hint}. Pass a folder of images "
                           "or of class sub-folders (root/<class>/<image>.png).")
    top = sorted(root.iterdir(), key=lambda p: p.name)
    loose = [p for p in top if p.is_file() and _is_image(p.name)]
    classes = [(d.name, _images_under(d)) for d in top
               if d.is_dir() and not d.name.startswith(".")]
    classes = [(n, files) for n, files in classes if files]
    if classes and loose:  # e.g. a preview grid or README image next to the classes
        names = ", ".join(p.name for p in loose[:5]) + (" ..." if len(loose) > 5 else "")
        warnings.warn(f"ignoring {len(loose)} image(s) directly in {root} ({names}) because it "
                      "has class sub-folders; move them into a class folder to use them.",
                      stacklevel=2)
    if not classes:
        if not loose:
            raise DatasetError(f"no images found in {root} (looked for "
                               f"{'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} files, case-"
                               "insensitive, directly inside or in class sub-folders).")
        classes = [(root.resolve().name or "images", loose)]
    items = [(str(p), label) for label, (_, files) in enumerate(classes) for p in files]
    return items, [n for n, _ in classes]


def _to_8bit(img: Image.Image) -> Image.Image:
    """Map 16/32-bit integer and float modes to 8-bit 'L'."""
    arr = np.asarray(img)
    if img.mode == "F":
        scale = 1.0 if float(np.nanmax(arr, initial=0)) <= 1.0 else 1 / 255
        arr = np.nan_to_num(arr) / scale
    elif arr.dtype.kind in "iu" and (img.mode.startswith("I;16") or arr.max(initial=0) > 255):
        arr = arr.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def prepare_image(img: Image.Image, resolution: int, channels: int = 3) -> np.ndarray:
    """A PIL image as uint8 [resolution, resolution, channels]: EXIF-rotated,
    alpha over white, converted, short side resized (LANCZOS), centre-cropped."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    img = img.resize((resolution, resolution), Image.LANCZOS, box=box)
    arr = np.asarray(img, np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _decode(path: str, resolution: int, channels: int):
    """(array, None) or (None, error text) for one file."""
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":  # decode big JPEGs at a reduced DCT scale
                s = resolution / min(img.size)
                img.draft(img.mode, (int(img.size[0] * s) + 1, int(img.size[1] * s) + 1))
            img.load()
            return prepare_image(img, resolution, channels), None
    except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
        return None, f"{type(e).__name__}: {e}"


def default_cache_dir() -> Path:
    env = os.environ.get("JAXGEN_CACHE_DIR")
    if env:
        return Path(env) / "image_folders"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxgen" / "image_folders"


def _cache_key(root: Path, items, resolution: int, channels: int, skip_corrupt: bool) -> str:
    files = []
    for p, label in items:
        st = os.stat(p)
        files.append((os.path.relpath(p, root), label, st.st_size, st.st_mtime_ns))
    blob = json.dumps([_CACHE_VERSION, str(root.resolve()), files, resolution, channels,
                       skip_corrupt])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load_image_folder(root: PathLike, resolution: int, channels: int = 3,
                      require_labels: bool = False, min_classes: int = 1,
                      skip_corrupt: bool = False,
                      cache_dir: Union[PathLike, None, str] = "auto",
                      num_threads: Optional[int] = None) -> ImageDataset:
    """Read every image under `root` (see `scan_image_folder`) at `resolution`.

    require_labels: the data must have >= 2 classes (same as min_classes=2).
    skip_corrupt: warn about unreadable files and leave them out, instead of
      raising one DatasetError that lists all of them.
    cache_dir: folder for decoded .npz caches; "auto" = $JAXGEN_CACHE_DIR or
      ~/.cache/jaxgen; None or "" disables caching.
    Returns an ImageDataset with images uint8 [N, resolution, resolution, channels].
    """
    resolution, channels = check_resolution(resolution), check_channels(channels)
    root = Path(root).expanduser()
    items, class_names = scan_image_folder(root)
    need = max(int(min_classes), 2 if require_labels else 1)
    if len(class_names) < need:
        raise DatasetError(
            f"{root} has {len(class_names)} class(es) ({', '.join(class_names)}) but "
            f"{need} are required for labelled (conditional) training. Put each class in "
            f"its own sub-folder: {root}/<class_name>/<image>.png, or train unconditionally.")
    cache_file = None
    if cache_dir is not None and str(cache_dir) != "":
        cache_dir = default_cache_dir() if cache_dir == "auto" else Path(cache_dir)
        key = _cache_key(root, items, resolution, channels, skip_corrupt)
        cache_file = cache_dir / f"{root.resolve().name}-{resolution}-{key}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    skipped = [str(s) for s in z["skipped"]]
                    if skipped:
                        warnings.warn(f"skipped {len(skipped)} unreadable image(s): "
                                      + ", ".join(skipped), stacklevel=2)
                    return ImageDataset(z["images"], z["labels"],
                                        [str(c) for c in z["class_names"]],
                                        [str(p) for p in z["paths"]])
            except Exception:  # noqa: BLE001 - a broken cache is just rebuilt
                pass

    threads = num_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda it: _decode(it[0], resolution, channels), items))
    bad = [(p, err) for (p, _), (_, err) in zip(items, results) if err is not None]
    if bad and not skip_corrupt:
        lines = "\n".join(f"  {p}  ({err})" for p, err in bad)
        raise DatasetError(f"{len(bad)} of {len(items)} image(s) under {root} could not be "
                           f"read:\n{lines}\nDelete or re-save these files, or pass "
                           "skip_corrupt=True to leave them out.")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): "
                      + ", ".join(p for p, _ in bad), stacklevel=2)
    keep = [(it, arr) for it, (arr, err) in zip(items, results) if err is None]
    if not keep:
        raise DatasetError(f"none of the {len(items)} image(s) under {root} could be read.")
    images = np.stack([arr for _, arr in keep])
    labels = np.array([label for (_, label), _ in keep], np.int32)
    paths = [p for (p, _), _ in keep]
    ds = ImageDataset(images, labels, list(class_names), paths)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.name + f".tmp{os.getpid()}.npz")
            np.savez(tmp, images=images, labels=labels, class_names=np.array(class_names),
                     paths=np.array(paths), skipped=np.array([p for p, _ in bad], dtype=str))
            os.replace(tmp, cache_file)
        except OSError as e:
            warnings.warn(f"could not write the dataset cache {cache_file}: {e}", stacklevel=2)
    return ds


def to_float(images) -> np.ndarray:
    """uint8 images (any shape, NHWC by convention) -> float32 in [-1, 1]."""
    return np.asarray(images, np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def to_uint8(images) -> np.ndarray:
    """Inverse of `to_float`: float in [-1, 1] -> uint8 in [0, 255] (clipped, rounded)."""
    return _to_uint8_range(images, (-1.0, 1.0))


