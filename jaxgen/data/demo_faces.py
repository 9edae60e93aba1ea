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
resumable) and `write_preview(...)`. The painting itself (parameters to pixels) is
`jaxgen.data.demo_face_drawing`; the command is `jaxgen.commands.demo_faces`:

    python -m jaxgen demo_faces --out data/demo_acne --num_per_class 64
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from PIL import Image

from jaxgen.data.demo_face_drawing import draw_face, hairline
from jaxgen.data.folder import DatasetError, check_resolution
from jaxgen.data.rendered_sets import check_set_size, write_preview_grid, write_rendered_set

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


def _on_skin(f: dict, u: float, v: float) -> bool:
    """Whether face-frame point (u, v) is bare skin, away from the features."""
    w = 1 - f["jaw"] * min(max(v, 0), 1) ** 2
    if (u / w) ** 2 + v ** 2 > 0.78 or v < max(hairline(f, u) + 0.1, -0.7):
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
    canvas = draw_face(face, size, blur=0.35 * size / resolution)
    return np.asarray(canvas.resize((resolution, resolution), Image.LANCZOS), np.uint8)


def _severities(classes: Sequence[str]) -> list:
    """Severity ints (0..3) of demo class names; DatasetError unless they are distinct known names."""
    classes = list(classes)
    unknown = [c for c in classes if c not in DEFAULT_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise DatasetError(f"demo classes must be distinct names from {list(DEFAULT_CLASSES)}, "
                           f"got {classes}")
    return [DEFAULT_CLASSES.index(c) for c in classes]


def _version_hint(old: Dict, params: Dict) -> str:
    """Advice for a folder that holds a set of another renderer version: how to keep using it."""
    if old.get("generator_version") == params["generator_version"]:
        return ""
    return (f" (renderer version {old.get('generator_version')}: render with --version / "
            "--config.data.demo_version set to it to keep using it)")


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
    'rendered' (images drawn now) and 'path' (jaxgen.data.rendered_sets writes it).
    """
    n_per = check_set_size(resolution, num_per_class)
    sev = _severities(classes)
    if int(version) not in VERSIONS:
        raise DatasetError(f"demo renderer version {version} does not exist; versions: {VERSIONS}")
    params = {"generator": "jaxgen.data.demo_faces", "generator_version": int(version),
              "classes": list(classes), "severities": sev, "num_per_class": n_per,
              "resolution": int(resolution), "seed": int(seed)}

    def draw(rng: np.random.Generator, severity: int) -> Image.Image:
        return Image.fromarray(render_face(rng, severity, resolution, int(version)))
    return write_rendered_set(Path(out_dir), OUTPUT_KIND, params, dict(zip(classes, sev)), draw,
                              progress=progress, overwrite=overwrite, flag=flag, hint=_version_hint)


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
    rows = [(name, f"{name}\n(severity {DEFAULT_CLASSES.index(name)})") for name in classes]
    return write_preview_grid(out, rows, "RGB", path, columns, cell, label_w=110, text_dy=12)


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen demo_faces
    import runpy
    runpy.run_module("jaxgen.commands.demo_faces", run_name="__main__")
