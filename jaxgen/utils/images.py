"""Image grids as PNG, for people to look at samples during and after training."""
from __future__ import annotations

import pathlib
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw


def to_uint8(images: np.ndarray, drange=(-1.0, 1.0)) -> np.ndarray:
    """Float images in `drange` -> uint8 (rounded, clipped), same shape."""
    lo, hi = drange
    x = (np.asarray(images, np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, cols: int, drange=(-1.0, 1.0), pad: int = 0) -> np.ndarray:
    """[N, H, W, C] -> one [rows*H, cols*W, C] uint8 image (C = 1 or 3), row-major."""
    imgs = images if images.dtype == np.uint8 else to_uint8(images, drange)
    n, h, w, c = imgs.shape
    rows = -(-n // cols)
    grid = np.zeros([rows * (h + pad) - pad if rows else 0, cols * (w + pad) - pad, c], np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = imgs[i]
    return grid


def save_grid(images: np.ndarray, path, cols: int, drange=(-1.0, 1.0),
              row_labels: Optional[Sequence[str]] = None, min_cell: int = 64) -> pathlib.Path:
    """Write a PNG grid; small images are upscaled (nearest) to at least `min_cell` px,
    and optional row labels are drawn in a left margin."""
    grid = make_grid(images, cols, drange)
    h = images.shape[1]
    scale = max(1, -(-min_cell // h))
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if row_labels:
        margin = 8 + 7 * max(len(s) for s in row_labels)
        canvas = Image.new("RGB", (img.width + margin, img.height), (255, 255, 255))
        canvas.paste(img.convert("RGB"), (margin, 0))
        draw = ImageDraw.Draw(canvas)
        cell = h * scale
        for r, label in enumerate(row_labels):
            draw.text((4, r * cell + cell // 2 - 5), label, fill=(0, 0, 0))
        img = canvas
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)
    return path
