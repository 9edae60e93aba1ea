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
class_names, paths and a `summary` of the load: images per class, the source
sizes and modes (e.g. `64x64 RGB: 120, 1x1000 L: 1`), each conversion done
(grayscale->RGB, RGB->grayscale, alpha flattened, extreme aspect ratios
cropped; also warned, once per kind, with counts) and the unreadable files left
out with `skip_corrupt`. Trainers print it in one line (`summary_line`) and
write it to their run folder. Decoded arrays and the summary are cached as .npz
keyed by the file list (sizes and mtimes), resolution and channels, so a second
load is fast and reports the same.

Model-side helpers: `to_float` maps uint8 to float32 in [-1, 1] (the GAN
convention), `to_uint8` inverts it. Training batches come from the harness
(`jaxgen.harness`), a pure function of (seed, step).

Every problem with the input raises `DatasetError` (a ValueError) with a
message that names the bad path or value and says how to fix it.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from jaxgen.errors import UserError
from jaxgen.utils.images import to_uint8 as _to_uint8_range
from jaxgen.utils.outputs import MARKER

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_CACHE_VERSION = 2           # 2: the cache holds the load's summary
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
EXTREME_ASPECT = 2.0         # a longer side over 2x the shorter loses over half the image to the crop
# The conversions a load reports (one warning per kind, with counts), as the warning says them.
CONVERSIONS = {
    "grayscale->RGB": "were grayscale and were copied to 3 channels (channels={channels}); set "
                      "--config.data.channels=1 to train on grayscale",
    "RGB->grayscale": "were in colour and were converted to grayscale (channels={channels}); set "
                      "--config.data.channels=3 to keep the colour",
    "alpha flattened": "had transparent pixels, which were flattened over white",
    "extreme aspect cropped": f"had one side over {EXTREME_ASPECT:g}x the other and were centre-cropped "
                              "to a square, losing over half of each image",
}
PathLike = Union[str, os.PathLike]


class DatasetError(UserError, ValueError):
    """A dataset could not be found or read; the message says how to fix it."""


@dataclasses.dataclass
class ImageDataset:
    """Images in memory: images uint8 [N, H, W, C], labels int32 [N] in
    [0, len(class_names)), class_names, the source path of each image, and `summary`:
    what the load found and did (JSON-able; see `folder_summary` and `basic_summary`).
    A large packed set's images are a `jaxgen.data.packed.PackedImages` instead: an
    array-like read by index (int, slice, index array) from its shards."""

    images: np.ndarray
    labels: np.ndarray
    class_names: List[str]
    paths: List[str]
    summary: Optional[Dict[str, Any]] = dataclasses.field(default=None, compare=False)

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


def check_resolution(resolution, minimum: int = 4, maximum: Optional[int] = None,
                     power_of_two: bool = True) -> int:
    """Return `resolution` as int if it is in [minimum, maximum] (and a power of two, which
    the GANs and the VAE build on; a classifier reads any size, e.g. ResNet's 224)."""
    ok = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
    if not ok or resolution < minimum or (power_of_two and resolution & (resolution - 1)):
        kind = "a power of two" if power_of_two else "an integer"
        raise DatasetError(f"resolution must be {kind} >= {minimum} (e.g. 64, 128, "
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
    (with a warning, except in a jaxgen export, where they are its plots). With no such sub-folder, the images directly in `root`
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
    own = (root / MARKER).is_file()     # a jaxgen export: the loose images are its plots (datasheet's
    if classes and loose and not own:   # nearest_real.png, evolve's preview.png); else e.g. a README image
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
    if img.mode in ALPHA_MODES:
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


def _is_gray(mode: str) -> bool:
    """True for PIL modes without colour (1, L, LA, I, F, 16-bit): one band besides alpha."""
    return mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;")


def _has_transparency(img: Image.Image) -> bool:
    """True when flattening `img` over white changes a pixel: its alpha (own or from a
    palette's transparency) is below 255 somewhere. Modes without alpha give False."""
    if img.mode not in ALPHA_MODES and not (img.mode == "P" and "transparency" in img.info):
        return False
    return img.convert("RGBA").getchannel("A").getextrema()[0] < 255


def source_info(img: Image.Image, channels: int) -> Tuple[str, Tuple[str, ...]]:
    """('WxH MODE' of the file as stored, the CONVERSIONS `prepare_image` applies to it).

    Called on a loaded image before `prepare_image`, e.g. ('1x1000 L', ('grayscale->RGB',
    'extreme aspect cropped')) for a 1-pixel-wide grayscale strip loaded with channels=3.
    """
    (w, h), mode = img.size, img.mode
    done = []
    if channels == 3 and _is_gray(mode):
        done.append("grayscale->RGB")
    if channels == 1 and not _is_gray(mode):
        done.append("RGB->grayscale")
    if _has_transparency(img):
        done.append("alpha flattened")
    if max(w, h) > EXTREME_ASPECT * min(w, h):
        done.append("extreme aspect cropped")
    return f"{w}x{h} {mode}", tuple(done)


def _decode(path: str, resolution: int, channels: int):
    """(array [R, R, C], source_info, None) or (None, None, error text) for one file."""
    try:
        with Image.open(path) as img:
            size, mode = img.size, img.mode
            if img.format == "JPEG":  # decode big JPEGs at a reduced DCT scale
                s = resolution / min(img.size)
                img.draft(img.mode, (int(img.size[0] * s) + 1, int(img.size[1] * s) + 1))
            img.load()
            key, done = source_info(img, channels)
            if img.size != size:       # a JPEG draft: report the size stored in the file
                key = f"{size[0]}x{size[1]} {mode}"
            return prepare_image(img, resolution, channels), (key, done), None
    except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
        return None, None, f"{type(e).__name__}: {e}"


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


def _cache_file(root: Path, items, resolution: int, channels: int, skip_corrupt: bool,
                cache_dir: Union[PathLike, None, str]) -> Optional[Path]:
    """The .npz that holds (or will hold) this load, or None when caching is off."""
    if cache_dir is None or str(cache_dir) == "":
        return None
    cache_dir = default_cache_dir() if cache_dir == "auto" else Path(cache_dir)
    key = _cache_key(root, items, resolution, channels, skip_corrupt)
    return cache_dir / f"{root.resolve().name}-{resolution}-{key}.npz"


def _read_cache(cache_file: Optional[Path]) -> Optional[ImageDataset]:
    """The cached dataset (with its summary) or None when absent or unreadable."""
    if cache_file is None or not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            return ImageDataset(z["images"], z["labels"], [str(c) for c in z["class_names"]],
                                [str(p) for p in z["paths"]], json.loads(str(z["summary"])))
    except Exception:  # noqa: BLE001 - a broken (or older) cache is just rebuilt
        return None


def _write_cache(cache_file: Optional[Path], ds: ImageDataset) -> None:
    """Store `ds` and its summary in `cache_file` (atomically; a failure only warns)."""
    if cache_file is None:
        return
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + f".tmp{os.getpid()}.npz")
        np.savez(tmp, images=ds.images, labels=ds.labels, class_names=np.array(ds.class_names),
                 paths=np.array(ds.paths), summary=np.array(json.dumps(ds.summary)))
        os.replace(tmp, cache_file)
    except OSError as e:
        warnings.warn(f"could not write the dataset cache {cache_file}: {e}", stacklevel=3)


def _unreadable_error(root: Path, bad: List[Tuple[str, str]], total: int) -> DatasetError:
    """One line naming the unreadable files (the first 10) and the two ways out."""
    shown = "; ".join(f"{os.path.relpath(p, root)} ({' '.join(err.split())[:120]})" for p, err in bad[:10])
    more = f"; ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    return DatasetError(
        f"{len(bad)} of {total} image(s) under {root} could not be read: {shown}{more}. Delete or "
        "re-save them, or set --config.data.skip_corrupt=True (--skip_corrupt for python -m jaxgen "
        "pack, skip_corrupt=True in Python) to leave them out; the skipped files are then listed in "
        "the data summary.")


def _none_readable_error(root: Path, bad: List[Tuple[str, str]]) -> DatasetError:
    """One line for a source whose every image was unreadable (skip_corrupt leaves nothing)."""
    return DatasetError(f"none of the {len(bad)} image(s) under {root} could be read (e.g. "
                        f"{os.path.relpath(bad[0][0], root)}: {' '.join(bad[0][1].split())[:120]}); "
                        "check that they are images (PNG/JPEG/BMP/WebP) and not empty")


def _decode_all(root: Path, items, class_names: List[str], resolution: int, channels: int,
                skip_corrupt: bool, num_threads: Optional[int]):
    """(dataset without summary, [(path, source_info)] of the kept files, [(path, error)] skipped).

    Every file is decoded (threads) before any error, so one message lists all bad files."""
    threads = num_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda it: _decode(it[0], resolution, channels), items))
    bad = [(p, err) for (p, _), (_, _, err) in zip(items, results) if err is not None]
    if bad and not skip_corrupt:
        raise _unreadable_error(root, bad, len(items))
    keep = [(it, arr, info) for it, (arr, info, err) in zip(items, results) if err is None]
    if not keep:
        raise _none_readable_error(root, bad)
    images = np.stack([arr for _, arr, _ in keep])
    labels = np.array([label for (_, label), _, _ in keep], np.int32)
    paths = [p for (p, _), _, _ in keep]
    ds = ImageDataset(images, labels, list(class_names), paths)
    return ds, [(p, info) for (p, _), _, info in keep], bad


def load_image_folder(root: PathLike, resolution: int, channels: int = 3,
                      require_labels: bool = False, min_classes: int = 1,
                      skip_corrupt: bool = False,
                      cache_dir: Union[PathLike, None, str] = "auto",
                      num_threads: Optional[int] = None) -> ImageDataset:
    """Read every image under `root` (see `scan_image_folder`) at `resolution`.

    require_labels: the data must have >= 2 classes (same as min_classes=2).
    skip_corrupt: leave unreadable files out (warned, and listed in the summary's
      'skipped'), instead of raising one DatasetError that lists all of them.
    cache_dir: folder for decoded .npz caches; "auto" = $JAXGEN_CACHE_DIR or
      ~/.cache/jaxgen; None or "" disables caching.
    Returns an ImageDataset with images uint8 [N, resolution, resolution, channels] and
    its `summary` (see `folder_summary`); each conversion done is warned once per kind,
    also when the arrays come from the cache.
    """
    resolution = check_resolution(resolution, power_of_two=False)   # the trainers check theirs
    channels = check_channels(channels)
    root = Path(root).expanduser()
    items, class_names = scan_image_folder(root)
    need = max(int(min_classes), 2 if require_labels else 1)
    if len(class_names) < need:
        raise DatasetError(
            f"{root} has {len(class_names)} class(es) ({', '.join(class_names)}) but "
            f"{need} are required for labelled (conditional) training. Put each class in "
            f"its own sub-folder: {root}/<class_name>/<image>.png, or train unconditionally.")
    cache_file = _cache_file(root, items, resolution, channels, skip_corrupt, cache_dir)
    ds = _read_cache(cache_file)
    if ds is None:
        ds, infos, bad = _decode_all(root, items, class_names, resolution, channels, skip_corrupt,
                                     num_threads)
        ds.summary = folder_summary(root, ds, infos, bad)
        _write_cache(cache_file, ds)
    warn_summary(ds.summary)
    return ds


def folder_summary(root: Path, ds: ImageDataset, infos: List[Tuple[str, Tuple[str, Tuple[str, ...]]]],
                   bad: List[Tuple[str, str]]) -> Dict[str, Any]:
    """What a folder load found and did, JSON-able (written to a run's data_summary.json).

    infos: (path, source_info) per loaded image; bad: (path, error) per skipped file. Keys:
    source, root, num_images, resolution, channels, classes {name: count}, source_sizes
    {'WxH MODE': count} (most common first), conversions {kind: {count, examples}},
    skipped [{path, error}].
    """
    out = basic_summary(ds, "folder")
    out["root"] = str(root)
    sizes = collections.Counter(key for _, (key, _) in infos)
    out["source_sizes"] = dict(sizes.most_common())
    conversions: Dict[str, Dict[str, Any]] = {}
    for path, (_, done) in infos:
        for kind in done:
            c = conversions.setdefault(kind, dict(count=0, examples=[]))
            c["count"] += 1
            if len(c["examples"]) < 3:
                c["examples"].append(os.path.relpath(path, root))
    out["conversions"] = {k: conversions[k] for k in CONVERSIONS if k in conversions}
    out["skipped"] = [dict(path=p, error=err) for p, err in bad]
    return out


def basic_summary(ds: ImageDataset, source: str) -> Dict[str, Any]:
    """The part of a summary every source has: counts per class, shape of the arrays."""
    counts = np.bincount(ds.labels, minlength=ds.num_classes) if len(ds) else []
    return dict(source=source, num_images=len(ds), resolution=ds.resolution, channels=ds.channels,
                classes={str(n): int(c) for n, c in zip(ds.class_names, counts)})


def warn_summary(summary: Dict[str, Any]) -> None:
    """One warning per kind of conversion done, and one for the skipped files."""
    n, root = summary.get("num_images", 0), summary.get("root", "the data folder")
    for kind, c in summary.get("conversions", {}).items():
        what = CONVERSIONS[kind].format(channels=summary.get("channels"))
        warnings.warn(f"{c['count']} of {n} image(s) under {root} {what} (e.g. "
                      f"{', '.join(c['examples'])})", stacklevel=3)
    skipped = summary.get("skipped") or []
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s): "
                      + ", ".join(s["path"] for s in skipped), stacklevel=3)


def summary_line(summary: Dict[str, Any]) -> str:
    """The summary in one line, e.g. '120 images 64px x3, 2 classes (a 60, b 60); sources
    64x64 RGB: 119, 1x1000 L: 1; converted: grayscale->RGB 1; skipped 1 unreadable' (and for a
    packed set how it is read: '; streamed from 3 ArrayRecord shards, raw, 2.4 GiB decoded')."""
    classes = summary.get("classes", {})
    parts = [f"{summary.get('num_images', 0)} images {summary.get('resolution')}px "
             f"x{summary.get('channels')}, {len(classes)} classes ("
             + ", ".join(f"{k} {v}" for k, v in classes.items()) + ")"]
    sizes = list(summary.get("source_sizes", {}).items())
    if sizes:
        more = f", {len(sizes) - 4} more sizes" if len(sizes) > 4 else ""
        parts.append("sources " + ", ".join(f"{k}: {v}" for k, v in sizes[:4]) + more)
    conv = summary.get("conversions", {})
    if conv:
        parts.append("converted: " + ", ".join(f"{k} {c['count']}" for k, c in conv.items()))
    if summary.get("skipped"):
        parts.append(f"skipped {len(summary['skipped'])} unreadable")
    if summary.get("packed"):       # a packed set (jaxgen.data.packed): how it is read
        parts.append(summary["packed"])
    return "; ".join(parts)


def to_float(images) -> np.ndarray:
    """uint8 images (any shape, NHWC by convention) -> float32 in [-1, 1]."""
    return np.asarray(images, np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def to_uint8(images) -> np.ndarray:
    """Inverse of `to_float`: float in [-1, 1] -> uint8 in [0, 255] (clipped, rounded)."""
    return _to_uint8_range(images, (-1.0, 1.0))


