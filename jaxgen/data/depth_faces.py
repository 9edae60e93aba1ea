"""Procedural grayscale depth-map faces with four facial expressions.

Why: the depth-faces track trains a class-conditional GAN on "depth camera"
faces with expressions; this module provides an embedded stand-in dataset so
that the whole pipeline runs without any real recordings. Each image is a
depth map seen from the front: bright = near the camera, dark = far, with a
dark background. A face is an ellipsoidal head (plus neck and shoulders) whose
surface carries a nose ridge, eye sockets with eyeballs, brow ridges, lips,
cheeks and a chin. The four classes differ in the expression geometry only:

    0 neutral   flat closed mouth, relaxed slightly arched brows
    1 happy     wide mouth curved up (corners high), parted lips, raised
                cheeks, slightly narrowed eyes
    2 sad       narrow mouth curved down (corners low), brows raised at the
                inner end and lowered outside, a tensed chin
    3 surprise  small round open mouth (a deep dark cavity), brows raised high
                and arched, wide-open eyes, forehead furrows

Identity varies independently of the class: head width and height, jaw,
position, roll and yaw (pose), nose length/width/height, eye spacing and size,
brow and lip thickness, overall depth relief, background level, neck, sensor
noise. The identity is drawn from the rng *before* the expression, so one rng
state rendered with two expressions gives the same person with another
expression (paired, counterfactual examples).

Each image is drawn on a canvas of `internal_size(resolution)` px and
downsampled with an antialiasing (LANCZOS) filter; the random draws do not
depend on the resolution (only the sensor noise is drawn per pixel).

API: `render_depth_face(rng, expression, resolution) -> uint8 [R, R, 1]`,
`write_depth_dataset(out_dir, ...) -> Path` (image-folder layout
`out_dir/<class>/<class>_00000.png` + `dataset.json` + `preview.png`,
idempotent and resumable), `write_depth_preview(...)` and a CLI:

    python -m jaxgen depth_faces --out data/demo_depth --num_per_class 64

Note: the folder loader sorts class folders by name, so a loaded dataset's
label order is happy, neutral, sad, surprise (its `class_names` say so); the
`expression` ints of `render_depth_face` follow `EXPRESSIONS`.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

from jaxgen.data.folder import check_resolution
from jaxgen.data.rendered_sets import check_set_size, write_preview_grid, write_rendered_set

GENERATOR_VERSION = 1
OUTPUT_KIND = "depth_faces"
EXPRESSIONS = ("neutral", "happy", "sad", "surprise")


def internal_size(resolution: int) -> int:
    """Side of the canvas a `resolution` image is drawn on before downsampling."""
    return int(min(max(4 * resolution, 128), max(1024, 2 * resolution)))


# ------------------------------------------------------------------ random draws

def _sample_identity(rng: np.random.Generator) -> dict:
    """The person: every draw that does not depend on the expression."""
    a = rng.uniform(0.25, 0.31)
    return dict(
        a=a, b=a * rng.uniform(1.22, 1.42), cx=0.5 + rng.normal(0, 0.025),
        cy=0.47 + rng.normal(0, 0.02), roll=np.deg2rad(rng.uniform(-8, 8)),
        yaw=rng.uniform(-0.12, 0.12), jaw=rng.uniform(0.15, 0.35),
        relief=rng.uniform(0.85, 1.1), base=rng.uniform(0.30, 0.40),
        bg=rng.uniform(0.02, 0.10), bg_grad=rng.uniform(-0.05, 0.05),
        neck_w=rng.uniform(0.42, 0.55), shoulder=rng.uniform(0.12, 0.22),
        nose_v=rng.uniform(0.18, 0.28), nose_w=rng.uniform(0.10, 0.15),
        nose_h=rng.uniform(0.16, 0.24), eye_u=rng.uniform(0.32, 0.40),
        eye_v=rng.uniform(-0.16, -0.06), eye_w=rng.uniform(0.13, 0.17),
        brow_dv=rng.uniform(0.15, 0.20), brow_t=rng.uniform(0.035, 0.05),
        brow_h=rng.uniform(0.07, 0.10), mouth_v=rng.uniform(0.52, 0.60),
        mouth_w=rng.uniform(0.26, 0.34), lip_t=rng.uniform(0.03, 0.045),
        lip_h=rng.uniform(0.06, 0.09), cheek=rng.uniform(0.02, 0.05),
        noise=rng.uniform(0.004, 0.012), noise_seed=int(rng.integers(2 ** 62)))


def _sample_expression(rng: np.random.Generator, expression: int) -> dict:
    """Expression geometry, with a little per-face jitter.

    curv: mouth curvature (> 0 corners up), open: half-height of the mouth
    opening (face units), width: mouth width factor, brow_up: raise of the
    whole brow, brow_tilt: extra raise of the inner end (sad), brow_arch,
    eye_open: eyeball size factor, cheek_up: cheek bulge factor, furrows:
    forehead wrinkle depth, chin: chin tension bump.
    """
    e = int(expression)
    if e == 0:
        p = dict(curv=rng.uniform(-0.012, 0.012), open=0.0, width=rng.uniform(0.95, 1.05),
                 brow_up=rng.uniform(-0.01, 0.01), brow_tilt=0.0, brow_arch=rng.uniform(0.02, 0.04),
                 eye_open=1.0, cheek_up=1.0, furrows=0.0, chin=0.0)
    elif e == 1:
        p = dict(curv=rng.uniform(0.10, 0.14), open=rng.uniform(0.02, 0.04),
                 width=rng.uniform(1.15, 1.3), brow_up=rng.uniform(0.0, 0.025), brow_tilt=0.0,
                 brow_arch=rng.uniform(0.03, 0.05), eye_open=rng.uniform(0.75, 0.85),
                 cheek_up=rng.uniform(2.2, 2.8), furrows=0.0, chin=0.0)
    elif e == 2:
        p = dict(curv=-rng.uniform(0.13, 0.16), open=0.0, width=rng.uniform(0.85, 0.95),
                 brow_up=rng.uniform(0.0, 0.02), brow_tilt=rng.uniform(0.12, 0.15),
                 brow_arch=rng.uniform(-0.01, 0.01), eye_open=rng.uniform(0.85, 0.95),
                 cheek_up=0.6, furrows=0.0, chin=rng.uniform(0.05, 0.07))
    elif e == 3:
        p = dict(curv=rng.uniform(-0.01, 0.01), open=rng.uniform(0.09, 0.12),
                 width=rng.uniform(0.55, 0.65), brow_up=rng.uniform(0.10, 0.13), brow_tilt=0.0,
                 brow_arch=rng.uniform(0.06, 0.09), eye_open=rng.uniform(1.25, 1.4),
                 cheek_up=0.7, furrows=rng.uniform(0.02, 0.035), chin=0.0)
    else:
        raise ValueError(f"expression must be 0..3 ({', '.join(EXPRESSIONS)}), got {expression}")
    return p


def _sample_face(rng: np.random.Generator, expression: int) -> dict:
    """Every random choice of one image: identity first, then the expression."""
    f = _sample_identity(rng)
    f["expr"] = _sample_expression(rng, expression)
    f["expression"] = int(expression)
    return f


def face_to_pixel(f: dict, u: float, v: float, resolution: int) -> Tuple[float, float]:
    """Pixel (x, y) of face-frame point (u, v) of face parameters `f` in an image
    of `resolution` px (u: across, +-1 at the head's sides; v: down, +-1 at top/chin)."""
    c, s = np.cos(f["roll"]), np.sin(f["roll"])
    du, dv = u * f["a"], v * f["b"]
    return ((f["cx"] + du * c - dv * s) * resolution, (f["cy"] + du * s + dv * c) * resolution)


# ----------------------------------------------------------------------- drawing

def _g(d2):
    """Gaussian profile exp(-d2) of a squared normalised distance."""
    return np.exp(-np.minimum(d2, 60.0))


def _face_frame(f: dict, S: int):
    """Pixel centres x, y in [0, 1] and face-frame coordinates U, V (+-1 at the
    head's sides / top and chin) of face `f` on an S x S canvas: four [S, S] arrays."""
    y, x = (np.mgrid[0:S, 0:S].astype(np.float32) + 0.5) / S
    a, b, cx, cy = f["a"], f["b"], f["cx"], f["cy"]
    c, s = np.cos(f["roll"]), np.sin(f["roll"])
    U = ((x - cx) * c + (y - cy) * s) / a
    V = (-(x - cx) * s + (y - cy) * c) / b
    return x, y, U, V


def _body_depth(f: dict, x, y, U, V) -> np.ndarray:
    """Depth [S, S] of the background, shoulders and neck (further away than the
    face, which is drawn over them); x, y, U, V as from `_face_frame`."""
    depth = f["bg"] + f["bg_grad"] * (y - 0.5)
    sh_top = f["cy"] + f["b"] * 1.05
    sh = np.sqrt(np.clip(1 - ((x - f["cx"]) / 0.48) ** 2 - ((y - sh_top - 0.32) / 0.32) ** 2, 0, 1))
    depth = np.maximum(depth, np.where(sh > 0, 0.12 + f["shoulder"] * sh, 0))
    nx = np.clip(1 - (U / f["neck_w"]) ** 2, 0, 1)
    neck = np.where((V > 0.3) & (nx > 0), 0.2 + 0.2 * np.sqrt(nx), 0)
    return np.maximum(depth, neck)


def _add_nose(feat: np.ndarray, f: dict, Uf, V) -> None:
    """Add to the feature relief feat [S, S] in place: a nose ridge from the brows
    to the tip, wider and higher towards the tip, and the nostril wings.
    Uf, V: [S, S] yaw-shifted and plain face-frame coordinates."""
    nv, nw, nh = f["nose_v"], f["nose_w"], f["nose_h"]
    v0 = f["eye_v"] - 0.06
    t = np.clip((V - v0) / (nv - v0), 0, 1)
    below = np.where(V > nv, _g(((V - nv) / 0.05) ** 2), 1.0)
    feat += nh * t ** 1.4 * below * _g((Uf / (nw * (0.45 + 0.55 * t))) ** 2)
    for sg in (-1, 1):
        feat += 0.35 * nh * _g(((Uf - sg * nw * 0.85) / (nw * 0.45)) ** 2
                               + ((V - nv + 0.01) / 0.045) ** 2)


def _add_eyes(feat: np.ndarray, f: dict, ex: dict, Uf, V) -> None:
    """Add eye sockets with eyeballs to feat [S, S] in place (eyeball size from
    the expression: bigger for surprise, narrowed when happy)."""
    for sg in (-1, 1):
        du, dv = Uf - sg * f["eye_u"], V - f["eye_v"]
        ew = f["eye_w"]
        feat -= 0.17 * _g((du / (ew * 1.35)) ** 2 + (dv / (ew * 1.0)) ** 2)
        r = ew * 0.55 * ex["eye_open"]
        feat += 0.07 * np.sqrt(np.clip(1 - (du / (ew * 0.8)) ** 2 - (dv / r) ** 2, 0, 1))


def _add_brows(feat: np.ndarray, f: dict, ex: dict, Uf, V) -> None:
    """Add to feat [S, S] in place the brow ridges above the eyes (the expression
    moves, tilts and arches them), then the forehead furrows (surprise only)."""
    for sg in (-1, 1):
        ul = (Uf - sg * f["eye_u"]) / 0.24 * sg  # -1 inner end (nose side) .. +1 outer
        bv = (f["eye_v"] - f["brow_dv"] - ex["brow_up"] - ex["brow_arch"] * (1 - ul ** 2)
              - ex["brow_tilt"] * np.clip((1 - ul) / 2, 0, 1) ** 1.5
              + 0.5 * ex["brow_tilt"] * np.clip(ul, 0, 1))
        along = _g(np.maximum(np.abs(ul) - 0.85, 0) ** 2 / 0.02)
        feat += f["brow_h"] * along * _g(((V - bv) / f["brow_t"]) ** 2)
    if ex["furrows"] > 0:
        top = f["eye_v"] - f["brow_dv"] - ex["brow_up"] - 0.12
        for k in range(3):
            feat -= ex["furrows"] * _g(((V - (top - 0.07 * k)) / 0.014) ** 2) * _g((Uf / 0.45) ** 4)


def _add_cheeks_and_chin(feat: np.ndarray, f: dict, ex: dict, Uf, V) -> None:
    """Add to feat [S, S] in place the cheeks (raised by a smile) and the chin
    (bigger when tensed, as in sad)."""
    for sg in (-1, 1):
        feat += f["cheek"] * ex["cheek_up"] * _g(((Uf - sg * 0.45) / 0.22) ** 2
                                                  + ((V - 0.3 + 0.04 * ex["cheek_up"]) / 0.2) ** 2)
    feat += (0.03 + ex["chin"]) * _g((Uf / 0.22) ** 2 + ((V - 0.85) / 0.09) ** 2)


def _add_mouth(feat: np.ndarray, f: dict, ex: dict, Uf, V, soft: float) -> None:
    """Add to feat [S, S] in place the lips along the curve
    mc(u) = mouth_v - curv * (u/mw)^2 and, between them, a groove (closed
    mouth) or a dark cavity (open); `soft` is one canvas pixel in face units."""
    mw = f["mouth_w"] * ex["width"]
    un = Uf / mw
    env = np.clip(1 - un ** 2, 0, 1)
    mc = f["mouth_v"] - ex["curv"] * un ** 2
    half = ex["open"] * np.sqrt(env)
    lip_t = f["lip_t"]
    for sg in (-1, 1):
        lv = mc + sg * (half + lip_t * 0.9)
        feat += f["lip_h"] * env ** 0.6 * _g(((V - lv) / lip_t) ** 2)
    if ex["open"] > 0:
        cav = np.clip((half - np.abs(V - mc)) / soft + 0.5, 0, 1) * (env > 0)
        feat -= 0.35 * cav * np.clip(half / 0.03, 0, 1)
    feat -= 0.14 * (np.abs(un) < 1.05) * _g(((V - mc) / 0.016) ** 2) * np.clip(1.2 - np.abs(un), 0, 1)


def _draw_depth(f: dict, S: int) -> np.ndarray:
    """Depth of face `f` on an S x S canvas: float32 [S, S], 0 far .. 1 near.

    The head is an ellipsoid (jaw-narrowed) whose surface carries the feature
    relief `feat`; it is blended over the body with an antialiased edge.
    """
    x, y, U, V = _face_frame(f, S)
    ex = f["expr"]
    soft = 1.5 / (min(f["a"], f["b"]) * S)  # one canvas pixel, in face units
    depth = _body_depth(f, x, y, U, V)

    w = 1 - f["jaw"] * np.clip(V, 0, 1) ** 2
    rho2 = (U / w) ** 2 + V ** 2
    inside = np.clip((1 - np.sqrt(rho2)) / soft + 0.5, 0, 1)
    h = np.sqrt(np.clip(1 - rho2, 0, 1))
    Uf = U - f["yaw"] * np.sqrt(np.clip(1 - V ** 2, 0, 1))  # features follow the yaw

    feat = np.zeros_like(U)
    _add_nose(feat, f, Uf, V)
    _add_eyes(feat, f, ex, Uf, V)
    _add_brows(feat, f, ex, Uf, V)
    _add_cheeks_and_chin(feat, f, ex, Uf, V)
    _add_mouth(feat, f, ex, Uf, V, soft)

    head = f["base"] + f["relief"] * (0.42 * h + feat * np.clip(h * 2.5, 0, 1))
    head = head - 0.15 * f["yaw"] * U  # the turned-away side recedes
    depth = depth * (1 - inside) + np.maximum(head, depth) * inside
    return np.clip(depth, 0, 1).astype(np.float32)


def render_depth_face(rng: np.random.Generator, expression: int, resolution: int = 64) -> np.ndarray:
    """One synthetic depth face with `expression` (0..3, see EXPRESSIONS):
    uint8 [resolution, resolution, 1], bright = near.

    Deterministic in the state of `rng`; the geometry draws do not depend on
    `resolution`, so one seed gives the same face at any size.
    """
    check_resolution(resolution, minimum=16, maximum=1024)
    f = _sample_face(rng, int(expression))
    size = internal_size(resolution)
    canvas = Image.fromarray(_draw_depth(f, size), mode="F")
    img = np.asarray(canvas.resize((resolution, resolution), Image.LANCZOS), np.float32)
    noise = np.random.default_rng(f["noise_seed"]).standard_normal(img.shape, dtype=np.float32)
    img = img + f["noise"] * noise
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)[..., None]


# ----------------------------------------------------------------------- dataset

def _draw_png(rng: np.random.Generator, expression: int, resolution: int) -> Image.Image:
    """One depth face (see `render_depth_face`) as the grayscale ("L") image its PNG holds."""
    return Image.fromarray(render_depth_face(rng, expression, resolution)[..., 0], mode="L")


def write_depth_dataset(out_dir, num_per_class: int = 64, resolution: int = 64, seed: int = 0,
                        progress: bool = True, preview: bool = True,
                        overwrite: bool = False, flag: str = "--out") -> Path:
    """Render the depth-face set as an image folder: out_dir/<class>/<class>_00000.png
    (grayscale PNGs) for class in EXPRESSIONS, plus out_dir/dataset.json and
    out_dir/preview.png. Returns out_dir as a Path.

    Image i of expression e is drawn from `default_rng([seed, e, i])`, so each
    file can be (re)made on its own: a second call with the same parameters
    renders nothing, and an interrupted one is completed (missing or unreadable
    files only; files are written atomically). A folder made with other
    parameters is a DatasetError unless `overwrite=True`, which re-renders
    everything and deletes the old set's extra `<class>_NNNNN.png` files. A folder
    of other files is refused (OutputError naming `flag`, the setting that chose it).
    jaxgen.data.rendered_sets writes it.
    """
    n_per, out = check_set_size(resolution, num_per_class), Path(out_dir)
    params = {"generator": "jaxgen.data.depth_faces", "generator_version": GENERATOR_VERSION,
              "classes": list(EXPRESSIONS), "num_per_class": n_per,
              "resolution": int(resolution), "seed": int(seed), "channels": 1}
    write_rendered_set(out, OUTPUT_KIND, params, {c: e for e, c in enumerate(EXPRESSIONS)},
                       functools.partial(_draw_png, resolution=resolution), progress=progress,
                       overwrite=overwrite, flag=flag, mode="L",
                       preview=write_depth_preview if preview else None)
    return out


def write_depth_preview(out_dir, path=None, columns: int = 8, cell: int = 80) -> Path:
    """Save a labelled grid of a written depth set (one row per expression,
    `columns` images of `cell` px) as out_dir/preview.png, or `path`."""
    rows = [(name, name) for name in EXPRESSIONS]
    return write_preview_grid(Path(out_dir), rows, "L", path, columns, cell, label_w=80, text_dy=6)


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen depth_faces
    import runpy
    runpy.run_module("jaxgen.commands.depth_faces", run_name="__main__")
