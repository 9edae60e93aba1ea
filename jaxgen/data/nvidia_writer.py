"""Writing NVIDIA's dataset layout (a zip or a folder of PNGs plus dataset.json), and the
class folders a converted NVIDIA dataset becomes (the layouts: ``jaxgen.data.nvidia_format``).

`write_nvidia_dataset(images, labels, names, out)` writes NVIDIA's layout as
`dataset_tool.py` does; `write_class_folders(ds, out)` writes jaxgen class folders. Outputs
are never overwritten: a zip must be new, a folder new or empty (`jaxgen.utils.outputs`
marks it as jaxgen's).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from jaxgen.data.folder import DatasetError, ImageDataset
from jaxgen.data.nvidia_archive import PathLike
from jaxgen.data.nvidia_format import LABELS_FILE
from jaxgen.errors import OutputError
from jaxgen.utils.files import inside
from jaxgen.utils.outputs import MARKER, check_output, claim_output
from jaxgen.utils.progress import Progress

__all__ = ["EXPORT_KIND", "IMPORT_KIND", "nvidia_name", "check_fresh_folder", "check_nvidia_output",
           "write_nvidia_dataset", "write_class_folders"]

EXPORT_KIND = "nvidia_dataset"          # marker kind of an NVIDIA folder jaxgen wrote
IMPORT_KIND = "nvidia_import"           # marker kind of class folders imported from NVIDIA's format


def nvidia_name(index: int) -> str:
    """The archive name of image `index`, as dataset_tool.py writes it: '00001/img00001234.png'."""
    return f"{index // 1000:05d}/img{index:08d}.png"


def _png_bytes(img: np.ndarray, compress_level: int) -> bytes:
    """One uint8 image [H, W, C] (C = 1 or 3) as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="png",
                                                                     compress_level=compress_level)
    return buf.getvalue()


def _check_arrays(images: np.ndarray, labels: Optional[np.ndarray], class_names: Sequence[str]) -> None:
    """The arrays NVIDIA's format can hold: uint8 [N, R, R, 1|3], R a power of two, labels in range."""
    shape = getattr(images, "shape", None)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
        raise DatasetError(f"images must be uint8 [N, R, R, 1 or 3] with N >= 1, got {images.dtype} {shape}")
    r = images.shape[1]
    if images.shape[2] != r or r < 4 or r & (r - 1):
        raise DatasetError(f"NVIDIA's format needs square power-of-two images, got {r}x{images.shape[2]}: "
                           "pass --resolution 32, 64, 128, ... to resize them")
    if labels is not None:
        if np.shape(labels) != (len(images),) or (len(labels) and (labels.min() < 0
                                                                  or labels.max() >= len(class_names))):
            raise DatasetError(f"labels must be [{len(images)}] classes in 0..{len(class_names) - 1}, "
                               f"got shape {np.shape(labels)}")


def check_fresh_folder(out: PathLike, kind: str, flag: str) -> Path:
    """`out` if new or empty (else OutputError, also for an earlier conversion: no stale files mix in)."""
    p = check_output(out, kind, flag)
    if p.exists() and any(e.name != MARKER for e in p.iterdir()):
        raise OutputError(f"{flag} {p} holds an earlier conversion; nothing was written: delete it or "
                          f"choose a new folder with {flag}")
    return p


def check_nvidia_output(out: PathLike, flag: str = "OUT") -> Path:
    """`out` if NVIDIA's dataset may be written there, else OutputError (creates nothing):
    a .zip must not exist; a folder must be new or empty."""
    p = Path(out).expanduser()
    if p.suffix.lower() == ".zip":
        if p.exists():
            raise OutputError(f"{flag} {p} exists; nothing was written: choose a new .zip name or delete it")
        return p
    return check_fresh_folder(p, EXPORT_KIND, flag)


def write_nvidia_dataset(images: np.ndarray, labels: Optional[np.ndarray], class_names: Sequence[str],
                         out: PathLike, flag: str = "OUT", progress_every: float = 10.0,
                         compress_level: int = 0) -> Path:
    """Write uint8 images [N, R, R, C] in NVIDIA's layout to `out` (a .zip, else a folder).

    labels int32 [N] in [0, len(class_names)), or None (unlabelled: "labels": null); one
    class only is also written unlabelled. dataset.json also gets "class_names". PNGs are
    uncompressed (compress_level=0) and the zip stored, as dataset_tool.py writes them, so
    they decode fast in a training loop. A zip is written under a temporary name and
    renamed when complete. Returns `out`.
    """
    images = np.asarray(images)
    labels = None if labels is None or len(class_names) < 2 else np.asarray(labels)
    _check_arrays(images, labels, class_names)
    p = check_nvidia_output(out, flag)
    entries = [nvidia_name(i) for i in range(len(images))]
    meta = dict(labels=None if labels is None else [[n, int(c)] for n, c in zip(entries, labels)],
                class_names=list(class_names))
    bar = Progress(len(images), f"export: images to {p}", every=progress_every)
    if p.suffix.lower() == ".zip":
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".tmp{os.getpid()}")
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
                for name, img in bar.iterate(zip(entries, images)):
                    z.writestr(name, _png_bytes(img, compress_level))
                z.writestr(LABELS_FILE, json.dumps(meta))
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)     # only left when interrupted
        return p
    claim_output(p, EXPORT_KIND, flag)
    for name, img in bar.iterate(zip(entries, images)):
        f = inside(p, p / name)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(_png_bytes(img, compress_level))
    (p / LABELS_FILE).write_text(json.dumps(meta))
    return p


def write_class_folders(ds: ImageDataset, out: PathLike, flag: str = "OUT_DIR",
                        progress_every: float = 10.0) -> Path:
    """Write `ds` as jaxgen class folders: out/<class>/<name>.png (name: the file's own name
    without its extension, or its whole relative name with '/' -> '_' when those repeat)."""
    bad = [n for n in ds.class_names if not n or n.startswith(".") or any(c in n for c in "/\\:")]
    if bad:
        raise DatasetError(f"class name {bad[0]!r} cannot be a folder name; fix \"class_names\" in "
                           "dataset.json (or remove it: classes are then named 0, 1, ...)")
    rel = [os.path.splitext(_relative(ds, p))[0] for p in ds.paths]
    base = [r.rsplit("/", 1)[-1] for r in rel]
    names = base if len(set(base)) == len(base) else [r.replace("/", "_") for r in rel]
    p = claim_output(out, IMPORT_KIND, flag)
    bar = Progress(len(ds), f"import: images to {p}", every=progress_every)
    for i in bar.iterate(range(len(ds))):
        f = inside(p, p / ds.class_names[ds.labels[i]] / (names[i] + ".png"))
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(_png_bytes(ds.images[i], 6))
    return p


def _relative(ds: ImageDataset, path: str) -> str:
    """The name of `path` inside the dataset's zip or folder ('00000/img00000000.png')."""
    root = (ds.summary or {}).get("root")
    return os.path.relpath(path, root).replace(os.sep, "/") if root else os.path.basename(path)
