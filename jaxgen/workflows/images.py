"""Pictures from a StyleGAN2 run for a person to look at: seeds, style mixing, interpolation, projected w.

  python -m jaxgen images seeds  RUN --out DIR --seeds 0-7 [--class NAME] [--psi 0.7]
         [--cutoff N] [--centre global|class] [--noise_mode const|random|none] [--which auto|latest|best]
  python -m jaxgen images mix    RUN --out DIR --rows 1,2 --cols 3-5 [--layers 0-3] [...]
  python -m jaxgen images interp RUN --out DIR --seeds 1,5,9 [--steps 8] [--space w|z]
         [--fps 10] [...]
  python -m jaxgen images w      RUN --out DIR --projected_w projected_w.npz [--noise_mode ...]

RUN is anything `jaxgen.runs.open_run` opens that holds a StyleGAN2 generator
(workdir, networks directory, NVIDIA .pkl); a DCGAN or classifier run is refused.
Seed s draws z as NVIDIA's generate.py does. A conditional generator needs
--class (a name from its run.json, or an index). --psi truncates w towards
G's mean w (--centre global) or the class's own mean w (--centre class) on the
layers below --cutoff. What each mode writes (prefixed `<class>_` when --class is given):

  seeds   seed0007.png per seed (rendered and written a chunk at a time), seeds_grid.png (the
          first 64 seeds), seeds_ws.npz ('w' [N, num_ws, w_dim]: feed it back with
          `w --projected_w`), seeds.json
  mix     mix.png: top row the column seeds, left column the row seeds, cell (r, c) the
          row seed with the column seed's ws on --layers (default: the coarse ones), mix.json
  interp  interp.png (one row per pair of seeds, both ends shown), interp.gif, interp.json
  w       projected_0000.png per w of the file, projected_grid.png (the first 64), w.json

Everything is validated (run kind, seeds, class, layers against the run's num_ws,
the w file's shape; at most 10,000 seeds, and 1024 frames or grid cells and 512 MiB of
them for one picture) before --out is created; --out must be new, empty or an earlier
`images` output (`jaxgen.utils.outputs`). This command writes pictures; the
checked synthetic DATASET export is `python -m jaxgen generate`.
"""
from __future__ import annotations

import json
import pathlib
import re
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from jaxgen.errors import ConfigError
from jaxgen.runs import Run
from jaxgen.stylegan2 import controls
from jaxgen.utils.files import inside, save_png_atomic, write_text_atomic
from jaxgen.utils.images import save_grid, to_uint8
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.utils.progress import Progress

OUTPUT_KIND = "images"
GIF_MIN_SIZE = 128       # small generators' frames are upscaled (nearest) to at least this
PICTURE_BYTES = 512 << 20  # uint8 pixels of the frames one picture (mix grid, interp strip and GIF) holds
RENDER_CHUNK = 64        # images rendered (float32), converted to uint8 and written at a time
GRID_MAX = 64            # seeds shown in seeds_grid.png (each seed still gets its own PNG)
Writer = Callable[[pathlib.Path], List[str]]


def _prefix(run: Run, idx: Optional[int]) -> str:
    """'' for an unconditional G, else '<class name>_' with unsafe characters replaced."""
    return "" if idx is None else re.sub(r"[^A-Za-z0-9_.-]", "_", run.class_names[idx]) + "_"


def _truncation(run: Run, a) -> Dict:
    """The ws_for keyword arguments of the flags, validated (class, psi, cutoff, centre)."""
    controls.check_truncation(run, a.psi, a.cutoff, a.centre)
    return dict(cls=controls.class_index(run, a.cls), psi=a.psi, cutoff=a.cutoff, centre=a.centre,
                class_mean_n=a.class_mean_n)


def _render_chunks(run: Run, ws: np.ndarray, a, noise_seeds) -> Iterator[Tuple[int, np.ndarray]]:
    """(start, uint8 images [n, R, R, C]) of ws, RENDER_CHUNK at a time, with a progress line
    every 10 s. Why chunks: only one chunk's float32 images are held, whatever len(ws) is.
    noise_seeds: one per w (None: 0 .. N-1, as controls.render numbers them)."""
    bar = Progress(len(ws), "images: rendering", every=10.0)
    seeds = np.arange(len(ws)) if noise_seeds is None else np.asarray(noise_seeds)
    for i in range(0, len(ws), RENDER_CHUNK):
        part = slice(i, i + RENDER_CHUNK)
        yield i, to_uint8(controls.render(run, ws[part], a.noise_mode, seeds[part], progress=bar))


def _render(run: Run, ws: np.ndarray, a, noise_seeds) -> np.ndarray:
    """uint8 images [N, R, R, C] of ws (see `_render_chunks`)."""
    return np.concatenate([imgs for _, imgs in _render_chunks(run, ws, a, noise_seeds)])


def _write_each(out: pathlib.Path, run: Run, ws: np.ndarray, a, noise_seeds, files: List[str],
                grid: str) -> None:
    """Render ws into `files` (one PNG each) a chunk at a time, and the first GRID_MAX of them
    into the grid PNG `grid`: memory stays that of one chunk and the grid, whatever len(ws) is."""
    shown = []
    for start, imgs in _render_chunks(run, ws, a, noise_seeds):
        for f, img in zip(files[start:], imgs):
            save_png_atomic(inside(out, out / f), img)
        if start < GRID_MAX:
            shown.append(imgs[:GRID_MAX - start])
    first = np.concatenate(shown)
    save_grid(first, inside(out, out / grid), cols=min(len(first), 8))


def _check_picture(run: Run, n: int, what: str) -> None:
    """ConfigError naming `what` unless n frames of the run (as the GIF holds them, upscaled to
    GIF_MIN_SIZE) fit in PICTURE_BYTES; checked before anything is rendered."""
    side = max(run.resolution, GIF_MIN_SIZE)
    per = side * side * run.channels
    if n * per > PICTURE_BYTES:
        raise ConfigError(f"{what}: {n:,} images of {run.resolution} px are {n * per / 2 ** 20:,.0f} MiB in one "
                          f"picture, over the {PICTURE_BYTES >> 20} MiB it may hold; give at most "
                          f"{PICTURE_BYTES // per} images")


def _record(out: pathlib.Path, name: str, run: Run, a, files: List[str], **fields) -> List[str]:
    """Write `name`.json (what was asked and which files it wrote); the files plus it."""
    rec = dict(mode=a.mode, run=str(run.path), which=a.which, step=run.step, noise_mode=a.noise_mode,
               **fields, files=files)
    write_text_atomic(inside(out, out / f"{name}.json"), json.dumps(rec, indent=1) + "\n")
    return files + [f"{name}.json"]


def _trunc_fields(run: Run, kw: Dict) -> Dict:
    names = run.class_names
    return dict(cls=None if kw["cls"] is None else names[kw["cls"]], psi=kw["psi"], cutoff=kw["cutoff"],
                centre=kw["centre"])


def plan_seeds(run: Run, a) -> Writer:
    """Validate and map the seeds (at most controls.MAX_SEEDS); the writer renders and writes
    seed%04d.png a chunk at a time (memory does not grow with the seeds), the grid of the
    first GRID_MAX seeds and seeds_ws.npz."""
    seeds = controls.parse_seeds(a.seeds)
    kw = _truncation(run, a)
    ws = controls.ws_for(run, seeds, **kw)
    pre = _prefix(run, kw["cls"])

    def write(out: pathlib.Path) -> List[str]:
        files = [f"{pre}seed{s:04d}.png" for s in seeds]
        _write_each(out, run, ws, a, seeds, files, f"{pre}seeds_grid.png")
        np.savez(inside(out, out / f"{pre}seeds_ws.npz"), w=ws, seeds=np.asarray(seeds, np.int64))
        files += [f"{pre}seeds_grid.png", f"{pre}seeds_ws.npz"]
        return _record(out, f"{pre}seeds", run, a, files, seeds=seeds, **_trunc_fields(run, kw))
    return write


def plan_mix(run: Run, a) -> Writer:
    """Validate rows, cols and layers and mix; the writer renders the bordered grid mix.png."""
    rows, cols = controls.parse_seeds(a.rows, "--rows"), controls.parse_seeds(a.cols, "--cols")
    num_ws = run.model.num_ws
    layers = controls.parse_layers(a.layers, num_ws) if a.layers else controls.default_layers(num_ws)
    kw = _truncation(run, a)
    row_ws, col_ws, mixed = controls.style_mix(run, rows, cols, layers, **kw)   # at most MAX_FRAMES cells
    _check_picture(run, (len(rows) + 1) * (len(cols) + 1), "--rows x --cols")
    pre = _prefix(run, kw["cls"])

    def write(out: pathlib.Path) -> List[str]:
        r, c = len(rows), len(cols)
        ws = np.concatenate([row_ws, col_ws, mixed.reshape(r * c, *mixed.shape[2:])])
        imgs = _render(run, ws, a, rows + cols + [s for s in rows for _ in cols])
        row_img, col_img, cells = imgs[:r], imgs[r:r + c], imgs[r + c:].reshape(r, c, *imgs.shape[1:])
        blank = np.full_like(imgs[:1], 255)
        grid = [np.concatenate([blank, col_img])] + [np.concatenate([row_img[i:i + 1], cells[i]])
                                                      for i in range(r)]
        labels = [f"cols {a.cols}"] + [f"seed {s}" for s in rows]
        save_grid(np.concatenate(grid), inside(out, out / f"{pre}mix.png"), cols=c + 1, row_labels=labels)
        return _record(out, f"{pre}mix", run, a, [f"{pre}mix.png"], rows=rows, cols=cols, layers=layers,
                       **_trunc_fields(run, kw))
    return write


def _save_gif(path: pathlib.Path, imgs: np.ndarray, fps: float) -> None:
    """uint8 frames [N, H, W, C] -> a looping GIF, upscaled (nearest) to >= GIF_MIN_SIZE px."""
    scale = max(1, -(-GIF_MIN_SIZE // imgs.shape[1]))
    frames = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in imgs]
    frames = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
    tmp = path.with_name(path.stem + ".tmp.gif")
    frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)), loop=0)
    tmp.replace(path)


def plan_interp(run: Run, a) -> Writer:
    """Validate and interpolate; the writer renders the strip interp.png and interp.gif."""
    seeds = controls.parse_seeds(a.seeds)
    if not a.fps > 0:
        raise ConfigError(f"--fps {a.fps}: give a positive frame rate")
    kw = _truncation(run, a)
    ws = controls.interpolate(run, seeds, a.steps, a.space, **kw)      # at most MAX_FRAMES frames
    _check_picture(run, len(ws), f"--steps {a.steps} with {len(seeds)} seeds")
    pre = _prefix(run, kw["cls"])

    def write(out: pathlib.Path) -> List[str]:
        imgs = _render(run, ws, a, [seeds[0]] * len(ws))    # one noise along the path: no flicker
        rows = [imgs[i * a.steps:(i + 1) * a.steps + 1] for i in range(len(seeds) - 1)]
        labels = [f"{x} -> {y}" for x, y in zip(seeds, seeds[1:])]
        save_grid(np.concatenate(rows), inside(out, out / f"{pre}interp.png"), cols=a.steps + 1,
                  row_labels=labels)
        _save_gif(inside(out, out / f"{pre}interp.gif"), imgs, a.fps)
        return _record(out, f"{pre}interp", run, a, [f"{pre}interp.png", f"{pre}interp.gif"], seeds=seeds,
                       steps=a.steps, space=a.space, frames=len(ws), fps=a.fps, **_trunc_fields(run, kw))
    return write


def plan_w(run: Run, a) -> Writer:
    """Validate the projected w file; the writer renders projected_%04d.png and a grid."""
    ws = controls.load_projected_w(a.projected_w, run)

    def write(out: pathlib.Path) -> List[str]:
        files = [f"projected_{i:04d}.png" for i in range(len(ws))]
        _write_each(out, run, ws, a, None, files, "projected_grid.png")
        return _record(out, "w", run, a, files + ["projected_grid.png"],
                       projected_w=str(pathlib.Path(a.projected_w).absolute()), count=len(ws))
    return write


PLANS = dict(seeds=plan_seeds, mix=plan_mix, interp=plan_interp, w=plan_w)


def make_images(a) -> List[str]:
    """Run one mode of parsed arguments `a`: validate everything, then claim --out and write.
    Returns the paths written (relative to --out)."""
    out = check_output(a.out, OUTPUT_KIND)
    if a.noise_mode not in controls.NOISE_MODES:
        raise ConfigError(f"--noise_mode {a.noise_mode!r}: choose {', '.join(controls.NOISE_MODES)}")
    run = controls.open_stylegan2(a.run, a.which)
    write = PLANS[a.mode](run, a)
    out = claim_output(out, OUTPUT_KIND)
    files = write(out)
    shown = files if len(files) <= 6 else files[:2] + ["..."] + files[-3:]
    logger.info(f"images: {a.mode}: wrote {len(files)} files in {out}: {', '.join(shown)}")
    return files


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen images
    import runpy
    runpy.run_module("jaxgen.commands.images", run_name="__main__")
