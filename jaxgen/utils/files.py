"""Crash-safe file writes shared by every exporter: nothing half-written, nothing outside `out`.

Why: datasets are exported over hours and may be interrupted at any point; a
file is written under a temporary name and renamed when complete, so a file
that exists is whole, and every path is checked to stay inside the output
folder the user named.
"""
from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image


def inside(root: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    """`path` resolved, after checking that it lies in `root` (else ValueError)."""
    root, path = pathlib.Path(root).resolve(), pathlib.Path(path).resolve()
    if root != path and root not in path.parents:
        raise ValueError(f"refusing to write {path}: outside the output directory {root}")
    return path


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save_png_atomic(path: pathlib.Path, img: np.ndarray) -> None:
    """Write a uint8 image [H, W, C] (C = 1 or 3) as PNG through a temporary file and a rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp)
    tmp.replace(path)


def png_complete(path: pathlib.Path) -> bool:
    """True when `path` exists and decodes fully (a truncated file is redone)."""
    path = pathlib.Path(path)
    if not path.exists():
        return False
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoding error means: write it again
        return False
