"""NVIDIA's dataset format, and reading it: datasets move between jaxgen and stylegan2-ada-pytorch.

Why: people train with both tools. NVIDIA's `dataset_tool.py` writes a zip (or a
folder) of same-size square PNGs plus one `dataset.json` of integer class labels;
jaxgen reads class sub-folders. This module reads NVIDIA's layout into an
`ImageDataset` (its files through `jaxgen.data.nvidia_archive.Archive`);
`jaxgen.data.nvidia_writer` writes either layout from the other.

NVIDIA's layout (as `dataset_tool.py` writes it; `training/dataset.py` reads any
image files in the zip or folder, sorted by their relative name):

    00000/img00000000.png ... 00001/img00001000.png ...   (uncompressed PNGs, zip stored)
    dataset.json  {"labels": [["00000/img00000000.png", 3], ...]}  or  {"labels": null}

A label is an integer class k >= 0 (NVIDIA conditions on a one-hot of size max+1);
`{"labels": null}` or no dataset.json means unlabelled. jaxgen adds an optional
"class_names" list to dataset.json (NVIDIA's code reads only "labels"), so class
names survive a round trip; without it the classes are named "0".."K-1", and an
unlabelled set is one class named after the zip or folder.

    load_nvidia_dataset(path, resolution, channels)   zip or folder -> ImageDataset
    is_nvidia_dataset(path)                            a .zip, or a folder whose dataset.json has "labels"
    write_nvidia_dataset(images, labels, names, out)   -> out.zip or an NVIDIA folder (nvidia_writer)

`jaxgen.data.load_dataset` with source='folder' loads a path that `is_nvidia_dataset`
(e.g. --config.data.path=ffhq.zip). The command line (`jaxgen.data.nvidia_dataset`, a
module of its own so that `python -m` runs it cleanly) converts both ways:

    python -m jaxgen nvidia_dataset export data/demo_acne /tmp/acne.zip
    python -m jaxgen nvidia_dataset import /tmp/acne.zip /tmp/acne_folders

Images load like a jaxgen folder (`prepare_image`: converted to `channels`, resized
to `resolution` when stored at another size); all of them must have the one size
NVIDIA's format requires. Every problem is a one-line `DatasetError` naming the
file and the fix; outputs are never overwritten: a zip must be new, a folder new or
empty (`jaxgen.utils.outputs` marks it as jaxgen's).

A zip is untrusted input, so what it may cost is bounded before it is spent: labels must
lie within "class_names" (or below MAX_CLASSES without names) before any per-class list
is made; names repeat no class; entries may not point outside the zip; every file's
declared size (MAX_ENTRY_BYTES, MAX_JSON_BYTES) and inflation ratio (MAX_RATIO) are
checked before it is read, and files are read in chunks of at most _CHUNK_BYTES; an
image's pixel count (MAX_PIXELS) is checked from its header before it is decoded.
"""
from __future__ import annotations

import collections
import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from jaxgen.data.folder import (DatasetError, ImageDataset, _read_cache, _unreadable_error, _write_cache,
                                check_channels, check_resolution, default_cache_dir, folder_summary,
                                prepare_image, source_info, warn_summary)
from jaxgen.data.nvidia_archive import Archive, PathLike

LABELS_FILE = "dataset.json"
_CACHE_VERSION = 1
_CHUNK = 256                            # images read from the zip, then decoded in threads, at a time
_CHUNK_BYTES = 256 << 20                # ... and at most this many file bytes (one file may be more)
# Bounds on hostile or broken archives, checked before anything is allocated for them:
MAX_CLASSES = 100_000                   # classes a dataset.json without "class_names" may number
MAX_JSON_BYTES = 128 << 20              # dataset.json (labels of ~3M images)
MAX_PIXELS = 1 << 26                    # pixels of one image (8192 x 8192), read from its header


def is_nvidia_dataset(path: PathLike) -> bool:
    """True for a path ending in .zip, or a folder whose dataset.json has a "labels" key
    (jaxgen's demo folders also hold a dataset.json, without "labels": they stay class folders)."""
    p = Path(str(path)).expanduser()
    if p.suffix.lower() == ".zip":
        return True
    try:
        if (p / LABELS_FILE).stat().st_size > MAX_JSON_BYTES:
            return True                 # the loader refuses it in one line
        meta = json.loads((p / LABELS_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and "labels" in meta


def _read_meta(arch: Archive) -> Optional[dict]:
    """dataset.json of `arch` as a dict with "labels", or None when it has none."""
    if LABELS_FILE not in arch.names:
        nested = [n for n in arch.names if n.endswith("/" + LABELS_FILE)]
        if nested:
            raise DatasetError(f"{arch.path} has {nested[0]} but no {LABELS_FILE} at its top, where NVIDIA's "
                               "tools read the labels: zip the contents of that folder, not the folder")
        return None
    where = f"{arch.path}/{LABELS_FILE}" if arch.zip is None else f"{LABELS_FILE} in {arch.path}"
    text = arch.read(LABELS_FILE, MAX_JSON_BYTES)     # a DatasetError (a ValueError) when too big
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise DatasetError(f"{where} is not valid JSON ({str(e)[:80]}); fix it, or delete it to load the "
                           "images unlabelled") from None
    if not isinstance(meta, dict) or "labels" not in meta:
        raise DatasetError(f'{where} has no "labels": write {{"labels": [["00000/img00000000.png", 3], '
                           '...]}} (one integer class per image) or {"labels": null} (unlabelled)')
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise DatasetError(f'{where}: "class_names" must be a list of strings (one per class), '
                           f"got {json.dumps(names)[:80]}; fix or remove it (classes are then named 0, 1, ...)")
    first = {}
    for k, name in enumerate(names or []):      # two classes of one name would merge into one folder
        if name in first:
            raise DatasetError(f'{where}: "class_names" has {name[:40]!r} twice (classes {first[name]} and {k}); '
                               "give each class its own name")
        first[name] = k
    return dict(meta, where=where)


def _class_index(value) -> Optional[int]:
    """The class of one label value (an integer >= 0, also written 3.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and value >= 0 and value.is_integer():
        return int(value)
    return None


def _label_table(raw, where: str) -> Dict[str, object]:
    """{image name: label value} of dataset.json's "labels" list (checked to be [name, label] pairs)."""
    pairs = raw if isinstance(raw, list) else None
    if pairs is None or not all(isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str)
                                for e in pairs):
        bad = raw if pairs is None else next(e for e in pairs if not (
            isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str)))
        raise DatasetError(f'{where}: "labels" must be a list of [file, class] pairs or null, found '
                           f"{json.dumps(bad)[:80]}; re-write it with dataset_tool.py or jaxgen's export")
    return {name.replace("\\", "/"): value for name, value in pairs}


def _labels_for(images: Sequence[str], meta: dict) -> np.ndarray:
    """int32 [len(images)]: the class of each image by its relative name (checked both ways)."""
    where = meta["where"]
    table = _label_table(meta["labels"], where)
    missing = [n for n in images if n not in table]
    if missing:
        raise DatasetError(f"{where} has no label for {len(missing)} of {len(images)} image(s) (e.g. "
                           f"{', '.join(missing[:3])}): add a [file, class] entry for each, or set "
                           '"labels": null to load them unlabelled')
    extra = sorted(set(table) - set(images))
    if extra:
        raise DatasetError(f"{where} labels {len(extra)} file(s) that are not images of the dataset (e.g. "
                           f"{', '.join(extra[:3])}): remove those entries or add the files")
    bad = [(n, table[n]) for n in images if _class_index(table[n]) is None]
    if bad:
        kind = ("label vectors; jaxgen trains on one integer class per image" if isinstance(bad[0][1], list)
                else "not integer classes >= 0")
        raise DatasetError(f"{where}: {len(bad)} label(s) are {kind} (e.g. {bad[0][0]}: "
                           f"{json.dumps(bad[0][1])[:60]}); use class numbers 0, 1, 2, ...")
    classes = [_class_index(table[n]) for n in images]
    top, k = max(classes), classes.index(max(classes))     # checked before any per-class list is made
    names = meta.get("class_names")
    if names is not None and top >= len(names):
        raise DatasetError(f'{where}: "class_names" has {len(names)} name(s) but the labels go up to {top} '
                           f"(e.g. {images[k]}); give one name per class, or fix the label")
    if names is None and top >= MAX_CLASSES:
        raise DatasetError(f"{where}: label {top} (of {images[k]}) is over the {MAX_CLASSES:,} classes a "
                           'dataset.json without "class_names" may have; number the classes 0, 1, 2, ... '
                           'or add "class_names" (one name per class)')
    return np.array(classes, np.int32)


def _labels_and_names(arch: Archive, images: Sequence[str]) -> Tuple[np.ndarray, List[str], str]:
    """(labels int32 [N], class names, where the labels came from) of an NVIDIA dataset."""
    meta = _read_meta(arch)
    names = (meta or {}).get("class_names")
    if meta is None or meta["labels"] is None:
        one = names if names is not None and len(names) == 1 else [arch.path.stem or "images"]
        return np.zeros(len(images), np.int32), list(one), "none"
    labels = _labels_for(images, meta)          # in range of the names, or of MAX_CLASSES
    k = int(labels.max()) + 1
    return labels, list(names) if names is not None else [str(c) for c in range(k)], LABELS_FILE


def check_pixels(img: Image.Image, name: str = "") -> None:
    """DatasetError unless `img` (opened: its header read, not its pixels) has at most MAX_PIXELS
    pixels. Why: a PNG of one colour stores 30000 x 30000 pixels in a few MB; decoded, GBs."""
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise DatasetError(f"{name + ': ' if name else ''}{w}x{h} is {w * h:,} pixels, over the {MAX_PIXELS:,} "
                           "(8192 x 8192) one image may have; resize it or leave it out")


def _decode(data: bytes, resolution: int, channels: int):
    """(array [R, R, C], source_info, stored (w, h), None) or (None, None, None, error) of one file."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            check_pixels(img)               # from the header, before the pixels are decoded
            img.load()
            info = source_info(img, channels)
            return prepare_image(img, resolution, channels), info, img.size, None
    except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
        return None, None, None, f"{type(e).__name__}: {e}"


def _decode_all(arch: Archive, images: Sequence[str], resolution: int, channels: int,
                num_threads: Optional[int]) -> list:
    """One `_decode` result per image: files read in chunks (of _CHUNK files and _CHUNK_BYTES
    bytes: the memory they hold is bounded), decoded in threads. Every file's size is checked
    (`Archive.check`) before the first is read, so a zip bomb costs no decoding."""
    threads = num_threads or min(8, os.cpu_count() or 1)
    sizes = [arch.check(n) for n in images]
    results, start = [], 0
    with ThreadPoolExecutor(threads) as pool:
        while start < len(images):
            end, held = start + 1, sizes[start]
            while end < min(len(images), start + _CHUNK) and held + sizes[end] <= _CHUNK_BYTES:
                held, end = held + sizes[end], end + 1
            blobs = [arch.read(n) for n in images[start:end]]
            results += pool.map(lambda b: _decode(b, resolution, channels), blobs)
            start = end
    return results


def _check_sizes(arch: Archive, images: Sequence[str], sizes: Sequence[Tuple[int, int]]) -> None:
    """NVIDIA's format holds one image size: refuse a dataset of mixed sizes, naming them."""
    counts = collections.Counter(sizes)
    if len(counts) > 1:
        odd = next(n for n, s in zip(images, sizes) if s != counts.most_common(1)[0][0])
        shown = ", ".join(f"{w}x{h}: {c}" for (w, h), c in counts.most_common(4))
        raise DatasetError(f"the images of {arch.path} have {len(counts)} sizes ({shown}; e.g. {odd}) but "
                           "NVIDIA's format has one: re-make it with dataset_tool.py --width/--height, or "
                           "load the images as class folders (they are then resized and cropped)")


def _cache_path(arch: Archive, resolution: int, channels: int, skip_corrupt: bool,
                cache_dir) -> Optional[Path]:
    """The .npz that holds (or will hold) this load, or None when caching is off."""
    if cache_dir is None or str(cache_dir) == "":
        return None
    base = default_cache_dir() if cache_dir == "auto" else Path(cache_dir)
    blob = json.dumps([_CACHE_VERSION, str(arch.path.resolve()), arch.stamp(), resolution, channels,
                       skip_corrupt])
    key = hashlib.sha256(blob.encode()).hexdigest()[:32]
    return base / f"{arch.path.resolve().stem}-nvidia-{resolution}-{key}.npz"


def _decoded(arch: Archive, images: List[str], labels: np.ndarray, names: List[str], resolution: int,
             channels: int, skip_corrupt: bool, num_threads: Optional[int]) -> ImageDataset:
    """The decoded dataset with its summary (unreadable files raise, or are left out)."""
    results = _decode_all(arch, images, resolution, channels, num_threads)
    paths = [str(arch.path / n) for n in images]
    bad = [(p, err) for p, (_, _, _, err) in zip(paths, results) if err is not None]
    if bad and (not skip_corrupt or len(bad) == len(images)):
        raise _unreadable_error(arch.path, bad, len(images))
    keep = [i for i, r in enumerate(results) if r[3] is None]
    _check_sizes(arch, [images[i] for i in keep], [results[i][2] for i in keep])
    ds = ImageDataset(np.stack([results[i][0] for i in keep]), labels[keep], names, [paths[i] for i in keep])
    ds.summary = folder_summary(arch.path, ds, [(paths[i], results[i][1]) for i in keep], bad)
    return ds


def load_nvidia_dataset(path: PathLike, resolution: int, channels: int = 3, require_labels: bool = False,
                        min_classes: int = 1, skip_corrupt: bool = False,
                        cache_dir: Union[PathLike, None, str] = "auto",
                        num_threads: Optional[int] = None) -> ImageDataset:
    """Read NVIDIA's dataset (a zip, or a folder with dataset.json) at `resolution`.

    Images: every image file (PIL extensions, as NVIDIA's loader) sorted by relative name,
    all of one size, each through `prepare_image` (converted to `channels`, resized when
    stored at another size). Labels: dataset.json's integer classes (see the module
    docstring); require_labels / min_classes / skip_corrupt / cache_dir as in
    `load_image_folder`. Returns images uint8 [N, resolution, resolution, channels], labels
    int32 [N], paths '<zip or folder>/<name>' and a `summary` (source 'nvidia'; labels:
    'dataset.json' or 'none').
    """
    resolution = check_resolution(resolution, power_of_two=False)
    channels = check_channels(channels)
    with Archive(path) as arch:
        images = arch.image_names()
        if not images:
            raise DatasetError(f"no images found in {arch.path} (looked for PNG/JPEG/... files at any "
                               "depth); pass a zip written by NVIDIA's dataset_tool.py or jaxgen's export")
        labels, names, origin = _labels_and_names(arch, images)
        need = max(int(min_classes), 2 if require_labels else 1)
        if len(names) < need:
            raise DatasetError(
                f"{arch.path} has {len(names)} class(es) but {need} are required for labelled "
                "(conditional) training: its dataset.json gives no labels. Write one with integer "
                "classes (e.g. python -m jaxgen nvidia_dataset export from class folders), or "
                "train unconditionally.")
        cache_file = _cache_path(arch, resolution, channels, skip_corrupt, cache_dir)
        ds = _read_cache(cache_file)
        if ds is None:
            ds = _decoded(arch, images, labels, names, resolution, channels, skip_corrupt, num_threads)
            ds.summary.update(source="nvidia", labels=origin)
            _write_cache(cache_file, ds)
    warn_summary(ds.summary)
    return ds
