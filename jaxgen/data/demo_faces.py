"""Procedural face-like images with labelled acne severity: the embedded demo set.

Why: the toolkit must be runnable end to end (train a GAN, train a severity
classifier on its output, measure privacy) without downloading any real
patient photos. This module draws small synthetic "portraits" with numpy and
PIL only, deterministically from a seed, in four classes of acne severity:

    0 healthy   no lesions
    1 mild      a few small inflamed papules
    2 moderate  more and larger papules, some pustules
    3 severe    many large lesions, clustered on cheeks/forehead, with redness

Nuisance factors vary independently of the class so that no single global
pixel statistic gives the label away: skin tone (light to dark), face shape,
tilt and position, hair style and colour, eye/brow/nose/mouth placement,
directional lighting, background colour, rosy cheeks, moles, colour cast and
noise. Lesions are drawn only on skin, relative to the local skin colour
(so they look darker red-brown on dark skin). Each image is rendered at a
higher internal size (4x for <= 512 px) and downsampled with an antialiasing
(LANCZOS) filter, so the same seed gives the same face at every resolution.
Lesions are drawn last, so one rng state rendered at two severities gives the
same person with different acne (paired, counterfactual examples).

API: `render_face(rng, severity, resolution) -> uint8 [H, W, 3]`,
`write_demo_dataset(out_dir, ...)` (image-folder layout
`out_dir/<class>/<class>_00000.png` + `dataset.json`, idempotent and
resumable), `write_preview(...)` and a CLI:

    python -m jaxgen.data.demo_faces --out data/demo_acne --num-per-class 64
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from jaxgen.data.folder import DatasetError, check_resolution

GENERATOR_VERSION = 1
DEFAULT_CLASSES = ("healthy", "mild", "moderate", "severe")

# Skin tones photographed under neutral light, light to dark (RGB, 0..255).
_SKIN_TONES = np.array([
    (252, 226, 206), (241, 203, 174), (228, 182, 148), (208, 155, 115),
    (180, 126, 88), (146, 98, 66), (110, 72, 49), (78, 52, 38)], np.float32) / 255
_HAIR = np.array([(22, 18, 16), (48, 33, 24), (92, 63, 40), (128, 64, 32),
                  (196, 162, 104), (150, 148, 146)], np.float32) / 255
_HAIR_P = np.array([0.30, 0.25, 0.18, 0.08, 0.12, 0.07])
_IRIS = np.array([(60, 38, 24), (35, 25, 20), (70, 100, 140), (80, 105, 70),
                  (110, 85, 50)], np.float32) / 255
# Lesions per class: (count range, radius range as a fraction of the face
# half-width, pustule probability, fraction placed in clusters).
_LESIONS = {0: ((0, 0), (0, 0), 0.0, 0.0),
            1: ((3, 7), (0.06, 0.08), 0.10, 0.0),
            2: ((10, 16), (0.07, 0.10), 0.25, 0.3),
            3: ((20, 32), (0.080, 0.130), 0.35, 0.65)}


def internal_size(resolution: int) -> int:
    """Side of the canvas a `resolution` image is drawn on before downsampling."""
    return int(min(max(4 * resolution, 128), max(2048, 2 * resolution)))


def _sample_face(rng: np.random.Generator, severity: int) -> dict:
    """Draw every random choice of one image (independent of the resolution)."""
    t = rng.uniform(0, len(_SKIN_TONES) - 1)
    i = min(int(t), len(_SKIN_TONES) - 2)
    skin = _SKIN_TONES[i] * (1 - (t - i)) + _SKIN_TONES[i + 1] * (t - i)
    skin = np.clip(skin * rng.uniform(0.96, 1.04, 3), 0, 1)
    a = rng.uniform(0.24, 0.30)
    f = dict(
        skin=skin, a=a, b=min(a * rng.uniform(1.2, 1.38), 0.40), cx=0.5 + rng.normal(0, 0.03),
        cy=0.50 + rng.normal(0, 0.025), tilt=np.deg2rad(rng.uniform(-9, 9)),
        jaw=rng.uniform(0.1, 0.32),
        hair=_HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * rng.uniform(0.85, 1.15),
        style=int(rng.choice(4, p=[0.35, 0.35, 0.12, 0.18])),  # short,long,bald,curly
        hair_len=rng.uniform(0.5, 1.6), part=rng.uniform(-0.25, 0.25),
        h0=rng.uniform(-0.72, -0.45), light=rng.uniform(0, 2 * np.pi),
        elev=np.deg2rad(rng.uniform(15, 50)), ambient=rng.uniform(0.45, 0.65),
        grad=rng.uniform(0, 0.15), bg_grad=rng.uniform(-0.25, 0.25),
        bg_hsv=(rng.uniform(0, 1), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.95)),
        cloth=rng.uniform(0.05, 0.85, 3), eye_u=rng.uniform(0.33, 0.42),
        eye_v=rng.uniform(-0.2, -0.06), eye_w=rng.uniform(0.13, 0.18),
        iris=_IRIS[rng.integers(len(_IRIS))], brow_dv=rng.uniform(0.13, 0.2),
        brow_k=rng.uniform(0.02, 0.07), brow_t=rng.uniform(0.02, 0.04),
        nose_v=rng.uniform(0.22, 0.33), nose_w=rng.uniform(0.08, 0.13),
        mouth_v=rng.uniform(0.5, 0.62), mouth_w=rng.uniform(0.24, 0.36),
        lip_h=rng.uniform(0.04, 0.07), smile=rng.uniform(-0.06, 0.12),
        lip_col=rng.uniform(0.55, 0.75), rosy=rng.uniform(0, 0.22),
        cast=rng.normal(1, 0.04, 3), exposure=rng.uniform(0.85, 1.12),
        noise=rng.uniform(0.005, 0.025),
        moles=[(rng.uniform(-0.7, 0.7), rng.uniform(-0.4, 0.75), rng.uniform(0.02, 0.04))
               for _ in range(rng.integers(0, 4))])
    f["tex_seed"] = int(rng.integers(2**62))
    f["lesions"] = _sample_lesions(rng, severity, f)  # last: the face does not depend on it
    return f


def _hairline(f: dict, u):
    """Face-frame v of the hair front: skin is below (v > hairline)."""
    if f["style"] == 2:
        return -1.5 + 0 * u
    return f["h0"] + 0.45 * u ** 2 + f["part"] * u


def _on_skin(f: dict, u: float, v: float) -> bool:
    """Whether face-frame point (u, v) is bare skin, away from the features."""
    w = 1 - f["jaw"] * min(max(v, 0), 1) ** 2
    if (u / w) ** 2 + v ** 2 > 0.78 or v < max(_hairline(f, u) + 0.1, -0.7):
        return False
    if abs(v - f["eye_v"]) < 0.13 and abs(abs(u) - f["eye_u"]) < f["eye_w"] + 0.1:
        return False  # eyes
    if abs(v - (f["eye_v"] - f["brow_dv"])) < 0.07 and abs(abs(u) - f["eye_u"]) < 0.25:
        return False  # brows
    if abs(v - f["mouth_v"]) < f["lip_h"] + 0.09 and abs(u) < f["mouth_w"] + 0.08:
        return False  # mouth
    return not (abs(v - f["nose_v"]) < 0.07 and abs(u) < f["nose_w"] + 0.06)


def _sample_lesions(rng: np.random.Generator, severity: int, f: dict) -> list:
    """Lesions as (u, v, radius in face half-widths, pustule?) on bare skin."""
    if severity not in _LESIONS:
        raise ValueError(f"severity must be 0..3, got {severity}")
    (n0, n1), (r0, r1), p_pus, p_clu = _LESIONS[severity]
    n = int(rng.integers(n0, n1 + 1))
    sites = [(-0.5, 0.2), (0.5, 0.2), (0.0, -0.45), (-0.35, 0.55), (0.35, 0.55)]
    centres = [sites[k] for k in rng.choice(len(sites), 3, replace=False)]
    out = []
    for _ in range(n):
        clustered = rng.random() < p_clu
        c = centres[rng.integers(3)]
        for _try in range(30):
            if clustered:
                u, v = c[0] + rng.normal(0, 0.14), c[1] + rng.normal(0, 0.12)
            else:
                u, v = rng.uniform(-0.9, 0.9), rng.uniform(-0.8, 0.9)
            if _on_skin(f, u, v):
                out.append((u, v, rng.uniform(r0, r1), bool(rng.random() < p_pus),
                            rng.uniform(0.7, 1.0)))
                break
    return out


def _noise(rng: np.random.Generator, shape, size: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: random values on `shape` upsampled to size x size."""
    low = Image.fromarray(rng.uniform(-1, 1, shape).astype(np.float32), mode="F")
    return np.asarray(low.resize((size, size), Image.BICUBIC), np.float32)


def _blend(img: np.ndarray, alpha: np.ndarray, color) -> None:
    """In place: img = img * (1 - alpha) + color * alpha."""
    img += alpha[..., None] * (np.asarray(color, np.float32) - img)


def _soft(rho: np.ndarray, scale_px: float) -> np.ndarray:
    """Antialiased inside-mask of `rho < 1` where rho is 1 at the edge."""
    return np.clip(0.5 - (rho - 1) * scale_px, 0, 1).astype(np.float32)


def _draw(f: dict, S: int, blur: float) -> Image.Image:
    """Draw face parameters `f` on an S x S RGB canvas, Gaussian-blurred by `blur` px."""
    tex = np.random.default_rng(f["tex_seed"])
    y, x = (np.mgrid[0:S, 0:S].astype(np.float32) + 0.5) / S
    a, b, cx, cy = f["a"], f["b"], f["cx"], f["cy"]
    c, s = np.cos(f["tilt"]), np.sin(f["tilt"])
    U = ((x - cx) * c + (y - cy) * s) / a
    V = (-(x - cx) * s + (y - cy) * c) / b
    apx, bpx = a * S, b * S

    def box(u0, v0, ru, rv):
        """Row/column slices of the canvas around face rectangle u0 +- ru, v0 +- rv."""
        du, dv = np.array([-ru, ru, -ru, ru]) * a, np.array([-rv, -rv, rv, rv]) * b
        px = (cx + (u0 * a + du) * c - (v0 * b + dv) * s) * S
        py = (cy + (u0 * a + du) * s + (v0 * b + dv) * c) * S
        return (slice(max(int(py.min()) - 2, 0), max(int(py.max()) + 3, 0)),
                slice(max(int(px.min()) - 2, 0), max(int(px.max()) + 3, 0)))

    # Background: a muted colour with a vertical gradient.
    h, sat, val = f["bg_hsv"]
    bg = np.array(Image.new("HSV", (1, 1), (int(h * 255), int(sat * 255), int(val * 255)))
                  .convert("RGB").getpixel((0, 0)), np.float32) / 255
    img = bg * (1 + f["bg_grad"] * (y[..., None] - 0.5))
    img = np.ascontiguousarray(np.clip(img, 0, 1), np.float32)

    # Hair behind the head.
    hair_tex = 0.8 + 0.25 * _noise(tex, (8, 48), S) + 0.1 * _noise(tex, (32, 32), S)
    hair = np.clip(f["hair"] * hair_tex[..., None], 0, 1)
    st = f["style"]
    if st != 2:
        big = {0: (1.1, 1.07), 1: (1.18, 1.1), 3: (1.42, 1.25)}[st]
        rho = np.sqrt((U / big[0]) ** 2 + ((V + 0.1) / big[1]) ** 2)
        if st == 3:
            rho = rho + 0.05 * _noise(tex, (12, 12), S)
        m = _soft(rho, min(apx, bpx))
        if st == 1:  # long hair falls to the shoulders
            vc, half = (f["hair_len"] - 0.1) / 2, (f["hair_len"] + 0.1) / 2
            m = np.maximum(m, _soft(np.maximum(np.abs(U) / 1.2, np.abs(V - vc) / half), apx))
        _blend(img, m, hair)

    # Neck, then shoulders (clothes) over it.
    skin = np.asarray(f["skin"], np.float32)
    _blend(img, _soft(np.maximum(np.abs(U) / 0.5, np.where(V > 0.3, 0.0, 9.0)), apx * 0.5),
           skin * 0.78)
    top = cy + b + 0.06
    _blend(img, _soft(np.sqrt(((x - cx) / 0.5) ** 2 + ((y - top - 0.3) / 0.3) ** 2), 0.3 * S),
           f["cloth"])

    # Face: skin, jaw-narrowed ellipse, lit like a sphere.
    w = 1 - f["jaw"] * np.clip(V, 0, 1) ** 2
    rho = np.sqrt((U / w) ** 2 + V ** 2)
    for sgn in (-1, 1):  # ears
        k = box(sgn * 0.97, -0.02, 0.16, 0.22)
        ear = np.sqrt(((U[k] - sgn * 0.97) / 0.14) ** 2 + ((V[k] + 0.02) / 0.2) ** 2)
        _blend(img[k], _soft(ear, apx * 0.14), skin * 0.85)
    nz = np.sqrt(np.clip(1 - np.minimum(rho, 1) ** 2, 0, 1))
    L = (np.cos(f["light"]) * np.sin(f["elev"]), np.sin(f["light"]) * np.sin(f["elev"]),
         np.cos(f["elev"]))
    lam = np.clip((0.8 * U / w * L[0] + 0.8 * V * L[1] + nz * L[2]), 0, 1)
    shade = f["ambient"] + (1 - f["ambient"]) * lam
    skin_tex = 1 + 0.03 * _noise(tex, (24, 24), S) + 0.015 * _noise(tex, (96, 96), S)
    face_col = skin * (shade * skin_tex)[..., None]
    for sgn in (-1, 1):  # rosy cheeks (every class, so redness alone is no label)
        k = box(sgn * 0.5, 0.25, 0.75, 0.55)
        g = np.exp(-(((U[k] - sgn * 0.5) / 0.3) ** 2 + ((V[k] - 0.25) / 0.22) ** 2))
        face_col[k] *= 1 - (f["rosy"] * g)[..., None] * np.array([0.0, 0.35, 0.3], np.float32)
    face_m = _soft(rho, min(apx, bpx))
    _blend(img, face_m, face_col)

    def spot(u0, v0, r, fn):
        """Apply fn(patch, d2) on a local patch around face point (u0, v0)."""
        px = cx + (u0 * a) * c - (v0 * b) * s
        py = cy + (u0 * a) * s + (v0 * b) * c
        R = int(np.ceil(3 * r * S)) + 1
        x0, x1 = max(int(px * S) - R, 0), min(int(px * S) + R + 1, S)
        y0, y1 = max(int(py * S) - R, 0), min(int(py * S) + R + 1, S)
        if x0 < x1 and y0 < y1:
            d2 = ((x[y0:y1, x0:x1] - px) ** 2 + (y[y0:y1, x0:x1] - py) ** 2) / r ** 2
            fn(img[y0:y1, x0:x1], d2, (x[y0:y1, x0:x1] - px) / r, (y[y0:y1, x0:x1] - py) / r)

    for u0, v0, r in f["moles"]:  # small brown moles, any class
        spot(u0, v0, r * a, lambda p, d2, *_: _blend(p, 0.8 * np.exp(-d2 * 2.5),
                                                     skin * np.array([0.55, 0.45, 0.4])))
    lx, ly = -L[0], -L[1]
    for u0, v0, r, pus, k in f["lesions"]:
        def lesion(p, d2, dx, dy, pus=pus, k=k):
            halo = 0.45 * k * np.exp(-d2 / 3.5)
            p *= (1 - halo[..., None] * np.array([0.0, 0.3, 0.28], np.float32))
            core = k * np.exp(-d2 * 1.6)[..., None]
            p *= 1 - core * np.array([-0.08, 0.5, 0.48], np.float32)
            if pus:
                _blend(p, 0.9 * np.exp(-d2 * 7), np.array([0.97, 0.93, 0.78]) * max(p.max(), 0.6))
            hl = 0.18 * np.exp(-((dx + 0.35 * lx) ** 2 + (dy + 0.35 * ly) ** 2) * 12)
            _blend(p, hl, (1.0, 0.97, 0.95))
        spot(u0, v0, r * a, lesion)
    img = np.clip(img, 0, 1)

    # Features: nose, mouth, eyes, brows (over any lesion), each in its own box.
    nv, nw = f["nose_v"], f["nose_w"]
    side = -np.sign(L[0]) or 1.0
    k = box(0, (nv - 0.1) / 2, 0.3, (nv + 0.1) / 2 + 0.05)
    ridge = np.exp(-(((U[k] - side * 0.09) / 0.05) ** 2)) * (V[k] > -0.1) * (V[k] < nv)
    img[k] *= 1 - (0.12 * ridge * face_m[k])[..., None]
    for sgn in (-1, 1):
        k = box(sgn * nw * 0.6, nv, 0.1, 0.06)
        nost = np.sqrt(((U[k] - sgn * nw * 0.6) / 0.06) ** 2 + ((V[k] - nv) / 0.03) ** 2)
        _blend(img[k], 0.7 * _soft(nost, apx * 0.03), face_col[k] * 0.45)
    mw, lh = f["mouth_w"], f["lip_h"]
    k = box(0, f["mouth_v"], mw + 0.05, lh + abs(f["smile"]) + 0.05)
    Uk, Vk = U[k], V[k]
    mv = Vk - f["mouth_v"] - f["smile"] * (1 - (Uk / mw) ** 2)
    lips = _soft(np.sqrt((Uk / mw) ** 2 + (mv / lh) ** 2), bpx * lh)
    lip_col = face_col[k] * np.array([1.0, f["lip_col"], f["lip_col"]], np.float32) * 0.9
    _blend(img[k], lips, lip_col)
    gap = np.clip(1.2 - np.abs(mv) * bpx / (0.008 * S), 0, 1) * (np.abs(Uk) < mw)
    _blend(img[k], 0.8 * lips * gap, lip_col * 0.35)
    for sgn in (-1, 1):
        eu, ev, ew = sgn * f["eye_u"], f["eye_v"], f["eye_w"]
        k = box(eu, ev, ew + 0.03, ew * a / b * 0.6)
        Uk, Vk = U[k], V[k]
        eye = _soft(np.sqrt(((Uk - eu) / ew) ** 2 + ((Vk - ev) / (ew * 0.45 * a / b)) ** 2),
                    apx * ew * 0.4)
        _blend(img[k], eye, np.array([0.93, 0.92, 0.9]) * shade[k][..., None])
        dist = np.sqrt(((Uk - eu) * a) ** 2 + ((Vk - ev) * b) ** 2) / (ew * a * 0.55)
        _blend(img[k], eye * _soft(dist, ew * apx * 0.55), f["iris"])
        _blend(img[k], eye * _soft(dist / 0.45, ew * apx * 0.25), (0.03, 0.03, 0.03))
        bv0 = ev - f["brow_dv"]
        k = box(eu, bv0 - f["brow_k"] / 2, 0.27, f["brow_k"] / 2 + f["brow_t"] + 0.03)
        Uk, Vk = U[k], V[k]
        bv = bv0 - f["brow_k"] * (1 - ((Uk - eu) / 0.22) ** 2)
        brow = _soft(np.maximum(np.abs(Vk - bv) / f["brow_t"], np.abs(Uk - eu) / 0.24),
                     bpx * f["brow_t"])
        _blend(img[k], 0.85 * brow, f["hair"] * 0.9)

    # Front hair: covers the forehead above the hairline.
    if st != 2:
        front = np.clip(0.5 - (V - _hairline(f, U)) * bpx / (0.01 * S), 0, 1)
        _blend(img, front * _soft(rho, apx * 0.5) * (np.abs(U) < 1.1), hair * shade[..., None])

    # Global light gradient, colour cast/exposure, sensor noise, tiny blur.
    img *= (1 + f["grad"] * ((x - 0.5) * L[0] + (y - 0.5) * L[1]))[..., None]
    img *= f["cast"] * f["exposure"]
    img += f["noise"] * tex.standard_normal(img.shape, dtype=np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(radius=blur))


def render_face(rng: np.random.Generator, severity: int, resolution: int = 64) -> np.ndarray:
    """One synthetic face with acne `severity` (0..3): uint8 [resolution, resolution, 3].

    Deterministic in the state of `rng`; the draws do not depend on
    `resolution`, so one seed gives the same face at any size.
    """
    check_resolution(resolution, minimum=16, maximum=1024)
    face = _sample_face(rng, int(severity))
    size = internal_size(resolution)
    canvas = _draw(face, size, blur=0.35 * size / resolution)
    return np.asarray(canvas.resize((resolution, resolution), Image.LANCZOS), np.uint8)


def _severities(classes: Sequence[str]) -> list:
    classes = list(classes)
    unknown = [c for c in classes if c not in DEFAULT_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise DatasetError(f"demo classes must be distinct names from {list(DEFAULT_CLASSES)}, "
                           f"got {classes}")
    return [DEFAULT_CLASSES.index(c) for c in classes]


def _image_ok(path: Path, resolution: int) -> bool:
    try:
        with Image.open(path) as im:
            return im.size == (resolution, resolution)
    except Exception:  # noqa: BLE001 - missing or unreadable means "render again"
        return False


def write_demo_dataset(out_dir, num_per_class: int = 64, resolution: int = 64, seed: int = 0,
                       classes: Sequence[str] = DEFAULT_CLASSES, progress: bool = True,
                       overwrite: bool = False) -> Dict:
    """Render the demo set as an image folder: out_dir/<class>/<class>_00000.png.

    Image i of severity s is drawn from `default_rng([seed, s, i])`, so each
    file can be (re)made on its own. `out_dir/dataset.json` records the
    parameters; a call with the same parameters reuses a complete dataset
    (nothing is rendered) and completes a partial one (missing or unreadable
    files only). A folder made with other parameters is an error unless
    `overwrite=True`, which re-renders and deletes the old set's extra
    `<class>_NNNNN.png` files. Returns the manifest plus 'rendered' (images
    drawn now) and 'path'.
    """
    check_resolution(resolution, minimum=16, maximum=1024)
    if int(num_per_class) < 1:
        raise DatasetError(f"num_per_class must be >= 1, got {num_per_class}")
    sev, n_per, out = _severities(classes), int(num_per_class), Path(out_dir)
    params = {"generator": "jaxgen.data.demo_faces", "generator_version": GENERATOR_VERSION,
              "classes": list(classes), "severities": sev, "num_per_class": n_per,
              "resolution": int(resolution), "seed": int(seed)}
    meta_path = out / "dataset.json"
    try:
        old = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    except ValueError:
        old = {}
    diff = [f"{k}: {old.get(k)} != {v}" for k, v in params.items()
            if old is not None and old.get(k) != v]
    if diff and not overwrite:
        raise DatasetError(f"{out} already holds a dataset made with other parameters "
                           f"({', '.join(diff)}). Pick another output folder, or pass "
                           "overwrite=True (--overwrite).")
    files = {out / c / f"{c}_{i:05d}.png": (s, i) for c, s in zip(classes, sev)
             for i in range(n_per)}
    if overwrite and old:  # remove what the previous parameters made and these do not
        for c in set(old.get("classes", [])) | set(classes):
            for p in (out / c).glob(f"{c}_[0-9][0-9][0-9][0-9][0-9].png"):
                if p not in files:
                    p.unlink()
    jobs = [(p, s, i) for p, (s, i) in files.items()
            if overwrite or not _image_ok(p, resolution)]
    manifest = dict(params, counts={c: n_per for c in classes}, total=len(files), complete=False)
    if jobs:
        out.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(manifest, indent=2) + "\n")
    t0, step = time.time(), max(1, len(jobs) // 10)
    for n, (path, s, i) in enumerate(jobs, 1):
        img = render_face(np.random.default_rng([int(seed), s, i]), s, resolution)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # atomic: no half-written PNGs
        Image.fromarray(img).save(tmp, format="PNG")
        os.replace(tmp, path)
        if progress and len(jobs) >= 50 and (n % step == 0 or n == len(jobs)):
            print(f"demo_faces: {n}/{len(jobs)} images rendered "
                  f"({n / max(time.time() - t0, 1e-9):.0f}/s)", flush=True)
    manifest["complete"] = True
    if jobs or old != manifest:
        out.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(manifest, indent=2) + "\n")
    if progress:
        what = f"rendered {len(jobs)}" if jobs else "reused all"
        print(f"demo_faces: {out}: {what} of {len(files)} images ({resolution}px, seed {seed})",
              flush=True)
    return dict(manifest, rendered=len(jobs), path=str(out))


def write_preview(out_dir, path=None, columns: int = 8, cell: int = 96) -> Path:
    """Save a labelled grid of a written demo set (one row per class, `columns`
    images of `cell` px) as out_dir/preview.png, or `path`; returns the path."""
    out = Path(out_dir)
    classes = json.loads((out / "dataset.json").read_text())["classes"]
    label_w, pad = 110, 4
    grid = Image.new("RGB", (label_w + columns * (cell + pad), len(classes) * (cell + pad) + pad),
                     (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, name in enumerate(classes):
        top = pad + r * (cell + pad)
        draw.text((6, top + cell // 2 - 12), f"{name}\n(severity {DEFAULT_CLASSES.index(name)})",
                  fill=(0, 0, 0), font=ImageFont.load_default())
        for c, p in enumerate(sorted((out / name).glob(f"{name}_*.png"))[:columns]):
            with Image.open(p) as im:
                grid.paste(im.convert("RGB").resize((cell, cell), Image.LANCZOS),
                           (label_w + c * (cell + pad), top))
    path = Path(path) if path is not None else out / "preview.png"
    grid.save(path)
    return path


def main(argv=None) -> int:
    """CLI: render the demo set into --out and write its preview.png."""
    ap = argparse.ArgumentParser(prog="python -m jaxgen.data.demo_faces", description=(
        "Render the procedural acne-severity demo face dataset as an image folder."))
    ap.add_argument("--out", default="data/demo_acne", help="output folder (data/demo_acne)")
    ap.add_argument("--num-per-class", type=int, default=64, help="images per class (64)")
    ap.add_argument("--resolution", type=int, default=64, help="power of two, 16..1024 (64)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (0)")
    ap.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                    help="comma-separated subset of " + ",".join(DEFAULT_CLASSES))
    ap.add_argument("--overwrite", action="store_true",
                    help="re-render even if the folder holds a set with other parameters")
    ap.add_argument("--no-preview", action="store_true", help="do not write preview.png")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    try:
        write_demo_dataset(args.out, args.num_per_class, args.resolution, args.seed,
                           [c.strip() for c in args.classes.split(",") if c.strip()],
                           progress=not args.quiet, overwrite=args.overwrite)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.no_preview:
        p = write_preview(args.out)
        if not args.quiet:
            print(f"demo_faces: preview grid written to {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
