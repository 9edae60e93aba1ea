"""Project image files into a run's generator and write what the projector found.

  python -m jaxgen project runs/acne --target face.png --steps 1000 --out runs/proj
  python -m jaxgen project runs/acne --targets faces/ --w_plus --out runs/projs

`project_files` is what the `project` command runs (jaxgen/commands/project.py reads its
flags); the optimisation is jaxgen/stylegan2/projector.py's `project_many`.

Outputs (one folder per target; with --targets DIR one sub-folder per image,
resumable: an image whose projected_w.npz exists is skipped):
  projected_w.npz  key `w` [1, num_ws, w_dim] float32 (NVIDIA's format) and the
                   optimised noise buffers under `noise/<block>.<conv>` [res, res];
                   `render_projected` redraws it (with the run's own buffers when
                   asked: losses.json's mse_run_noise says how much that changes)
  proj.png, target.png, progress.png (target, then reconstructions at ~8 steps
  from w_avg to the end), losses.json (per-step dist/pixel/noise_reg/loss, final
  pixel MSE, settings) and losses.png.
With --targets also summary.json (every image's MSEs) and reconstructions.png.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from jaxgen.data.folder import prepare_image
from jaxgen.errors import ConfigError, InputMissing
from jaxgen.metrics.inception import FIDInceptionV3, load_fid_inception_weights
from jaxgen.runs import Run, open_run
from jaxgen.stylegan2.projector import ProjectConfig, Projection, project_many, render
from jaxgen.utils.files import save_png_atomic, write_text_atomic
from jaxgen.utils.images import save_grid, to_uint8
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output

OUTPUT_KIND = "projection"
NPZ = "projected_w.npz"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
Jobs = List[Tuple[pathlib.Path, pathlib.Path]]   # [(image file, its output folder)]


# ---------------------------------------------------------------------------------------------
# projected_w.npz.

def save_projected(path, w: np.ndarray, noise: Dict[str, np.ndarray]) -> None:
    """projected_w.npz: `w` [1, num_ws, w_dim] float32 (NVIDIA's) + `noise/<name>` [H, W]."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.stem + ".tmp.npz")
    arrays = {f"noise/{k}": np.asarray(v, np.float32) for k, v in noise.items()}
    np.savez(tmp, w=np.asarray(w, np.float32).reshape((1,) + np.shape(w)[-2:]), **arrays)
    tmp.replace(path)


def load_projected(path) -> Tuple[np.ndarray, Optional[Dict[str, np.ndarray]]]:
    """(w [N, num_ws, w_dim], noise {name: [H, W]} or None) from a projected_w.npz (ours or NVIDIA's)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise InputMissing(f"{path} does not exist; give a projected_w.npz written by the projector")
    with np.load(p, allow_pickle=False) as z:
        if "w" not in z.files:
            raise ConfigError(f"{path} has no array 'w' (keys: {', '.join(z.files)}); not a projected_w.npz")
        noise = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("noise/")}
        return z["w"].astype(np.float32), noise or None


def render_projected(run: Run, path, own_noise: bool = False) -> np.ndarray:
    """The images [N, R, R, C] of a projected_w.npz: with its saved noise buffers (the
    projection's proj.png), or with the run's own (own_noise, or an NVIDIA npz that has none)."""
    w, noise = load_projected(path)
    if w.ndim != 3 or w.shape[1:] != (run.model.num_ws, run.model.w_dim):
        raise ConfigError(f"{path}: w has shape {w.shape}, this generator needs [N, {run.model.num_ws}, "
                          f"{run.model.w_dim}]; project with this run")
    return render(run, w, None if own_noise else noise)


# ---------------------------------------------------------------------------------------------
# One projection's files.

def plot_losses(losses: Dict[str, np.ndarray], path) -> None:
    """losses.png: dist, pixel MSE and the noise regulariser per step (log scale)."""
    from matplotlib.figure import Figure  # heavy optional dependency: only when plotting
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    for name in ("dist", "pixel", "noise_reg"):
        ax.plot(np.arange(1, len(losses[name]) + 1), np.maximum(losses[name], 1e-12), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def _rounded(a) -> List[float]:
    return [float(f"{x:.6g}") for x in np.asarray(a, np.float64)]


def write_projection(out: pathlib.Path, run: Run, p: Projection, cfg: ProjectConfig,
                     source: str = "") -> Dict[str, Any]:
    """Write one image's projection (p from `project`, no image axis) into the existing folder
    `out`: target.png, proj.png, progress.png, losses.json/.png, then projected_w.npz (last: its
    presence marks the image done). Returns losses.json's summary (without the per-step lists)."""
    proj = render(run, p.w, p.noise)[0]
    own = render(run, p.w)[0]
    save_png_atomic(out / "target.png", to_uint8(p.targets))
    save_png_atomic(out / "proj.png", to_uint8(proj))
    save_grid(np.concatenate([p.targets[None], p.snapshots]), out / "progress.png", cols=len(p.snapshots) + 1)
    summary = dict(source=source, steps=cfg.steps, w_plus=cfg.w_plus, features=list(p.features),
                   mse=float(np.mean(np.square(proj - p.targets))),
                   start_mse=float(np.mean(np.square(p.snapshots[0] - p.targets))),
                   mse_run_noise=float(np.mean(np.square(own - p.targets))),
                   final_dist=float(p.losses["dist"][-1]), snapshot_steps=list(p.snapshot_steps),
                   settings=dataclasses.asdict(cfg))
    data = dict(summary, losses={k: _rounded(v) for k, v in p.losses.items()})
    write_text_atomic(out / "losses.json", json.dumps(data, indent=1) + "\n")
    plot_losses(p.losses, out / "losses.png")
    save_projected(out / NPZ, p.w, p.noise)
    return summary


# ---------------------------------------------------------------------------------------------
# The command's inputs: target files, the class, the Inception.

def _check_image(path: pathlib.Path) -> None:
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - reading the header is the check
    except Exception as e:  # noqa: BLE001 - any decoder failure: not an image
        raise ConfigError(f"{path} is not a readable image ({type(e).__name__}); give a PNG or JPEG file") from e


def target_jobs(target: str, targets: str, out: pathlib.Path) -> Jobs:
    """[(image, its output folder)] for one image file `target` (into `out`) or every image of the
    folder `targets` (into out/<image stem>), every image checked readable."""
    if bool(target) == bool(targets):
        raise ConfigError("give --target IMAGE or --targets FOLDER (exactly one of them)")
    if target:
        files = [pathlib.Path(target)]
        if not files[0].is_file():
            raise InputMissing(f"--target {target} does not exist; give an image file")
    else:
        folder = pathlib.Path(targets)
        if not folder.is_dir():
            raise InputMissing(f"--targets {targets} is not a folder; give a folder of images")
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"--targets {folder} holds no images ({' '.join(IMAGE_SUFFIXES)})")
        stems = [f.stem for f in files]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise ConfigError(f"--targets {folder}: several images are named {dup[0]}.*; rename them "
                              "(each gets the output folder of its name)")
    for f in files:
        _check_image(f)
    return [(f, out if target else out / f.stem) for f in files]


def class_index(run: Run, name: str) -> Optional[int]:
    """The index of class `name` ('' for none) in the run's classes; None for an unconditional run."""
    if not run.model.c_dim:
        if name:
            raise ConfigError(f"--class {name}: {run.path} is unconditional; drop --class")
        return None
    if name not in run.class_names:
        raise ConfigError(f"--class {name or '(none)'}: {run.path} is conditional; choose one of "
                          f"{', '.join(run.class_names)}")
    return run.class_names.index(name)


def load_target(path: pathlib.Path, run: Run) -> np.ndarray:
    """uint8 [R, R, C] of the image file, centre-cropped and resized when it has another size."""
    r, ch = run.resolution, run.channels
    try:
        with Image.open(path) as im:
            im.load()
            if im.size != (r, r):
                logger.info(f"{path.name}: {im.size[0]}x{im.size[1]} -> centre-cropped, resized to {r}x{r}")
            return prepare_image(im, r, ch)
    except OSError as e:
        raise ConfigError(f"{path} could not be decoded ({e}); give a PNG or JPEG file") from e


def load_inception(cfg: ProjectConfig, weights: str) -> Optional[Tuple[Any, Any]]:
    """project_many's `inception`: (the FID Inception at cfg.inception_size, its variables) read
    from the .pth `weights`; None when cfg gives it no weight or no file is named (project_many
    then refuses a weight > 0 without weights)."""
    if cfg.inception_weight <= 0 or not weights:
        return None
    if not pathlib.Path(weights).is_file():
        raise InputMissing(f"--inception_weights {weights} does not exist; give the "
                           "pt_inception-2015-12-05-6726825d.pth file")
    return FIDInceptionV3(input_size=cfg.inception_size), load_fid_inception_weights(weights)


# ---------------------------------------------------------------------------------------------
# The command's work.

def write_summary(out: pathlib.Path, jobs: Sequence[Tuple[pathlib.Path, pathlib.Path]]) -> None:
    """summary.json (every projected image's MSEs) and reconstructions.png (target | proj pairs)."""
    rows, pairs = {}, []
    for src, dst in jobs:
        if (dst / NPZ).is_file():
            s = json.loads((dst / "losses.json").read_text())
            rows[src.name] = {k: s[k] for k in ("mse", "start_mse", "mse_run_noise", "final_dist")}
            if len(pairs) < 64:
                pairs += [np.asarray(Image.open(dst / n)) for n in ("target.png", "proj.png")]
    write_text_atomic(out / "summary.json", json.dumps(rows, indent=1) + "\n")
    if pairs:
        stack = np.stack([p[..., None] if p.ndim == 2 else p for p in pairs])
        save_grid(stack, out / "reconstructions.png", cols=min(8, len(stack)))


def _project_chunk(run: Run, chunk: Sequence[Tuple[int, pathlib.Path, pathlib.Path]], cfg: ProjectConfig,
                   label: Optional[int], inception) -> None:
    """Project the images of chunk [(job index, image, output folder)] side by side; write each."""
    images = np.stack([load_target(src, run) for _, src, _ in chunk])
    res = project_many(run, images, cfg, None if label is None else [label] * len(chunk),
                       inception, seed_index=[i for i, _, _ in chunk])
    for j, (_, src, dst) in enumerate(chunk):
        dst.mkdir(parents=True, exist_ok=True)
        summ = write_projection(dst, run, res.item(j), cfg, str(src))
        logger.info(f"{src.name}: pixel MSE {summ['start_mse']:.4g} at w_avg -> {summ['mse']:.4g} "
                    f"({'+'.join(summ['features'])}); wrote {dst / NPZ}")


def project_files(run_path: str, out: str, cfg: ProjectConfig, target: str = "", targets: str = "",
                  class_name: str = "", inception_weights: str = "", best: bool = False) -> pathlib.Path:
    """Project the image file `target`, or every image of the folder `targets`, into the
    generator of the run at `run_path` (its best-FID checkpoint with `best`), cfg.batch images
    at a time, and write each one's files into `out` (targets: out/<image stem>; images done by
    an earlier call are skipped); with `targets` also summary.json and reconstructions.png.
    `out`, the images and `class_name` (conditional runs) are checked before anything is
    written. Returns the output folder."""
    out_dir = check_output(out, OUTPUT_KIND)
    jobs = target_jobs(target, targets, out_dir)
    run = open_run(run_path, "best" if best else "auto", kinds=("stylegan2",))
    label = class_index(run, class_name)
    out_dir = claim_output(out_dir, OUTPUT_KIND)
    todo = [(i, src, dst) for i, (src, dst) in enumerate(jobs) if not (dst / NPZ).is_file()]
    if len(todo) < len(jobs):
        logger.info(f"{len(jobs) - len(todo)} of {len(jobs)} images already projected in {out_dir}: skipped")
    inception = load_inception(cfg, inception_weights) if todo else None
    for s in range(0, len(todo), cfg.batch):
        _project_chunk(run, todo[s:s + cfg.batch], cfg, label, inception)
    if targets:
        write_summary(out_dir, jobs)
    return out_dir
