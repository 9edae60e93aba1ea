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

    python -m jaxgen.data.demo_faces --out data/demo_acne --num_per_class 64
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from jaxgen.cli import run_main
from jaxgen.data.folder import DatasetError, check_resolution
from jaxgen.utils.outputs import check_output, claim_output

GENERATOR_VERSION = 3    # the default renderer version (see _LESIONS)
OUTPUT_KIND = "demo_faces"
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
# Lesions per class and renderer version: (count range, radius range as a fraction
# of the face half-width, pustule probability, fraction placed in clusters, strength
# range). Version 1 (the first demo sets, reproducible with version=1) draws mild
# lesions of about one pixel at 64 px; version 2 makes each severity a step apart
# in count and size, so that the classes can be told apart at 64 px. Version 3 draws
# lesions a few pixels wide at 32 px (radius 0.15-0.25 face half-widths: 3-4 px
# across, as 5-20 px lesions are on 256 px photos) with counts further apart, so that
# a classifier still tells the classes apart when the faces are softened the way a
# small GAN renders them: trained on 0.7 px-blurred faces, 0.90 on sharp held-out ones
# where version 2 gives 0.70 (bench/RESULTS.md, issue 27).
_LESIONS = {
    1: {0: ((0, 0), (0, 0), 0.0, 0.0, (0.7, 1.0)),
        1: ((3, 7), (0.06, 0.08), 0.10, 0.0, (0.7, 1.0)),
        2: ((10, 16), (0.07, 0.10), 0.25, 0.3, (0.7, 1.0)),
        3: ((20, 32), (0.080, 0.130), 0.35, 0.65, (0.7, 1.0))},
    2: {0: ((0, 0), (0, 0), 0.0, 0.0, (0.85, 1.0)),
        1: ((6, 9), (0.09, 0.11), 0.10, 0.0, (0.85, 1.0)),
        2: ((14, 19), (0.10, 0.13), 0.30, 0.3, (0.85, 1.0)),
        3: ((26, 36), (0.12, 0.16), 0.40, 0.65, (0.85, 1.0))},
    3: {0: ((0, 0), (0, 0), 0.0, 0.0, (0.9, 1.0)),
        1: ((3, 5), (0.15, 0.18), 0.10, 0.0, (0.9, 1.0)),
        2: ((10, 14), (0.17, 0.21), 0.30, 0.3, (0.9, 1.0)),
        3: ((24, 32), (0.20, 0.25), 0.40, 0.65, (0.9, 1.0))}}
VERSIONS = tuple(_LESIONS)


def internal_size(resolution: int) -> int:
    """Side of the canvas a `resolution` image is drawn on before downsampling."""
    return int(min(max(4 * resolution, 128), max(2048, 2 * resolution)))


def _sample_face(rng: np.random.Generator, severity: int, version: int = GENERATOR_VERSION) -> dict:
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
    f["lesions"] = _sample_lesions(rng, severity, f, version)  # last: the face does not depend on it
    f["lesions_on_face_only"] = version >= 3                  # no draw: versions 1-2 stay bit for bit
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


def _sample_lesions(rng: np.random.Generator, severity: int, f: dict, version: int) -> list:
    """Lesions as (u, v, radius in face half-widths, pustule?, strength) on bare skin."""
    if version not in _LESIONS:
        raise ValueError(f"demo renderer version must be one of {VERSIONS}, got {version}")
    if severity not in _LESIONS[version]:
        raise ValueError(f"severity must be 0..3, got {severity}")
    (n0, n1), (r0, r1), p_pus, p_clu, (k0, k1) = _LESIONS[version][severity]
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
                            rng.uniform(k0, k1)))
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


@dataclasses.dataclass
class _Canvas:
    """What the drawing steps of one image share.

    f: the face parameters of `_sample_face`; S: canvas side in px; tex: the
    generator of the texture and sensor noise (seeded by f['tex_seed'], drawn
    from in a fixed order: back hair, skin, sensor noise); x, y: [S, S] float32
    pixel centres in [0, 1]; U, V: [S, S] face-frame coordinates (+-1 at the
    face's sides / top and chin); a, b, cx, cy, c, s: face half-axes, centre and
    cos/sin of its tilt; apx, bpx: half-axes in px; img: [S, S, 3] float32 RGB
    canvas, drawn on in place. The remaining fields are set by the step named
    in brackets and read by later ones: skin [3] (canvas), hair [S, S, 3]
    textured hair colour (back hair), rho [S, S] normalised face radius, L the
    light direction (3 floats), shade [S, S] lighting, face_col [S, S, 3] lit
    skin colour and face_m [S, S] face mask (face).
    """
    f: dict
    S: int
    tex: np.random.Generator
    x: np.ndarray
    y: np.ndarray
    U: np.ndarray
    V: np.ndarray
    a: float
    b: float
    cx: float
    cy: float
    c: float
    s: float
    apx: float
    bpx: float
    skin: np.ndarray
    img: Optional[np.ndarray] = None
    hair: Optional[np.ndarray] = None
    rho: Optional[np.ndarray] = None
    L: Optional[tuple] = None
    shade: Optional[np.ndarray] = None
    face_col: Optional[np.ndarray] = None
    face_m: Optional[np.ndarray] = None


def _canvas(f: dict, S: int) -> _Canvas:
    """The pixel grids [S, S] and the face frame of parameters `f` on an S x S canvas."""
    tex = np.random.default_rng(f["tex_seed"])
    y, x = (np.mgrid[0:S, 0:S].astype(np.float32) + 0.5) / S
    a, b, cx, cy = f["a"], f["b"], f["cx"], f["cy"]
    c, s = np.cos(f["tilt"]), np.sin(f["tilt"])
    U = ((x - cx) * c + (y - cy) * s) / a
    V = (-(x - cx) * s + (y - cy) * c) / b
    return _Canvas(f=f, S=S, tex=tex, x=x, y=y, U=U, V=V, a=a, b=b, cx=cx, cy=cy, c=c, s=s,
                   apx=a * S, bpx=b * S, skin=np.asarray(f["skin"], np.float32))


def _box(cv: _Canvas, u0, v0, ru, rv) -> tuple:
    """Row/column slices of the canvas around face rectangle u0 +- ru, v0 +- rv.

    Why: small features are computed on this patch only, not the whole canvas.
    """
    a, b, c, s, S = cv.a, cv.b, cv.c, cv.s, cv.S
    du, dv = np.array([-ru, ru, -ru, ru]) * a, np.array([-rv, -rv, rv, rv]) * b
    px = (cv.cx + (u0 * a + du) * c - (v0 * b + dv) * s) * S
    py = (cv.cy + (u0 * a + du) * s + (v0 * b + dv) * c) * S
    return (slice(max(int(py.min()) - 2, 0), max(int(py.max()) + 3, 0)),
            slice(max(int(px.min()) - 2, 0), max(int(px.max()) + 3, 0)))


def _spot(cv: _Canvas, u0, v0, r, fn) -> None:
    """Apply fn(patch, d2, dx, dy) on a local patch of the canvas around face point (u0, v0).

    patch: [h, w, 3] view of cv.img (edited in place); d2: [h, w] squared
    distance to the point over r**2; dx, dy: [h, w] offsets over r (r in canvas units).
    """
    x, y, S = cv.x, cv.y, cv.S
    px = cv.cx + (u0 * cv.a) * cv.c - (v0 * cv.b) * cv.s
    py = cv.cy + (u0 * cv.a) * cv.s + (v0 * cv.b) * cv.c
    R = int(np.ceil(3 * r * S)) + 1
    x0, x1 = max(int(px * S) - R, 0), min(int(px * S) + R + 1, S)
    y0, y1 = max(int(py * S) - R, 0), min(int(py * S) + R + 1, S)
    if x0 < x1 and y0 < y1:
        d2 = ((x[y0:y1, x0:x1] - px) ** 2 + (y[y0:y1, x0:x1] - py) ** 2) / r ** 2
        fn(cv.img[y0:y1, x0:x1], d2, (x[y0:y1, x0:x1] - px) / r, (y[y0:y1, x0:x1] - py) / r)


def _draw_background(cv: _Canvas) -> None:
    """Start cv.img [S, S, 3]: a muted background colour with a vertical gradient."""
    f = cv.f
    h, sat, val = f["bg_hsv"]
    bg = np.array(Image.new("HSV", (1, 1), (int(h * 255), int(sat * 255), int(val * 255)))
                  .convert("RGB").getpixel((0, 0)), np.float32) / 255
    img = bg * (1 + f["bg_grad"] * (cv.y[..., None] - 0.5))
    cv.img = np.ascontiguousarray(np.clip(img, 0, 1), np.float32)


def _draw_back_hair(cv: _Canvas) -> None:
    """Set cv.hair (textured hair colour) and draw the hair behind the head.

    The texture is drawn for every style (bald too), so the texture generator
    is in the same state for the skin whatever the style.
    """
    f, U, V, tex, S, apx = cv.f, cv.U, cv.V, cv.tex, cv.S, cv.apx
    hair_tex = 0.8 + 0.25 * _noise(tex, (8, 48), S) + 0.1 * _noise(tex, (32, 32), S)
    cv.hair = np.clip(f["hair"] * hair_tex[..., None], 0, 1)
    st = f["style"]
    if st == 2:
        return
    big = {0: (1.1, 1.07), 1: (1.18, 1.1), 3: (1.42, 1.25)}[st]
    rho = np.sqrt((U / big[0]) ** 2 + ((V + 0.1) / big[1]) ** 2)
    if st == 3:
        rho = rho + 0.05 * _noise(tex, (12, 12), S)
    m = _soft(rho, min(apx, cv.bpx))
    if st == 1:  # long hair falls to the shoulders
        vc, half = (f["hair_len"] - 0.1) / 2, (f["hair_len"] + 0.1) / 2
        m = np.maximum(m, _soft(np.maximum(np.abs(U) / 1.2, np.abs(V - vc) / half), apx))
    _blend(cv.img, m, cv.hair)


def _draw_neck_and_shoulders(cv: _Canvas) -> None:
    """Draw the neck, then the shoulders (clothes) over it."""
    f, x, y, S = cv.f, cv.x, cv.y, cv.S
    _blend(cv.img, _soft(np.maximum(np.abs(cv.U) / 0.5, np.where(cv.V > 0.3, 0.0, 9.0)),
                         cv.apx * 0.5), cv.skin * 0.78)
    top = cv.cy + cv.b + 0.06
    _blend(cv.img, _soft(np.sqrt(((x - cv.cx) / 0.5) ** 2 + ((y - top - 0.3) / 0.3) ** 2), 0.3 * S),
           f["cloth"])


def _draw_face(cv: _Canvas) -> None:
    """Draw the ears and the face: skin in a jaw-narrowed ellipse, lit like a
    sphere, with rosy cheeks. Sets cv.rho, cv.L, cv.shade, cv.face_col, cv.face_m."""
    f, U, V, S, apx, skin = cv.f, cv.U, cv.V, cv.S, cv.apx, cv.skin
    w = 1 - f["jaw"] * np.clip(V, 0, 1) ** 2
    cv.rho = rho = np.sqrt((U / w) ** 2 + V ** 2)
    for sgn in (-1, 1):  # ears
        k = _box(cv, sgn * 0.97, -0.02, 0.16, 0.22)
        ear = np.sqrt(((U[k] - sgn * 0.97) / 0.14) ** 2 + ((V[k] + 0.02) / 0.2) ** 2)
        _blend(cv.img[k], _soft(ear, apx * 0.14), skin * 0.85)
    nz = np.sqrt(np.clip(1 - np.minimum(rho, 1) ** 2, 0, 1))
    cv.L = L = (np.cos(f["light"]) * np.sin(f["elev"]), np.sin(f["light"]) * np.sin(f["elev"]),
                np.cos(f["elev"]))
    lam = np.clip((0.8 * U / w * L[0] + 0.8 * V * L[1] + nz * L[2]), 0, 1)
    cv.shade = shade = f["ambient"] + (1 - f["ambient"]) * lam
    skin_tex = 1 + 0.03 * _noise(cv.tex, (24, 24), S) + 0.015 * _noise(cv.tex, (96, 96), S)
    cv.face_col = face_col = skin * (shade * skin_tex)[..., None]
    for sgn in (-1, 1):  # rosy cheeks (every class, so redness alone is no label)
        k = _box(cv, sgn * 0.5, 0.25, 0.75, 0.55)
        g = np.exp(-(((U[k] - sgn * 0.5) / 0.3) ** 2 + ((V[k] - 0.25) / 0.22) ** 2))
        face_col[k] *= 1 - (f["rosy"] * g)[..., None] * np.array([0.0, 0.35, 0.3], np.float32)
    cv.face_m = _soft(rho, min(apx, cv.bpx))
    _blend(cv.img, cv.face_m, face_col)


def _lesion(p, d2, dx, dy, pus: bool, k: float, lx: float, ly: float) -> None:
    """Draw one lesion on patch p [h, w, 3] in place (d2, dx, dy as in `_spot`):
    a red halo and core relative to the local skin, a pale head if `pus`, and a
    highlight on the side facing the light (lx, ly); k in [0.7, 1] is its strength."""
    halo = 0.45 * k * np.exp(-d2 / 3.5)
    p *= (1 - halo[..., None] * np.array([0.0, 0.3, 0.28], np.float32))
    core = k * np.exp(-d2 * 1.6)[..., None]
    p *= 1 - core * np.array([-0.08, 0.5, 0.48], np.float32)
    if pus:
        _blend(p, 0.9 * np.exp(-d2 * 7), np.array([0.97, 0.93, 0.78]) * max(p.max(), 0.6))
    hl = 0.18 * np.exp(-((dx + 0.35 * lx) ** 2 + (dy + 0.35 * ly) ** 2) * 12)
    _blend(p, hl, (1.0, 0.97, 0.95))


def _draw_moles_and_lesions(cv: _Canvas) -> None:
    """Draw the moles (any class), then the acne lesions, and clip cv.img to [0, 1]."""
    mole_col = cv.skin * np.array([0.55, 0.45, 0.4])
    for u0, v0, r in cv.f["moles"]:
        _spot(cv, u0, v0, r * cv.a, lambda p, d2, *_: _blend(p, 0.8 * np.exp(-d2 * 2.5), mole_col))
    lx, ly = -cv.L[0], -cv.L[1]
    before = cv.img.copy() if cv.f.get("lesions_on_face_only") else None
    for u0, v0, r, pus, k in cv.f["lesions"]:
        _spot(cv, u0, v0, r * cv.a,
              lambda p, d2, dx, dy, pus=pus, k=k: _lesion(p, d2, dx, dy, pus, k, lx, ly))
    if before is not None:     # version 3's larger halos stop at the face's edge
        cv.img = before + (cv.img - before) * cv.face_m[..., None]
    cv.img = np.clip(cv.img, 0, 1)


def _draw_nose(cv: _Canvas) -> None:
    """Draw the nose: a shaded ridge on the side away from the light, and nostrils."""
    f, U, V, img = cv.f, cv.U, cv.V, cv.img
    nv, nw = f["nose_v"], f["nose_w"]
    side = -np.sign(cv.L[0]) or 1.0
    k = _box(cv, 0, (nv - 0.1) / 2, 0.3, (nv + 0.1) / 2 + 0.05)
    ridge = np.exp(-(((U[k] - side * 0.09) / 0.05) ** 2)) * (V[k] > -0.1) * (V[k] < nv)
    img[k] *= 1 - (0.12 * ridge * cv.face_m[k])[..., None]
    for sgn in (-1, 1):
        k = _box(cv, sgn * nw * 0.6, nv, 0.1, 0.06)
        nost = np.sqrt(((U[k] - sgn * nw * 0.6) / 0.06) ** 2 + ((V[k] - nv) / 0.03) ** 2)
        _blend(img[k], 0.7 * _soft(nost, cv.apx * 0.03), cv.face_col[k] * 0.45)


def _draw_mouth(cv: _Canvas) -> None:
    """Draw the lips (tinted skin, curved by the smile) and the dark gap between them."""
    f, img, bpx = cv.f, cv.img, cv.bpx
    mw, lh = f["mouth_w"], f["lip_h"]
    k = _box(cv, 0, f["mouth_v"], mw + 0.05, lh + abs(f["smile"]) + 0.05)
    Uk, Vk = cv.U[k], cv.V[k]
    mv = Vk - f["mouth_v"] - f["smile"] * (1 - (Uk / mw) ** 2)
    lips = _soft(np.sqrt((Uk / mw) ** 2 + (mv / lh) ** 2), bpx * lh)
    lip_col = cv.face_col[k] * np.array([1.0, f["lip_col"], f["lip_col"]], np.float32) * 0.9
    _blend(img[k], lips, lip_col)
    gap = np.clip(1.2 - np.abs(mv) * bpx / (0.008 * cv.S), 0, 1) * (np.abs(Uk) < mw)
    _blend(img[k], 0.8 * lips * gap, lip_col * 0.35)


def _draw_eye(cv: _Canvas, sgn: int) -> None:
    """Draw the eye on side `sgn` (-1 / +1): shaded white, iris and pupil."""
    f, img, a, b, apx = cv.f, cv.img, cv.a, cv.b, cv.apx
    eu, ev, ew = sgn * f["eye_u"], f["eye_v"], f["eye_w"]
    k = _box(cv, eu, ev, ew + 0.03, ew * a / b * 0.6)
    Uk, Vk = cv.U[k], cv.V[k]
    eye = _soft(np.sqrt(((Uk - eu) / ew) ** 2 + ((Vk - ev) / (ew * 0.45 * a / b)) ** 2),
                apx * ew * 0.4)
    _blend(img[k], eye, np.array([0.93, 0.92, 0.9]) * cv.shade[k][..., None])
    dist = np.sqrt(((Uk - eu) * a) ** 2 + ((Vk - ev) * b) ** 2) / (ew * a * 0.55)
    _blend(img[k], eye * _soft(dist, ew * apx * 0.55), f["iris"])
    _blend(img[k], eye * _soft(dist / 0.45, ew * apx * 0.25), (0.03, 0.03, 0.03))


def _draw_brow(cv: _Canvas, sgn: int) -> None:
    """Draw the arched eyebrow above the eye on side `sgn` (-1 / +1), in the hair colour."""
    f = cv.f
    eu = sgn * f["eye_u"]
    bv0 = f["eye_v"] - f["brow_dv"]
    k = _box(cv, eu, bv0 - f["brow_k"] / 2, 0.27, f["brow_k"] / 2 + f["brow_t"] + 0.03)
    Uk, Vk = cv.U[k], cv.V[k]
    bv = bv0 - f["brow_k"] * (1 - ((Uk - eu) / 0.22) ** 2)
    brow = _soft(np.maximum(np.abs(Vk - bv) / f["brow_t"], np.abs(Uk - eu) / 0.24),
                 cv.bpx * f["brow_t"])
    _blend(cv.img[k], 0.85 * brow, f["hair"] * 0.9)


def _draw_front_hair(cv: _Canvas) -> None:
    """Draw the front hair: it covers the forehead above the hairline (not when bald)."""
    f, U, V = cv.f, cv.U, cv.V
    if f["style"] != 2:
        front = np.clip(0.5 - (V - _hairline(f, U)) * cv.bpx / (0.01 * cv.S), 0, 1)
        _blend(cv.img, front * _soft(cv.rho, cv.apx * 0.5) * (np.abs(U) < 1.1),
               cv.hair * cv.shade[..., None])


def _finish(cv: _Canvas, blur: float) -> Image.Image:
    """Global light gradient, colour cast / exposure and sensor noise on cv.img,
    then quantise to uint8 and Gaussian-blur by `blur` px: the S x S RGB image."""
    f, img, L = cv.f, cv.img, cv.L
    img *= (1 + f["grad"] * ((cv.x - 0.5) * L[0] + (cv.y - 0.5) * L[1]))[..., None]
    img *= f["cast"] * f["exposure"]
    img += f["noise"] * cv.tex.standard_normal(img.shape, dtype=np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(radius=blur))


def _draw(f: dict, S: int, blur: float) -> Image.Image:
    """Draw face parameters `f` on an S x S RGB canvas, Gaussian-blurred by `blur` px.

    The parts are painted back to front; lesions come before the facial
    features (which cover them) and the front hair. The order of the steps is
    also the order of the texture generator's draws, so it must not change.
    """
    cv = _canvas(f, S)
    _draw_background(cv)
    _draw_back_hair(cv)
    _draw_neck_and_shoulders(cv)
    _draw_face(cv)
    _draw_moles_and_lesions(cv)
    _draw_nose(cv)
    _draw_mouth(cv)
    for sgn in (-1, 1):
        _draw_eye(cv, sgn)
        _draw_brow(cv, sgn)
    _draw_front_hair(cv)
    return _finish(cv, blur)


def render_face(rng: np.random.Generator, severity: int, resolution: int = 64,
                version: int = GENERATOR_VERSION) -> np.ndarray:
    """One synthetic face with acne `severity` (0..3): uint8 [resolution, resolution, 3].

    Deterministic in the state of `rng` and `version` (the lesion table, `_LESIONS`);
    the draws do not depend on `resolution`, so one seed gives the same face at any
    size, and the same person (not the same lesions) in every version.
    """
    check_resolution(resolution, minimum=16, maximum=1024)
    face = _sample_face(rng, int(severity), int(version))
    size = internal_size(resolution)
    canvas = _draw(face, size, blur=0.35 * size / resolution)
    return np.asarray(canvas.resize((resolution, resolution), Image.LANCZOS), np.uint8)


def _severities(classes: Sequence[str]) -> list:
    """Severity ints (0..3) of demo class names; DatasetError unless they are distinct known names."""
    classes = list(classes)
    unknown = [c for c in classes if c not in DEFAULT_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise DatasetError(f"demo classes must be distinct names from {list(DEFAULT_CLASSES)}, "
                           f"got {classes}")
    return [DEFAULT_CLASSES.index(c) for c in classes]


def _image_ok(path: Path, resolution: int) -> bool:
    """Whether `path` is a readable image of `resolution` px (else it is rendered again)."""
    try:
        with Image.open(path) as im:
            return im.size == (resolution, resolution)
    except Exception:  # noqa: BLE001 - missing or unreadable means "render again"
        return False


def _made_here(out: Path) -> bool:
    """True for a folder holding a set of this generator made before the output marker."""
    try:
        return json.loads((out / "dataset.json").read_text()).get("generator") == "jaxgen.data.demo_faces"
    except (OSError, ValueError, AttributeError):
        return False


def _old_manifest(out: Path, params: Dict, overwrite: bool, flag: str = "--out") -> Optional[Dict]:
    """The manifest of the dataset already in `out`: None if there is none, {} if
    it is unreadable. A dataset made with other `params` is a DatasetError unless
    `overwrite` (so that a typo never mixes two sets in one folder). A folder
    of other files (no marker, no set of this generator) is an OutputError."""
    check_output(out, OUTPUT_KIND, flag, legacy=_made_here)
    meta_path = out / "dataset.json"
    try:
        old = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    except ValueError:
        old = {}
    diff = [f"{k}: {old.get(k)} != {v}" for k, v in params.items()
            if old is not None and old.get(k) != v]
    if diff and not overwrite:
        hint = (f" (renderer version {old.get('generator_version')}: render with --version / "
                "--config.data.demo_version set to it to keep using it)"
                if old.get("generator_version") != params["generator_version"] else "")
        raise DatasetError(f"{out} already holds a dataset made with other parameters "
                           f"({', '.join(diff)}){hint}. Pick another output folder, or pass "
                           "overwrite=True (--overwrite).")
    return old


def _remove_stale(out: Path, classes, files: Dict) -> None:
    """Delete the `<class>_NNNNN.png` files under `out/<class>` (for each of
    `classes`) that are not keys of `files`: what a previous set made and this one does not."""
    for c in classes:
        for p in (out / c).glob(f"{c}_[0-9][0-9][0-9][0-9][0-9].png"):
            if p not in files:
                p.unlink()


def _render_jobs(jobs: list, seed: int, resolution: int, progress: bool, version: int) -> None:
    """Render and save each (path, severity, index) of `jobs` from
    `default_rng([seed, severity, index])`, atomically (no half-written PNGs)."""
    t0, step = time.time(), max(1, len(jobs) // 10)
    for n, (path, s, i) in enumerate(jobs, 1):
        img = render_face(np.random.default_rng([int(seed), s, i]), s, resolution, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(img).save(tmp, format="PNG")
        os.replace(tmp, path)
        if progress and len(jobs) >= 50 and (n % step == 0 or n == len(jobs)):
            print(f"demo_faces: {n}/{len(jobs)} images rendered "
                  f"({n / max(time.time() - t0, 1e-9):.0f}/s)", flush=True)


def write_demo_dataset(out_dir, num_per_class: int = 64, resolution: int = 64, seed: int = 0,
                       classes: Sequence[str] = DEFAULT_CLASSES, progress: bool = True,
                       overwrite: bool = False, flag: str = "--out",
                       version: int = GENERATOR_VERSION) -> Dict:
    """Render the demo set as an image folder: out_dir/<class>/<class>_00000.png.

    Image i of severity s is drawn from `default_rng([seed, s, i])`, so each
    file can be (re)made on its own. `out_dir/dataset.json` records the
    parameters; a call with the same parameters reuses a complete dataset
    (nothing is rendered) and completes a partial one (missing or unreadable
    files only). A folder made with other parameters is an error unless
    `overwrite=True`, which re-renders and deletes the old set's extra
    `<class>_NNNNN.png` files. `version` picks the renderer (`_LESIONS`); a folder
    of another version is one of those "other parameters". A folder of other files is refused (OutputError
    naming `flag`, the setting that chose `out_dir`). Returns the manifest plus
    'rendered' (images drawn now) and 'path'.
    """
    check_resolution(resolution, minimum=16, maximum=1024)
    if int(num_per_class) < 1:
        raise DatasetError(f"num_per_class must be >= 1, got {num_per_class}")
    sev, n_per, out = _severities(classes), int(num_per_class), Path(out_dir)
    if int(version) not in VERSIONS:
        raise DatasetError(f"demo renderer version {version} does not exist; versions: {VERSIONS}")
    params = {"generator": "jaxgen.data.demo_faces", "generator_version": int(version),
              "classes": list(classes), "severities": sev, "num_per_class": n_per,
              "resolution": int(resolution), "seed": int(seed)}
    meta_path = out / "dataset.json"
    old = _old_manifest(out, params, overwrite, flag)
    files = {out / c / f"{c}_{i:05d}.png": (s, i) for c, s in zip(classes, sev)
             for i in range(n_per)}
    if overwrite and old:  # remove what the previous parameters made and these do not
        _remove_stale(out, set(old.get("classes", [])) | set(classes), files)
    jobs = [(p, s, i) for p, (s, i) in files.items()
            if overwrite or not _image_ok(p, resolution)]
    manifest = dict(params, counts={c: n_per for c in classes}, total=len(files), complete=False)
    if jobs:
        claim_output(out, OUTPUT_KIND, flag, legacy=_made_here)
        meta_path.write_text(json.dumps(manifest, indent=2) + "\n")
    _render_jobs(jobs, seed, resolution, progress, int(version))
    manifest["complete"] = True
    if jobs or old != manifest:
        out.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(manifest, indent=2) + "\n")
    if progress:
        what = f"rendered {len(jobs)}" if jobs else "reused all"
        print(f"demo_faces: {out}: {what} of {len(files)} images ({resolution}px, seed {seed})",
              flush=True)
    return dict(manifest, rendered=len(jobs), path=str(out))


def write_demo_holdout(data_cfg, classes: Sequence[str]) -> str:
    """Render (or reuse) the held-out real faces of a demo data config: `<path>_test`, half as
    many faces per class, seed + 1000 (never seen by a model trained on `path`). Returns the path."""
    def get(key, default):
        return int(data_cfg[key]) if key in data_cfg else default
    path = str(data_cfg["path"]) + "_test"
    write_demo_dataset(path, max(get("num_per_class", 64) // 2, 1), int(data_cfg["resolution"]),
                       get("seed", 0) + 1000, classes=list(classes), version=get("demo_version", 1))
    return path


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


def _old_spellings(ap: argparse.ArgumentParser) -> None:
    """The dashed flags of earlier versions, still accepted (hidden from --help)."""
    ap.add_argument("--num-per-class", dest="num_per_class", type=int, default=argparse.SUPPRESS,
                    help=argparse.SUPPRESS)
    ap.add_argument("--no-preview", dest="no_preview", action="store_true", default=argparse.SUPPRESS,
                    help=argparse.SUPPRESS)


def main(argv=None) -> int:
    """CLI: render the demo set into --out and write its preview.png."""
    ap = argparse.ArgumentParser(prog="python -m jaxgen.data.demo_faces", description=(
        "Render the procedural acne-severity demo face dataset as an image folder."))
    ap.add_argument("--out", default="data/demo_acne", help="output folder (data/demo_acne)")
    ap.add_argument("--num_per_class", type=int, default=64, help="images per class (64)")
    ap.add_argument("--resolution", type=int, default=64, help="power of two, 16..1024 (64)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (0)")
    ap.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                    help="comma-separated subset of " + ",".join(DEFAULT_CLASSES))
    ap.add_argument("--overwrite", action="store_true",
                    help="re-render even if the folder holds a set with other parameters")
    ap.add_argument("--no_preview", action="store_true", help="do not write preview.png")
    ap.add_argument("--version", type=int, default=GENERATOR_VERSION,
                    help=f"renderer version {VERSIONS} ({GENERATOR_VERSION}; 1 = the first demo sets)")
    _old_spellings(ap)
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    write_demo_dataset(args.out, args.num_per_class, args.resolution, args.seed,
                       [c.strip() for c in args.classes.split(",") if c.strip()],
                       progress=not args.quiet, overwrite=args.overwrite, version=args.version)
    if not args.no_preview:
        p = write_preview(args.out)
        if not args.quiet:
            print(f"demo_faces: preview grid written to {p}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
