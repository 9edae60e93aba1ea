"""Writing a procedurally rendered image-folder dataset, and its labelled preview grid.

Why: the two embedded face generators (`demo_faces`: RGB acne faces,
`depth_faces`: grayscale depth faces) write their sets the same way, so that
way is written once here; each generator only says how one image is drawn.

A set is `out/<class>/<class>_00000.png` plus `out/dataset.json` (the
generator's parameters, `counts`, `total` and `complete`). Image i of class
label e is drawn from `default_rng([seed, e, i])`, so each file can be (re)made
on its own: a second call with the same parameters renders nothing, an
interrupted one is completed (missing or unreadable files only; each PNG is
written atomically), and a folder made with other parameters is a DatasetError
unless `overwrite`. The folder is claimed as an output of kind `name` (the
generator's module name): a folder of other files is refused.
"""
from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxgen.data.folder import DatasetError, check_resolution
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output

# Draws one image: (rng, class label) -> the PIL image saved as its PNG.
Draw = Callable[[np.random.Generator, int], Image.Image]


def check_set_size(resolution: int, num_per_class) -> int:
    """`num_per_class` as an int; DatasetError unless `resolution` is a power of two in 16..1024
    and `num_per_class` >= 1."""
    check_resolution(resolution, minimum=16, maximum=1024)
    if int(num_per_class) < 1:
        raise DatasetError(f"num_per_class must be >= 1, got {num_per_class}")
    return int(num_per_class)


def _image_ok(path: Path, resolution: int, mode: Optional[str]) -> bool:
    """Whether `path` is a readable image of `resolution` px (and of PIL `mode`, unless
    None); else it is rendered again."""
    try:
        with Image.open(path) as im:
            return im.size == (resolution, resolution) and (mode is None or im.mode == mode)
    except Exception:  # noqa: BLE001 - missing or unreadable means "render again"
        return False


def _made_by(generator: str, out: Path) -> bool:
    """True for a folder holding a set of `generator` made before the output marker."""
    try:
        return json.loads((out / "dataset.json").read_text()).get("generator") == generator
    except (OSError, ValueError, AttributeError):
        return False


def _old_manifest(out: Path, name: str, params: Dict, overwrite: bool, flag: str,
                  hint: Optional[Callable[[Dict, Dict], str]]) -> Optional[Dict]:
    """The manifest of the dataset already in `out`: None if there is none, {} if
    it is unreadable. A dataset made with other `params` is a DatasetError unless
    `overwrite` (so that a typo never mixes two sets in one folder); `hint(old, params)`
    adds to its message. A folder of other files (no marker of kind `name`, no set
    of this generator) is an OutputError."""
    check_output(out, name, flag, legacy=functools.partial(_made_by, params["generator"]))
    meta_path = out / "dataset.json"
    try:
        old = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    except ValueError:
        old = {}
    diff = [f"{k}: {old.get(k)} != {v}" for k, v in params.items()
            if old is not None and old.get(k) != v]
    if diff and not overwrite:
        raise DatasetError(f"{out} already holds a dataset made with other parameters "
                           f"({', '.join(diff)}){hint(old, params) if hint else ''}. Pick another "
                           "output folder, or pass overwrite=True (--overwrite).")
    return old


def _remove_stale(out: Path, classes, files: Dict) -> None:
    """Delete the `<class>_NNNNN.png` files under `out/<class>` (for each of
    `classes`) that are not keys of `files`: what a previous set made and this one does not."""
    for c in classes:
        for p in (out / c).glob(f"{c}_[0-9][0-9][0-9][0-9][0-9].png"):
            if p not in files:
                p.unlink()


def _render_jobs(jobs: list, name: str, seed: int, draw: Draw, progress: bool) -> None:
    """Draw and save each (path, label, index) of `jobs` from `default_rng([seed, label,
    index])`, atomically (never a half-written PNG); a progress line every tenth of 50+."""
    t0, step = time.time(), max(1, len(jobs) // 10)
    for n, (path, label, i) in enumerate(jobs, 1):
        img = draw(np.random.default_rng([int(seed), label, i]), label)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
        if progress and len(jobs) >= 50 and (n % step == 0 or n == len(jobs)):
            logger.info(f"{name}: {n}/{len(jobs)} images rendered "
                        f"({n / max(time.time() - t0, 1e-9):.0f}/s)")


def write_rendered_set(out: Path, name: str, params: Dict, labels: Dict[str, int], draw: Draw, *,
                       progress: bool, overwrite: bool, flag: str, mode: Optional[str] = None,
                       hint: Optional[Callable[[Dict, Dict], str]] = None,
                       preview: Optional[Callable[[Path], object]] = None) -> Dict:
    """Render (or reuse, or complete) the set `params` describes in `out`.

    name: the generator's module name (output kind, progress prefix); params: the
    manifest's parameters (with 'generator', 'num_per_class', 'resolution' and
    'seed'), compared with those of a set already there; labels: class folder ->
    label int, in order; draw: one image; mode: the PIL mode a file must have to be
    reused; hint(old manifest, params): more words for the "other parameters"
    error; preview(out): writes out/preview.png, called when files were rendered or
    it is missing. Returns the manifest plus 'rendered' (images drawn now) and 'path'.
    """
    n_per, resolution, seed = params["num_per_class"], params["resolution"], params["seed"]
    meta_path = out / "dataset.json"
    old = _old_manifest(out, name, params, overwrite, flag, hint)
    files = {out / c / f"{c}_{i:05d}.png": (e, i) for c, e in labels.items() for i in range(n_per)}
    if overwrite and old:  # remove what the previous parameters made and these do not
        _remove_stale(out, set(old.get("classes", [])) | set(labels), files)
    jobs = [(p, e, i) for p, (e, i) in files.items()
            if overwrite or not _image_ok(p, resolution, mode)]
    manifest = dict(params, counts={c: n_per for c in labels}, total=len(files), complete=False)
    if jobs:
        claim_output(out, name, flag, legacy=functools.partial(_made_by, params["generator"]))
        meta_path.write_text(json.dumps(manifest, indent=2) + "\n")
    _render_jobs(jobs, name, seed, draw, progress)
    manifest["complete"] = True
    if jobs or old != manifest:
        out.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(manifest, indent=2) + "\n")
    if preview is not None and (jobs or not (out / "preview.png").is_file()):
        preview(out)
    if progress:
        what = f"rendered {len(jobs)}" if jobs else "reused all"
        logger.info(f"{name}: {out}: {what} of {len(files)} images ({resolution}px, seed {seed})")
    return dict(manifest, rendered=len(jobs), path=str(out))


def write_preview_grid(out: Path, rows: Sequence[Tuple[str, str]], mode: str, path, columns: int,
                       cell: int, label_w: int, text_dy: int) -> Path:
    """Save a labelled grid of a written set as `path` (default out/preview.png); returns it.

    rows: (class folder, label text) per row; each row shows the first `columns`
    images of out/<class> (sorted by name) at `cell` px, converted to PIL `mode`
    ("RGB" or "L"), right of a `label_w` px column holding the text, raised by
    `text_dy` px from the row's middle; white background, black text.
    """
    pad = 4
    grid = Image.new(mode, (label_w + columns * (cell + pad), len(rows) * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for r, (name, text) in enumerate(rows):
        top = pad + r * (cell + pad)
        draw.text((6, top + cell // 2 - text_dy), text, fill="black", font=ImageFont.load_default())
        for c, p in enumerate(sorted((out / name).glob(f"{name}_*.png"))[:columns]):
            with Image.open(p) as im:
                grid.paste(im.convert(mode).resize((cell, cell), Image.LANCZOS),
                           (label_w + c * (cell + pad), top))
    path = Path(path) if path is not None else out / "preview.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
