"""Handcrafted image features (LBP, HOG, Sobel edges, intensity) in plain numpy.

Why: a small classifier on classical texture/shape descriptors is a cheap,
interpretable baseline for the synthetic-to-real experiments (train on generated
faces, test on real ones), and it needs no GPU and no pretrained network. The
descriptors are written here (vectorised over a batch of images) and reproduce
scikit-image's definitions, so the numbers can be compared with the literature;
scikit-image itself is only used by the tests.

Input: grayscale uint8 images ``[N, H, W]`` or ``[N, H, W, 1]``; RGB ``[N, H, W, 3]``
is first reduced to luma with PIL's integer ITU-R 601-2 formula (the same as
``Image.convert('L')``, which is what ``load_dataset(..., channels=1)`` does).
A single image ``[H, W]`` is a batch of one. Blocks (each float64 ``[N, d]``):

* ``lbp``   -- histogram of uniform local binary patterns, codes 0..P+1 of
  ``skimage.feature.local_binary_pattern(img, P, R, method='uniform')``
  (P=8, R=1 -> 10 bins), normalised to sum to 1;
* ``hog``   -- ``skimage.feature.hog(img, orientations, pixels_per_cell,
  cells_per_block, block_norm)`` (default 9, (8, 8), (2, 2), 'L2-Hys');
  d = blocks_rows * blocks_cols * cells_per_block * orientations;
* ``sobel`` -- histogram of ``skimage.filters.sobel(img / 255)`` magnitudes
  (in [0, 1]) with ``bins`` (16) equal bins on [0, 1], normalised;
* ``hist``  -- intensity histogram, ``bins`` (32) equal bins on [0, 256),
  normalised (equals ``np.histogram(img, bins, (0, 256))[0] / img.size``).

`extract_features(images, which, **params) -> float32 [N, D]` concatenates the
blocks in the order of ``which``; `feature_blocks` gives each block's name and
column range, `feature_names` one name per column.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

FEATURES = ("lbp", "hog", "sobel", "hist")
DEFAULT_PARAMS: Dict[str, Dict] = {
    "lbp": dict(P=8, R=1.0),
    "hog": dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                block_norm="L2-Hys"),
    "sobel": dict(bins=16),
    "hist": dict(bins=32),
}


def to_gray(images) -> np.ndarray:
    """uint8 [N,H,W] / [N,H,W,1] / [N,H,W,3] / [H,W] -> uint8 [N, H, W].

    RGB uses PIL's 'L' conversion: ``(19595 R + 38470 G + 7471 B + 2**15) >> 16``
    (ITU-R 601-2 weights 0.299, 0.587, 0.114, rounded). A 3-D array is read as a
    batch of grayscale images, so pass one RGB image as [1, H, W, 3].
    """
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (0..255), got {a.dtype}; convert float "
                        "images with jaxgen.data.to_uint8 first")
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 4:
        if a.shape[3] == 3:
            w = a.astype(np.uint32)
            a = ((w[..., 0] * 19595 + w[..., 1] * 38470 + w[..., 2] * 7471 + 0x8000)
                 >> 16).astype(np.uint8)
        elif a.shape[3] == 1:
            a = a[..., 0]
        else:
            raise ValueError(f"images need 1 or 3 channels, got shape {a.shape}")
    elif a.ndim != 3:
        raise ValueError(f"images must be [H,W], [N,H,W] or [N,H,W,C], got shape {a.shape}")
    return np.ascontiguousarray(a)


# ------------------------------------------------------------------------- LBP


def lbp_codes(images, P: int = 8, R: float = 1.0) -> np.ndarray:
    """Uniform LBP codes int64 [N, H, W] in 0..P+1 (skimage's method='uniform').

    Neighbour i sits at (-R sin(2 pi i / P), R cos(2 pi i / P)) (rounded to 5
    decimals) and is bilinearly interpolated, 0 outside the image; bit i is
    ``neighbour >= centre``. A pattern with at most two bit changes between
    consecutive neighbours 0..P-1 (not wrapping around, as skimage counts) gets
    the number of set bits, any other P + 1. The arithmetic follows skimage's
    order so that ties (flat regions) give the same bits.
    """
    g = to_gray(images).astype(np.float64)
    n, h, w = g.shape
    P = int(P)
    if P < 1 or R <= 0:
        raise ValueError(f"LBP needs P >= 1 and R > 0, got P={P}, R={R}")
    ang = 2 * np.pi * np.arange(P, dtype=np.float64) / P
    rp, cp = np.round(-R * np.sin(ang), 5), np.round(R * np.cos(ang), 5)
    pad = int(np.ceil(R)) + 1
    gp = np.pad(g, ((0, 0), (pad, pad), (pad, pad)))  # constant 0 outside, as mode 'C'
    rows, cols = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    ones = np.zeros((n, h, w), np.int64)
    changes = np.zeros((n, h, w), np.int64)
    prev = None
    for i in range(P):
        r, c = rows + rp[i], cols + cp[i]                # absolute sample positions
        r0, c0 = np.floor(r), np.floor(c)
        dr, dc = (r - r0)[:, None], (c - c0)[None, :]    # [H,1], [1,W]
        ir0, ic0 = r0.astype(np.int64) + pad, c0.astype(np.int64) + pad
        ir1, ic1 = np.ceil(r).astype(np.int64) + pad, np.ceil(c).astype(np.int64) + pad
        tl, tr = gp[:, ir0][:, :, ic0], gp[:, ir0][:, :, ic1]
        bl, br = gp[:, ir1][:, :, ic0], gp[:, ir1][:, :, ic1]
        top = (1 - dc) * tl + dc * tr
        bottom = (1 - dc) * bl + dc * br
        bit = ((1 - dr) * top + dr * bottom) - g >= 0
        ones += bit
        if prev is not None:
            changes += bit != prev
        prev = bit
    return np.where(changes <= 2, ones, P + 1)


def lbp_histogram(images, P: int = 8, R: float = 1.0) -> np.ndarray:
    """float64 [N, P + 2]: fraction of pixels with each uniform LBP code 0..P+1."""
    codes = lbp_codes(images, P, R)
    n = codes.shape[0]
    flat = codes.reshape(n, -1) + (P + 2) * np.arange(n)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n * (P + 2)).reshape(n, P + 2)
    return counts / codes[0].size


# ------------------------------------------------------------------------- HOG


def _pair(v, name: str) -> Tuple[int, int]:
    t = (int(v), int(v)) if np.isscalar(v) else tuple(int(x) for x in v)
    if len(t) != 2 or min(t) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of them, got {v!r}")
    return t


def _hog_geometry(h: int, w: int, pixels_per_cell, cells_per_block):
    (ch, cw), (bh, bw) = _pair(pixels_per_cell, "pixels_per_cell"), _pair(cells_per_block,
                                                                          "cells_per_block")
    ncr, ncc = h // ch, w // cw
    nbr, nbc = ncr - bh + 1, ncc - bw + 1
    if nbr <= 0 or nbc <= 0:
        raise ValueError(f"HOG: a {h}x{w} image is too small for pixels_per_cell "
                         f"{(ch, cw)} and cells_per_block {(bh, bw)}; it needs at least "
                         f"{bh * ch}x{bw * cw} pixels (use smaller cells or blocks)")
    return (ch, cw), (bh, bw), (ncr, ncc), (nbr, nbc)


def hog_features(images, orientations: int = 9, pixels_per_cell=(8, 8),
                 cells_per_block=(2, 2), block_norm: str = "L2-Hys",
                 transform_sqrt: bool = False) -> np.ndarray:
    """HOG descriptors float64 [N, nbr * nbc * bh * bw * orientations].

    Same definition as ``skimage.feature.hog`` (feature_vector=True):
    central-difference gradients (0 on the border rows/columns), unsigned
    orientation in degrees mod 180, each pixel's magnitude voted into one of
    ``orientations`` bins (no interpolation) of its cell, cell sums divided by
    the cell area (accumulated in float32, as skimage does), then overlapping
    blocks of cells normalised ('L1', 'L1-sqrt', 'L2', 'L2-Hys'; eps 1e-5).
    Pixels beyond the last full cell are ignored. Layout per image:
    (block row, block col, cell row in block, cell col in block, orientation).
    """
    g = to_gray(images).astype(np.float64)
    n, h, w = g.shape
    (ch, cw), (bh, bw), (ncr, ncc), (nbr, nbc) = _hog_geometry(h, w, pixels_per_cell,
                                                               cells_per_block)
    if transform_sqrt:
        g = np.sqrt(g)
    g_row, g_col = np.zeros_like(g), np.zeros_like(g)
    g_row[:, 1:-1, :] = g[:, 2:, :] - g[:, :-2, :]
    g_col[:, :, 1:-1] = g[:, :, 2:] - g[:, :, :-2]
    mag = np.hypot(g_col, g_row)
    ori = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    # Bin edges as skimage computes them (C float): float32(float32(180 / n) * i).
    step = np.float32(180.0 / orientations)
    edges = (step * np.arange(orientations + 1, dtype=np.float32)).astype(np.float64)
    bins = np.searchsorted(edges, ori, side="right") - 1      # == n: in no bin
    vote = mag[..., None] * (bins[..., None] == np.arange(orientations))  # [N,H,W,O]
    vote = vote[:, :ncr * ch, :ncc * cw].reshape(n, ncr, ch, ncc, cw, orientations)
    total = np.zeros((n, ncr, ncc, orientations), np.float32)
    for a in range(ch):                        # row-major order within the cell
        for b in range(cw):
            total = (total.astype(np.float64) + vote[:, :, a, :, b]).astype(np.float32)
    hist = (total / np.float32(ch * cw)).astype(np.float64)
    blocks = np.stack([np.stack([hist[:, r:r + bh, c:c + bw] for c in range(nbc)], 1)
                       for r in range(nbr)], 1)              # [N, nbr, nbc, bh, bw, O]
    eps, axes = 1e-5, (3, 4, 5)
    if block_norm == "L1":
        out = blocks / (np.sum(np.abs(blocks), axes, keepdims=True) + eps)
    elif block_norm == "L1-sqrt":
        out = np.sqrt(blocks / (np.sum(np.abs(blocks), axes, keepdims=True) + eps))
    elif block_norm in ("L2", "L2-Hys"):
        out = blocks / np.sqrt(np.sum(blocks ** 2, axes, keepdims=True) + eps ** 2)
        if block_norm == "L2-Hys":
            out = np.minimum(out, 0.2)
            out = out / np.sqrt(np.sum(out ** 2, axes, keepdims=True) + eps ** 2)
    else:
        raise ValueError(f"block_norm must be 'L1', 'L1-sqrt', 'L2' or 'L2-Hys', got "
                         f"{block_norm!r}")
    return out.reshape(n, -1)


# ----------------------------------------------------------------------- Sobel


def sobel_magnitude(images) -> np.ndarray:
    """Sobel edge magnitude float64 [N, H, W] of img / 255, as skimage.filters.sobel:
    ``sqrt((G_row**2 + G_col**2) / 2)`` with kernels [1, 0, -1] x [1, 2, 1] / 4 and
    'reflect' (half-sample symmetric) borders; values lie in [0, 1]."""
    g = to_gray(images).astype(np.float64) * (1.0 / 255)
    p = np.pad(g, ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    smooth_c = (p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]) / 4   # [N, H+2, W]
    smooth_r = (p[:, :-2, :] + 2 * p[:, 1:-1, :] + p[:, 2:, :]) / 4   # [N, H, W+2]
    g_row = smooth_c[:, 2:, :] - smooth_c[:, :-2, :]
    g_col = smooth_r[:, :, 2:] - smooth_r[:, :, :-2]
    return np.sqrt(g_row * g_row + g_col * g_col) / np.sqrt(2.0)


def _histogram_rows(values: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    """Per-row normalised histograms [N, bins] with np.histogram's convention
    (bins [e_i, e_i+1), the last one closed); values outside [lo, hi] are clipped."""
    n = values.shape[0]
    v = np.clip(values.reshape(n, -1), lo, hi)
    edges = np.linspace(lo, hi, bins + 1)
    idx = np.minimum(np.searchsorted(edges, v, side="right") - 1, bins - 1)
    counts = np.bincount((idx + bins * np.arange(n)[:, None]).ravel(), minlength=n * bins)
    return counts.reshape(n, bins) / v.shape[1]


def sobel_histogram(images, bins: int = 16) -> np.ndarray:
    """float64 [N, bins]: normalised histogram of Sobel magnitudes on [0, 1]."""
    return _histogram_rows(sobel_magnitude(images), int(bins), 0.0, 1.0)


def intensity_histogram(images, bins: int = 32) -> np.ndarray:
    """float64 [N, bins]: normalised gray-level histogram, equal bins on [0, 256)."""
    g = to_gray(images).astype(np.int64)
    n, bins = g.shape[0], int(bins)
    if not 1 <= bins <= 256:
        raise ValueError(f"bins must be in 1..256, got {bins}")
    idx = (g.reshape(n, -1) * bins) // 256          # exact for integer gray levels
    counts = np.bincount((idx + bins * np.arange(n)[:, None]).ravel(), minlength=n * bins)
    return counts.reshape(n, bins) / idx.shape[1]


# ------------------------------------------------------------------ combined

_EXTRACTORS = {"lbp": lbp_histogram, "hog": hog_features, "sobel": sobel_histogram,
               "hist": intensity_histogram}


@dataclasses.dataclass(frozen=True)
class FeatureBlock:
    """One descriptor's columns ``[start, stop)`` in the concatenated feature matrix."""
    name: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def _resolve(which: Sequence[str], params: Mapping[str, Mapping]) -> Dict[str, Dict]:
    which = (which,) if isinstance(which, str) else tuple(which)
    bad = [w for w in which if w not in FEATURES] + [k for k in params if k not in FEATURES]
    if bad or not which or len(set(which)) != len(which):
        raise ValueError(f"features must be distinct names from {FEATURES}, got "
                         f"which={which}, params for {sorted(params)}")
    out = {}
    for name in which:
        p = dict(DEFAULT_PARAMS[name])
        unknown = set(params.get(name, {})) - set(p) - {"transform_sqrt"}
        if unknown:
            raise ValueError(f"unknown {name} parameter(s) {sorted(unknown)}; known: {sorted(p)}")
        p.update(params.get(name, {}))
        out[name] = p
    return out


def _block_size(name: str, p: Dict, h: int, w: int) -> int:
    if name == "lbp":
        return int(p["P"]) + 2
    if name == "hog":
        _, (bh, bw), _, (nbr, nbc) = _hog_geometry(h, w, p["pixels_per_cell"],
                                                   p["cells_per_block"])
        return nbr * nbc * bh * bw * int(p["orientations"])
    return int(p["bins"])


def feature_blocks(height: int, width: Optional[int] = None, which: Sequence[str] = FEATURES,
                   **params) -> List[FeatureBlock]:
    """Name and column range of each block for images of ``height x width``
    (``width`` defaults to ``height``); ``params`` as in :func:`extract_features`."""
    width = height if width is None else width
    blocks, start = [], 0
    for name, p in _resolve(which, params).items():
        size = _block_size(name, p, int(height), int(width))
        blocks.append(FeatureBlock(name, start, start + size))
        start += size
    return blocks


def feature_names(height: int, width: Optional[int] = None, which: Sequence[str] = FEATURES,
                  **params) -> List[str]:
    """One name per column, e.g. ``lbp_0 .. lbp_9, hog_0, ...``."""
    return [f"{b.name}_{i}" for b in feature_blocks(height, width, which, **params)
            for i in range(b.size)]


def extract_features(images, which: Sequence[str] = FEATURES, batch_size: int = 256,
                     **params) -> np.ndarray:
    """Concatenated descriptors float32 [N, D] of uint8 images (see module doc).

    which: block names in output order. params: per-block keyword dicts that
    override DEFAULT_PARAMS, e.g. ``hog=dict(pixels_per_cell=(4, 4))``,
    ``hist=dict(bins=16)``. Images are processed ``batch_size`` at a time to
    bound memory. Column ranges: ``feature_blocks(H, W, which, **params)``.
    """
    gray = to_gray(images)
    cfg = _resolve(which, params)
    n, h, w = gray.shape
    dim = sum(_block_size(k, p, h, w) for k, p in cfg.items())
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, max(1, int(batch_size))):
        chunk = gray[s:s + batch_size]
        out[s:s + len(chunk)] = np.concatenate(
            [_EXTRACTORS[k](chunk, **p) for k, p in cfg.items()], axis=1)
    return out
