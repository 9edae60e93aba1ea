"""How one demo face is painted: face parameters (a dict from `demo_faces._sample_face`) to pixels.

Why a module of its own: `jaxgen.data.demo_faces` says what a face is (the sampled
parameters, the lesion table per severity and renderer version) and writes the sets;
this module only paints, back to front on an S x S float canvas, and blurs. The order
of the painting steps is also the order of the texture generator's draws, so changing
it changes every image (tests/data/test_rendered_sets.py pins the pixels).

`draw_face(f, S, blur) -> PIL.Image` (RGB, S x S); `hairline(f, u)`: the hair front in
face-frame coordinates, which the lesion sampler also uses to keep lesions on skin.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from PIL import Image, ImageFilter


def hairline(f: dict, u):
    """Face-frame v of the hair front: skin is below (v > hairline)."""
    if f["style"] == 2:
        return -1.5 + 0 * u
    return f["h0"] + 0.45 * u ** 2 + f["part"] * u


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
        front = np.clip(0.5 - (V - hairline(f, U)) * cv.bpx / (0.01 * cv.S), 0, 1)
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


def draw_face(f: dict, S: int, blur: float) -> Image.Image:
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
