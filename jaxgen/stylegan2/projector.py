"""Project a real image into a StyleGAN2 generator's latent space (w or w+), as NVIDIA does.

  python -m jaxgen.stylegan2.projector runs/acne --target face.png --steps 1000 --out runs/proj
  python -m jaxgen.stylegan2.projector runs/acne --targets faces/ --w_plus --out runs/projs

What: find the w (one w_dim vector repeated over all num_ws layers, or with --w_plus
one per layer) and the per-pixel noise buffers with which G's synthesis network
(noise_mode='const') redraws the target. The optimisation follows NVIDIA's
projector.py (stylegan2-ada-pytorch): w starts at the mean of 10000 mapped z,
w_std is their spread; Adam (0.9, 0.999) on w and on the noise buffers (drawn
N(0, 1)) with the learning rate 0.1 ramped up over the first 5% of the steps and
down (half-cosine) over the last 25%; w gets Gaussian noise of scale
w_std * 0.05 * max(0, 1 - t / 0.75)^2 (t = step / steps) so early steps explore;
the noise buffers pay NVIDIA's multiscale autocorrelation regulariser (weight
1e5: squared mean products with the 1-pixel shifted copy, on the buffer and its
2x2-average pyramid down to 8 px) and are renormalised to zero mean and unit
variance after every step, so they cannot learn the image themselves.

The loss (why not NVIDIA's): NVIDIA compares LPIPS features of VGG16, which jaxgen
has no offline copy of. The perceptual term here is the LPIPS recipe (features
unit-normalised over channels at each pixel, squared differences summed over
channels, averaged over pixels, summed over layers) on the features that are at
hand: the run's own discriminator (its DiscriminatorBlock inputs after conv0 and
outputs, full to 1/2**k resolution, read through Flax's capture_intermediates so
discriminator.py is untouched): a network trained on this very domain that
always comes with a jaxgen run; and optionally the FID Inception (its stem
and Mixed_5d/6e stages) when its weights file is given. A pixel MSE term (images
in [-1, 1]) pins colours and fine detail that the coarse D features let slide.
Weights: --pixel_weight 1, --d_weight 1, --inception_weight (1 with weights, else 0);
a run without a discriminator (some .pkl) falls back to what is left.

Outputs (one folder per target; with --targets DIR one sub-folder per image,
resumable: an image whose projected_w.npz exists is skipped):
  projected_w.npz  key `w` [1, num_ws, w_dim] float32 (NVIDIA's format) and the
                   optimised noise buffers under `noise/<block>.<conv>` [res, res];
                   `render_projected` redraws it (with the run's own buffers when
                   asked: losses.json's mse_run_noise says how much that changes)
  proj.png, target.png, progress.png (target, then reconstructions at ~8 steps
  from w_avg to the end), losses.json (per-step dist/pixel/noise_reg/loss, final
  pixel MSE, settings) and losses.png.

Privacy: `projection_membership(run, train, holdout)` projects both sets and
scores each image by its reconstruction MSE; a generator that reconstructs its
training faces much better than held-out faces of the same kind has memorised
them: the ROC AUC of "train reconstructs better" is 0.5 without leak, 1 for full
leak. It optimises and scores pixels only by default: D saw the training images
too, and neither its features nor its opinion should make them look memorised
by G. `evaluate.py --datasheet --checkpoint RUN --projection_steps N` adds it to
the datasheet (64 training and 64 holdout images).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.traverse_util import flatten_dict, unflatten_dict
from PIL import Image

from jaxgen.cli import run_main, use_compile_cache
from jaxgen.data.folder import prepare_image, to_float
from jaxgen.errors import ConfigError, InputMissing
from jaxgen.metrics.inception import FIDInceptionV3, load_fid_inception_weights
from jaxgen.metrics.privacy import roc_auc
from jaxgen.runs import Run, open_run
from jaxgen.stylegan2.discriminator import DiscriminatorBlock
from jaxgen.utils.files import save_png_atomic, write_text_atomic
from jaxgen.utils.images import save_grid, to_uint8
from jaxgen.utils.labels import one_hot_labels
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.utils.progress import Progress
from jaxgen.utils.xla_options import jit_train_step

OUTPUT_KIND = "projection"
NPZ = "projected_w.npz"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# Upper bounds (NVIDIA's projector: 1000 steps, 10000 w_avg samples, 299 px Inception): every
# step keeps its losses, the samples' z and w are held at once, the target is resized to the size.
MAX_STEPS = 100_000
MAX_W_AVG_SAMPLES = 100_000
MAX_INCEPTION_SIZE = 1024
INCEPTION_STAGES = ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e")


@dataclasses.dataclass(frozen=True)
class ProjectConfig:
    """Projection settings; the defaults are NVIDIA's projector.py (loss weights are ours).

    lr, lr_rampdown, lr_rampup: initial_learning_rate and its ramps (fractions of `steps`);
    w_noise, w_noise_ramp: initial_noise_factor and noise_ramp_length; noise_reg:
    regularize_noise_weight. pixel/d/inception_weight: the loss terms (module doc).
    batch: targets optimised side by side (vmapped; independent of each other).
    """
    steps: int = 1000
    w_plus: bool = False
    lr: float = 0.1
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    w_noise: float = 0.05
    w_noise_ramp: float = 0.75
    noise_reg: float = 1e5
    pixel_weight: float = 1.0
    d_weight: float = 1.0
    inception_weight: float = 0.0
    inception_size: int = 299
    w_avg_samples: int = 10000
    snapshots: int = 8
    seed: int = 0
    batch: int = 8

    def check(self) -> "ProjectConfig":
        """self, or a ConfigError naming the first setting that cannot work."""
        bad = [(f"--steps {self.steps}", self.steps < 1), (f"--batch {self.batch}", self.batch < 1),
               (f"lr_rampdown {self.lr_rampdown}", self.lr_rampdown <= 0),
               (f"lr_rampup {self.lr_rampup}", self.lr_rampup < 0),
               (f"w_noise_ramp {self.w_noise_ramp}", self.w_noise_ramp <= 0),
               (f"--w_avg_samples {self.w_avg_samples}", self.w_avg_samples < 2),
               (f"--inception_size {self.inception_size}", self.inception_size < 75)]
        weights = (self.pixel_weight, self.d_weight, self.inception_weight, self.noise_reg)
        bad.append(("a loss weight", min(weights) < 0 or max(weights[:3]) <= 0))
        for what, is_bad in bad:
            if is_bad:
                raise ConfigError(f"projection setting {what} cannot work: steps, batch and ramps must be "
                                  "positive (rampup >= 0), weights >= 0 with one loss weight > 0")
        for flag, value, top in (("--steps", self.steps, MAX_STEPS),
                                 ("--w_avg_samples", self.w_avg_samples, MAX_W_AVG_SAMPLES),
                                 ("--inception_size", self.inception_size, MAX_INCEPTION_SIZE)):
            if value > top:
                raise ConfigError(f"projection setting {flag} {value} is over {top:,}, more than memory holds "
                                  f"or any use needs; give at most {top:,} (NVIDIA's projector: 1000 steps)")
        return self


@dataclasses.dataclass
class Projection:
    """What `project_many` found, arrays with a leading image axis N (none for `project`).

    w [N, num_ws, w_dim] (w mode: the same row repeated); noise {'b16.conv0': [N, 16, 16], ...};
    losses {'dist', 'pixel', 'noise_reg', 'loss': [N, steps]} (dist = the weighted image
    terms; the step's w carries its exploration noise); snapshots [N, S, R, R, C] rendered
    after `snapshot_steps` (0 = the start, w_avg); images [N, R, R, C] the final
    reconstruction and mse [N] its pixel MSE against targets [N, R, R, C] (all in [-1, 1]).
    """
    w: np.ndarray
    noise: Dict[str, np.ndarray]
    losses: Dict[str, np.ndarray]
    snapshots: np.ndarray
    snapshot_steps: List[int]
    images: np.ndarray
    mse: np.ndarray
    targets: np.ndarray
    features: Tuple[str, ...]

    def __iter__(self):
        """Unpacks as (w, noise, losses, snapshots): `w, noise, losses, snaps = project(...)`."""
        return iter((self.w, self.noise, self.losses, self.snapshots))

    def item(self, i: int) -> "Projection":
        """Image i alone (no leading axis)."""
        pick = lambda d: {k: v[i] for k, v in d.items()}  # noqa: E731
        return Projection(self.w[i], pick(self.noise), pick(self.losses), self.snapshots[i],
                          list(self.snapshot_steps), self.images[i], self.mse[i], self.targets[i], self.features)


# ---------------------------------------------------------------------------------------------
# Pieces of the objective (pure; shapes in the docstrings).

def lr_at(t, hp) -> jnp.ndarray:
    """NVIDIA's learning rate at t = step / steps: hp lr x cosine ramp-down x linear ramp-up."""
    down = jnp.minimum(1.0, (1.0 - t) / hp["lr_rampdown"])
    down = 0.5 - 0.5 * jnp.cos(down * jnp.pi)
    up = jnp.where(hp["lr_rampup"] > 0, jnp.minimum(1.0, t / jnp.maximum(hp["lr_rampup"], 1e-12)), 1.0)
    return hp["lr"] * down * up


def w_noise_scale(t, w_std, hp) -> jnp.ndarray:
    """Std of the exploration noise added to w at t = step / steps (NVIDIA's quadratic ramp)."""
    return w_std * hp["w_noise"] * jnp.square(jnp.maximum(0.0, 1.0 - t / hp["w_noise_ramp"]))


def noise_regularizer(noises: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """NVIDIA's noise regulariser: for every buffer [H, W] and its 2x2-average pyramid down to
    8 px, the squared mean product with itself shifted by one pixel along x and along y.
    ~0 for white noise (~1/H^2 a term), large (~1 a term) for a smooth unit-variance field."""
    reg = jnp.float32(0.0)
    for n in noises:
        while True:
            reg += jnp.mean(n * jnp.roll(n, 1, axis=1)) ** 2 + jnp.mean(n * jnp.roll(n, 1, axis=0)) ** 2
            if n.shape[0] <= 8:
                break
            n = n.reshape(n.shape[0] // 2, 2, n.shape[1] // 2, 2).mean(axis=(1, 3))
    return reg


def normalize_noise(n: jnp.ndarray) -> jnp.ndarray:
    """A noise buffer moved to zero mean and unit variance (what NVIDIA does after each step)."""
    n = n - jnp.mean(n)
    return n * jax.lax.rsqrt(jnp.mean(jnp.square(n)))


def _unit(f: jnp.ndarray) -> jnp.ndarray:
    """[..., C] features unit-normalised over channels (LPIPS's normalize_tensor)."""
    f = f.astype(jnp.float32)
    return f / jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True) + 1e-10)


def feature_distance(a: Sequence[jnp.ndarray], b: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """LPIPS-style distance of two lists of unit features [1, H, W, C]: per layer the squared
    difference summed over channels and averaged over pixels, summed over layers."""
    return sum(jnp.mean(jnp.sum(jnp.square(x - y), axis=-1)) for x, y in zip(a, b))


def _is_d_feature(module, method_name: str) -> bool:
    """capture_intermediates filter: D's blocks and their conv0 (the full-resolution features)."""
    if isinstance(module, DiscriminatorBlock):
        return method_name == "__call__"
    return module.name == "conv0" and isinstance(module.parent, DiscriminatorBlock)


def d_features(D, d_vars, img: jnp.ndarray, c: jnp.ndarray) -> List[jnp.ndarray]:
    """The discriminator's unit features of img [1, R, R, C] (c [1, c_dim]): each block's conv0
    output [1, r, r, tmp] and block output [1, r/2, r/2, out], finest first."""
    _, state = D.apply(d_vars, img, c, capture_intermediates=_is_d_feature, mutable=["intermediates"])
    out = []
    for res in D.block_resolutions:
        block = state["intermediates"][f"b{res}"]
        out += [_unit(block["conv0"]["__call__"][0]), _unit(block["__call__"][0][0])]
    return out


def inception_features(net: FIDInceptionV3, variables, img: jnp.ndarray) -> List[jnp.ndarray]:
    """The FID Inception's unit features (INCEPTION_STAGES) of img [1, R, R, C] in [-1, 1]."""
    x = jnp.clip((img + 1.0) * 0.5, 0.0, 1.0)
    x = jnp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    _, state = net.apply(variables, x, mutable=["intermediates"])
    stages = state["intermediates"]["stages"][0]
    return [_unit(stages[s]) for s in INCEPTION_STAGES]


# ---------------------------------------------------------------------------------------------
# Noise buffers of G's variables.

def noise_buffers(g_vars) -> Dict[str, jnp.ndarray]:
    """G's const noise buffers {'b16.conv0': [16, 16], ...} (empty for use_noise=False)."""
    flat = flatten_dict(dict(g_vars.get("buffers", {})))
    return {f"{k[1]}.{k[2]}": v for k, v in flat.items() if k[0] == "synthesis" and k[-1] == "noise_const"}


def with_noise(g_vars, noise: Dict[str, jnp.ndarray]):
    """g_vars with its const noise buffers replaced by `noise` (keys as noise_buffers')."""
    flat = flatten_dict(dict(g_vars["buffers"]))
    for name, v in noise.items():
        block, conv = name.split(".")
        flat[("synthesis", block, conv, "noise_const")] = v
    return dict(g_vars, buffers=unflatten_dict(flat))


@functools.lru_cache(maxsize=8)
def _mapper(G):
    """Jitted z [S, z_dim], c [S, c_dim] -> w [S, w_dim] (the first of the num_ws copies)."""
    return jax.jit(lambda v, z, c: G.apply(v, z, c, method=G.map)[:, 0])


def w_stats(run: Run, label: Optional[int] = None, samples: int = 10000, seed: int = 123,
            chunk: int = 4096) -> Tuple[np.ndarray, float]:
    """(w_avg [w_dim], w_std) of `samples` mapped z (class `label` for conditional G), as NVIDIA:
    w_std = sqrt(sum |w - w_avg|^2 / samples), a scalar over all dimensions."""
    G = run.model
    z = np.random.default_rng(seed).standard_normal([samples, G.z_dim]).astype(np.float32)
    c = np.zeros([chunk, G.c_dim], np.float32)
    if G.c_dim:
        c[:, label] = 1.0
    ws = []
    for s in range(0, samples, chunk):
        zc = np.zeros([chunk, G.z_dim], np.float32)
        zc[:len(z[s:s + chunk])] = z[s:s + chunk]
        ws.append(np.asarray(_mapper(G)(run.variables, zc, c))[:len(z[s:s + chunk])])
    w = np.concatenate(ws).astype(np.float64)
    avg = w.mean(0)
    return avg.astype(np.float32), float(np.sqrt(np.sum(np.square(w - avg)) / samples))


@functools.lru_cache(maxsize=32)
def _class_stats(run: Run, label: int, samples: int) -> Tuple[np.ndarray, float]:
    """w_stats memoised per (run, class, samples): a --targets folder maps its z only once."""
    return w_stats(run, label if run.model.c_dim else None, samples)


# ---------------------------------------------------------------------------------------------
# The jitted programs: init, one optimisation step and render, vmapped over a batch of targets.

@dataclasses.dataclass(frozen=True)
class _Programs:
    init: Callable
    step: Callable


def _tied(w: jnp.ndarray, tie) -> jnp.ndarray:
    """w [num_ws, w_dim] as the synthesis sees it: row 0 repeated in w mode (tie), as is in w+.
    (In w mode only row 0 is optimised: the other rows get no gradient and stay at w_avg.)"""
    return jnp.where(tie, jnp.broadcast_to(w[0], w.shape), w)


@functools.lru_cache(maxsize=8)
def _programs(G, D, inception) -> _Programs:
    """init and step for generator G and the feature nets (None = not used). Hyperparameters,
    loss weights, the w/w+ switch and the step index are traced arguments: one compilation
    serves every setting of a (G, D, inception, batch) combination."""
    adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)

    def feats(nets, img, c):
        out = {}
        if D is not None:
            out["d"] = d_features(D, nets["d"], img[None], c[None])
        if inception is not None:
            out["inception"] = inception_features(inception, nets["inception"], img[None])
        return out

    def synth(g_vars, ws, noise):
        return G.apply(with_noise(g_vars, noise), ws[None], noise_mode="const", method=G.synthesize)[0]

    def init(g_vars, nets, target, c, w_avg, key):
        shapes = sorted(noise_buffers(g_vars).items())
        noise = {k: jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 0), i), v.shape, jnp.float32)
                 for i, (k, v) in enumerate(shapes)}
        w = jnp.broadcast_to(w_avg, (G.num_ws, w_avg.shape[0]))
        return dict(w=w, noise=noise, adam=adam.init((w, noise)), key=key), feats(nets, target, c)

    def loss(opt, w_noise, target, tfeats, c, tie, g_vars, nets, hp):
        w, noise = opt
        img = synth(g_vars, _tied(w + w_noise, tie), noise)
        pixel = jnp.mean(jnp.square(img - target))
        dist = hp["pixel_weight"] * pixel
        f = feats(nets, img, c)
        for name in f:
            dist = dist + hp[f"{name}_weight"] * feature_distance(f[name], tfeats[name])
        reg = noise_regularizer(list(noise.values()))
        total = dist + hp["noise_reg"] * reg
        return total, dict(dist=dist, pixel=pixel, noise_reg=reg, loss=total)

    def step(state, target, tfeats, c, w_std, i, tie, g_vars, nets, hp):
        t = i / hp["steps"]
        key = jax.random.fold_in(jax.random.fold_in(state["key"], 1), i)
        w_noise = jax.random.normal(key, state["w"].shape) * w_noise_scale(t, w_std, hp)
        grads, m = jax.grad(loss, has_aux=True)((state["w"], state["noise"]), w_noise, target, tfeats, c,
                                                 tie, g_vars, nets, hp)
        updates, adam_state = adam.update(grads, state["adam"])
        lr = lr_at(t, hp)
        w = state["w"] - lr * updates[0]
        noise = {k: normalize_noise(v - lr * updates[1][k]) for k, v in state["noise"].items()}
        return dict(w=w, noise=noise, adam=adam_state, key=state["key"]), m

    return _Programs(init=jax.jit(jax.vmap(init, in_axes=(None, None, 0, 0, 0, 0))),
                     step=jit_train_step(jax.vmap(step, in_axes=(0, 0, 0, 0, 0) + (None,) * 5)))


@functools.lru_cache(maxsize=8)
def _renderer(G):
    """Jitted, vmapped (g_vars, ws [N, num_ws, w_dim], noise {name: [N, H, W]}) -> [N, R, R, C]."""
    def one(g_vars, ws, noise):
        return G.apply(with_noise(g_vars, noise), ws[None], noise_mode="const", method=G.synthesize)[0]
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def render(run: Run, w, noise: Optional[Dict[str, Any]] = None) -> np.ndarray:
    """Images [N, R, R, C] in [-1, 1] of ws [N, num_ws, w_dim] (or one [num_ws, w_dim]) with the
    noise buffers `noise` ({name: [H, W]} shared, or [N, H, W] per image; None = the run's own)."""
    w = np.asarray(w, np.float32)
    w = w[None] if w.ndim == 2 else w
    own = noise_buffers(run.variables)
    noise = own if noise is None else noise
    if sorted(noise) != sorted(own):
        raise ConfigError(f"noise buffers {sorted(noise)} do not match the run's {sorted(own)}; "
                          "was the projection made with another generator?")
    per_image = {k: np.broadcast_to(np.asarray(v, np.float32), (len(w),) + own[k].shape) for k, v in noise.items()}
    args = jax.device_put((w, per_image), jax.devices()[0])     # committed, as the projection's own
    return np.asarray(_renderer(run.model)(run.variables, *args))


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
# Driver.

def snapshot_steps(steps: int, count: int) -> List[int]:
    """~count step counts from 0 (the start, w_avg) to `steps`, evenly spaced, for progress.png."""
    return sorted({int(round(s)) for s in np.linspace(0, steps, max(2, count))})


def fit_targets(run: Run, images) -> np.ndarray:
    """Targets float32 [N, R, R, C] in [-1, 1] for this run from images [N, H, W, C'] (uint8
    0..255, or float in [-1, 1]); other sizes/channels are centre-cropped and resized (LANCZOS)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[0] == 0 or x.shape[-1] not in (1, 3, 4):
        raise ConfigError(f"targets must be images [N, H, W, C] with C in 1, 3, got shape {x.shape}")
    r, ch = run.resolution, run.channels
    if x.shape[1:] == (r, r, ch):
        return to_float(x) if x.dtype == np.uint8 else x.astype(np.float32)
    u8 = x if x.dtype == np.uint8 else to_uint8(x)
    pil = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in u8]
    return to_float(np.stack([prepare_image(im, r, ch) for im in pil]))


def _labels(run: Run, labels, n: int) -> np.ndarray:
    """Class ints [n] for the mapping (zeros for an unconditional G); ConfigError if missing."""
    k = run.model.c_dim
    if not k:
        return np.zeros(n, np.int32)
    if labels is None:
        raise ConfigError(f"{run.path} is conditional ({', '.join(run.class_names)}): give the class "
                          "of each target (--class NAME)")
    labels = np.broadcast_to(np.asarray(labels, np.int32), (n,))
    if labels.min() < 0 or labels.max() >= k:
        raise ConfigError(f"class index out of range 0..{k - 1}: {sorted(set(labels.tolist()))}")
    return labels


def feature_nets(run: Run, cfg: ProjectConfig, inception_weights: str = "",
                 log: Callable[[str], None] = print) -> Tuple[Any, Any, Dict[str, Any], Tuple[str, ...]]:
    """(D or None, Inception or None, their variables {'d', 'inception'}, names of the loss terms)."""
    D = net = None
    nets: Dict[str, Any] = {}
    if cfg.d_weight > 0:
        if run.discriminator is not None and run.d_variables is not None:
            D, nets["d"] = run.discriminator, run.d_variables
        else:
            log(f"note: {run.path} has no discriminator; the loss uses pixels (and Inception if given)")
    if cfg.inception_weight > 0:
        if not inception_weights:
            raise ConfigError("--inception_weight > 0 needs --inception_weights PATH (the FID Inception .pth)")
        if not pathlib.Path(inception_weights).is_file():
            raise InputMissing(f"--inception_weights {inception_weights} does not exist; give the "
                               "pt_inception-2015-12-05-6726825d.pth file")
        net = FIDInceptionV3(input_size=cfg.inception_size)
        nets["inception"] = load_fid_inception_weights(inception_weights)
    names = ("pixel",) * (cfg.pixel_weight > 0) + ("discriminator",) * (D is not None) + \
        ("inception",) * (net is not None)
    if not names:
        raise ConfigError(f"no loss term left: {run.path} has no discriminator; set --pixel_weight > 0")
    return D, net, nets, names


def _hyper(cfg: ProjectConfig) -> Dict[str, jnp.ndarray]:
    names = ("lr", "lr_rampdown", "lr_rampup", "w_noise", "w_noise_ramp", "noise_reg", "pixel_weight",
             "steps")
    hp = {k: jnp.float32(getattr(cfg, k)) for k in names}
    hp.update(d_weight=jnp.float32(cfg.d_weight), inception_weight=jnp.float32(cfg.inception_weight))
    return hp


def _run_batch(progs: _Programs, run: Run, nets, hp, batch: Dict[str, np.ndarray], cfg: ProjectConfig,
               progress: Progress, latest: list, real: int) -> Dict[str, Any]:
    """Optimise one padded batch of targets; numpy results with the batch axis first."""
    g_vars, tie = run.variables, jnp.bool_(not cfg.w_plus)
    draw = _renderer(run.model)
    tied = jax.vmap(_tied, in_axes=(0, None))
    snap_at = set(snapshot_steps(cfg.steps, cfg.snapshots))
    state, tfeats = progs.init(g_vars, nets, batch["target"], batch["c"], batch["w_avg"], batch["key"])
    # committed like the step's own outputs, so that its second call does not compile it again
    state, tfeats = jax.device_put((state, tfeats), jax.devices()[0])
    snaps = [draw(g_vars, tied(state["w"], tie), state["noise"])] if 0 in snap_at else []
    hist = []
    for i in range(cfg.steps):
        state, m = progs.step(state, batch["target"], tfeats, batch["c"], batch["w_std"], i, tie,
                              g_vars, nets, hp)
        hist.append(m)
        latest[:] = [m["dist"][:real]]
        if progress.done == 0:       # the rate and ETA count from the first compiled step on
            jax.block_until_ready(m)
            progress.t0 = progress.last = progress.clock()
        if i + 1 in snap_at:
            snaps.append(draw(g_vars, tied(state["w"], tie), state["noise"]))
        progress.update(real)
    w = tied(state["w"], tie)
    losses = {k: np.stack([np.asarray(h[k]) for h in hist], axis=1) for k in hist[0]}
    return dict(w=np.asarray(w), noise={k: np.asarray(v) for k, v in state["noise"].items()},
                losses=losses, snapshots=np.stack([np.asarray(s) for s in snaps], axis=1),
                images=np.asarray(draw(g_vars, w, state["noise"])))


def project_many(run: Run, targets, cfg: ProjectConfig = ProjectConfig(), labels=None,
                 inception_weights: str = "", log: Callable[[str], None] = print,
                 seed_index: Optional[Sequence[int]] = None) -> Projection:
    """Project every image of targets [N, H, W, C] (see fit_targets), cfg.batch at a time.

    labels: class ints [N] (or one int) for a conditional G. Image i draws its random noise
    buffers and w noise from (cfg.seed, seed_index[i]) (default i): the same image with the
    same index gives the same projection. Prints progress (image-steps, rate, ETA, mean dist)."""
    cfg = cfg.check()
    if run.kind != "stylegan2":
        raise ConfigError(f"{run.path} is a {run.kind} run; projection needs a StyleGAN2 generator")
    x = fit_targets(run, targets)
    n, k = len(x), run.model.c_dim
    lab = _labels(run, labels, n)
    D, net, nets, names = feature_nets(run, cfg, inception_weights, log)
    progs, hp = _programs(run.model, D, net), _hyper(cfg)
    stats = [_class_stats(run, int(c), cfg.w_avg_samples) for c in lab]
    per = dict(target=x, c=one_hot_labels(lab, k),
               w_avg=np.stack([s[0] for s in stats]), w_std=np.asarray([s[1] for s in stats], np.float32),
               key=jax.vmap(lambda i: jax.random.fold_in(jax.random.key(cfg.seed), i))(
                   jnp.asarray(np.arange(n) if seed_index is None else seed_index, jnp.int32)))
    latest: list = []
    progress = Progress(n * cfg.steps, "project", unit="steps",
                        log=lambda line: log(f"{line}  dist {float(np.mean(latest[0])):.4g}"))
    size, parts = min(cfg.batch, n), []
    for s in range(0, n, size):
        idx = np.minimum(np.arange(s, s + size), n - 1)      # the last batch is padded
        real = min(size, n - s)
        parts.append(jax.tree_util.tree_map(lambda a: a[:real], _run_batch(
            progs, run, nets, hp, {kk: v[idx] for kk, v in per.items()}, cfg, progress, latest, real)))
    out = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)
    mse = np.mean(np.square(out["images"] - x), axis=(1, 2, 3))
    return Projection(out["w"], out["noise"], out["losses"], out["snapshots"],
                      snapshot_steps(cfg.steps, cfg.snapshots), out["images"], mse, x, names)


def project(run: Run, target, steps: int = 1000, w_plus: bool = False, label: Optional[int] = None,
            cfg: Optional[ProjectConfig] = None, inception_weights: str = "",
            log: Callable[[str], None] = print) -> Projection:
    """Project one target [R, R, C] (float in [-1, 1] or uint8; other sizes are resized) into
    w (or w+): a Projection without the image axis: w [num_ws, w_dim], noise {name: [H, W]},
    losses {name: [steps]}, snapshots [S, R, R, C], image and MSE (see Projection)."""
    cfg = dataclasses.replace(cfg or ProjectConfig(), steps=int(steps), w_plus=bool(w_plus), batch=1)
    labels = None if label is None else [label]
    return project_many(run, np.asarray(target)[None], cfg, labels, inception_weights, log).item(0)


# ---------------------------------------------------------------------------------------------
# Privacy: does G reconstruct its training images better than held-out ones?

def projection_membership(run: Run, train_images, holdout_images, steps: int = 300, train_labels=None,
                          holdout_labels=None, cfg: Optional[ProjectConfig] = None, inception_weights: str = "",
                          log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Project both sets (images [N, H, W, C], see fit_targets) and score each image by its
    reconstruction's pixel MSE. Returns {'auc': P(a training image reconstructs better than a
    holdout one), ties 1/2 (0.5 = no leak, 1 = the training set is given away), 'train_mse' /
    'holdout_mse' per image, their medians, steps, w_plus, features}.

    The default cfg optimises pixels only (d_weight 0): the discriminator saw the training
    images too, and a loss in its features could reconstruct them better because D (which is
    not released) remembers them, not G; the Inception (trained elsewhere) may be added."""
    cfg = dataclasses.replace(cfg or ProjectConfig(d_weight=0.0), steps=int(steps))
    log(f"projection membership: {len(train_images)} training and {len(holdout_images)} holdout "
        f"images, {cfg.steps} steps each")
    tr = project_many(run, train_images, cfg, train_labels, inception_weights, log)
    ho = project_many(run, holdout_images, cfg, holdout_labels, inception_weights, log)
    return dict(auc=roc_auc(-tr.mse, -ho.mse), train_median_mse=float(np.median(tr.mse)),
                holdout_median_mse=float(np.median(ho.mse)), train_mse=tr.mse.tolist(),
                holdout_mse=ho.mse.tolist(), steps=cfg.steps, w_plus=cfg.w_plus, features=list(tr.features),
                score="pixel MSE of the projection (images in [-1, 1]); lower = reconstructs better")


def datasheet_membership(run: Run, train, holdout, steps: int, max_images: int = 64,
                         config: Optional[ProjectConfig] = None, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """projection_membership on up to `max_images` evenly spaced images of each ImageDataset
    (train: what G saw, holdout: what it never saw); a conditional run gets each image's class
    by name. The datasheet's 'projection membership' row (config: other ProjectConfig settings)."""
    def pick(ds):
        idx = np.unique(np.linspace(0, len(ds) - 1, min(max_images, len(ds))).round().astype(int))
        if not run.model.c_dim:
            return ds.images[idx], None
        names = [ds.class_names[j] for j in np.asarray(ds.labels)[idx]]
        missing = sorted(set(names) - set(run.class_names))
        if missing:
            raise ConfigError(f"projection: classes {missing} are not among {run.path}'s "
                              f"{list(run.class_names)}; give the folders the generator was trained on")
        return ds.images[idx], [run.class_names.index(n) for n in names]
    (tr, tl), (ho, hl) = pick(train), pick(holdout)
    out = projection_membership(run, tr, ho, steps, tl, hl, cfg=config, log=log)
    return dict(out, run=str(run.path), images=dict(train=len(tr), holdout=len(ho)))


# ---------------------------------------------------------------------------------------------
# Files.

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
# Command line.

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="StyleGAN2 training workdir, networks directory or NVIDIA .pkl")
    p.add_argument("--target", default="", help="one image to project (any size: centre-cropped, resized)")
    p.add_argument("--targets", default="", help="a folder of images: one sub-folder of --out each (resumable)")
    p.add_argument("--out", required=True, help="output folder: new, empty or an earlier projection's")
    p.add_argument("--class", dest="class_name", default="", help="the targets' class (conditional runs)")
    p.add_argument("--w_plus", action="store_true", help="one w per layer (w+) instead of one w")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=8, help="--targets: images optimised side by side")
    p.add_argument("--pixel_weight", type=float, default=1.0, help="pixel MSE term")
    p.add_argument("--d_weight", type=float, default=1.0, help="LPIPS-style term on D's features")
    p.add_argument("--inception_weights", default="", help="FID Inception .pth: adds its features")
    p.add_argument("--inception_weight", type=float, default=None, help="default 1 with --inception_weights")
    p.add_argument("--noise_reg", type=float, default=1e5, help="noise regulariser weight (NVIDIA's)")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (NVIDIA's)")
    p.add_argument("--w_avg_samples", type=int, default=10000, help="z mapped for w_avg and w_std")
    p.add_argument("--best", action="store_true", help="a workdir's best-FID checkpoint")
    return p


def _config(a: argparse.Namespace) -> ProjectConfig:
    inc = a.inception_weight if a.inception_weight is not None else float(bool(a.inception_weights))
    cfg = ProjectConfig(steps=a.steps, w_plus=a.w_plus, lr=a.lr, noise_reg=a.noise_reg, pixel_weight=a.pixel_weight,
                        d_weight=a.d_weight, inception_weight=inc, w_avg_samples=a.w_avg_samples, seed=a.seed,
                        batch=a.batch).check()
    if inc > 0 and not a.inception_weights:
        raise ConfigError("--inception_weight > 0 needs --inception_weights PATH (the FID Inception .pth)")
    if a.inception_weights and not pathlib.Path(a.inception_weights).is_file():
        raise InputMissing(f"--inception_weights {a.inception_weights} does not exist; give the FID Inception .pth")
    return cfg


def _check_image(path: pathlib.Path) -> None:
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - reading the header is the check
    except Exception as e:  # noqa: BLE001 - any decoder failure: not an image
        raise ConfigError(f"{path} is not a readable image ({type(e).__name__}); give a PNG or JPEG file") from e


def _target_jobs(a: argparse.Namespace, out: pathlib.Path) -> List[Tuple[pathlib.Path, pathlib.Path]]:
    """[(image, its output folder)] for --target or --targets, every image checked readable."""
    if bool(a.target) == bool(a.targets):
        raise ConfigError("give --target IMAGE or --targets FOLDER (exactly one of them)")
    if a.target:
        files = [pathlib.Path(a.target)]
        if not files[0].is_file():
            raise InputMissing(f"--target {a.target} does not exist; give an image file")
    else:
        folder = pathlib.Path(a.targets)
        if not folder.is_dir():
            raise InputMissing(f"--targets {a.targets} is not a folder; give a folder of images")
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
    return [(f, out if a.target else out / f.stem) for f in files]


def _class_index(run: Run, name: str) -> Optional[int]:
    if not run.model.c_dim:
        if name:
            raise ConfigError(f"--class {name}: {run.path} is unconditional; drop --class")
        return None
    if name not in run.class_names:
        raise ConfigError(f"--class {name or '(none)'}: {run.path} is conditional; choose one of "
                          f"{', '.join(run.class_names)}")
    return run.class_names.index(name)


def _load_target(path: pathlib.Path, run: Run) -> np.ndarray:
    """uint8 [R, R, C] of the image file, centre-cropped and resized when it has another size."""
    r, ch = run.resolution, run.channels
    try:
        with Image.open(path) as im:
            im.load()
            if im.size != (r, r):
                print(f"{path.name}: {im.size[0]}x{im.size[1]} -> centre-cropped, resized to {r}x{r}")
            return prepare_image(im, r, ch)
    except OSError as e:
        raise ConfigError(f"{path} could not be decoded ({e}); give a PNG or JPEG file") from e


def _write_summary(out: pathlib.Path, jobs: Sequence[Tuple[pathlib.Path, pathlib.Path]]) -> None:
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    use_compile_cache()
    a = _parser().parse_args(argv)
    cfg = _config(a)
    out = check_output(a.out, OUTPUT_KIND)
    jobs = _target_jobs(a, out)
    run = open_run(a.run, "best" if a.best else "auto", kinds=("stylegan2",))
    label = _class_index(run, a.class_name)
    out = claim_output(out, OUTPUT_KIND)
    todo = [(i, src, dst) for i, (src, dst) in enumerate(jobs) if not (dst / NPZ).is_file()]
    if len(todo) < len(jobs):
        print(f"{len(jobs) - len(todo)} of {len(jobs)} images already projected in {out}: skipped")
    for s in range(0, len(todo), cfg.batch):
        chunk = todo[s:s + cfg.batch]
        images = np.stack([_load_target(src, run) for _, src, _ in chunk])
        res = project_many(run, images, cfg, None if label is None else [label] * len(chunk),
                           a.inception_weights, seed_index=[i for i, _, _ in chunk])
        for j, (_, src, dst) in enumerate(chunk):
            dst.mkdir(parents=True, exist_ok=True)
            summ = write_projection(dst, run, res.item(j), cfg, str(src))
            print(f"{src.name}: pixel MSE {summ['start_mse']:.4g} at w_avg -> {summ['mse']:.4g} "
                  f"({'+'.join(summ['features'])}); wrote {dst / NPZ}")
    if a.targets:
        _write_summary(out, jobs)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
