"""Project a real image into a StyleGAN2 generator's latent space (w or w+), as NVIDIA does.

What: find the w (one w_dim vector repeated over all num_ws layers, or with w_plus
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

The loss (jaxgen/stylegan2/projection_loss.py, which says why it is not NVIDIA's VGG16
LPIPS): the LPIPS recipe on the run's own discriminator features and, when the caller hands it over
(`inception`), the FID Inception's, plus a pixel MSE term (images in [-1, 1]) that pins colours
and fine detail the coarse D features let slide. Weights: pixel_weight 1, d_weight 1,
inception_weight (1 with weights, else 0); a run without a discriminator (some .pkl) falls back
to what is left.

`run` is a StyleGAN2 jaxgen.runs.Run (.model G, .variables, .discriminator, .d_variables).
Used by the `project` command (jaxgen/workflows/project.py writes its files) and the
datasheet's projection membership AUC (jaxgen/metrics/privacy.py).
"""
from __future__ import annotations

import dataclasses
import functools
import runpy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.traverse_util import flatten_dict, unflatten_dict
from PIL import Image

from jaxgen.data.folder import prepare_image, to_float
from jaxgen.errors import ConfigError
from jaxgen.stylegan2.projection_loss import (d_features, feature_distance, inception_features, lr_at,
                                              noise_regularizer, normalize_noise, w_noise_scale)
from jaxgen.utils.images import to_uint8
from jaxgen.utils.labels import one_hot_labels
from jaxgen.utils.logger import logger
from jaxgen.utils.progress import Progress
from jaxgen.utils.xla_options import jit_train_step

# Upper bounds (NVIDIA's projector: 1000 steps, 10000 w_avg samples, 299 px Inception): every
# step keeps its losses, the samples' z and w are held at once, the target is resized to the size.
MAX_STEPS = 100_000
MAX_W_AVG_SAMPLES = 100_000
MAX_INCEPTION_SIZE = 1024


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


def w_stats(run, label: Optional[int] = None, samples: int = 10000, seed: int = 123,
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
def _class_stats(run, label: int, samples: int) -> Tuple[np.ndarray, float]:
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


def render(run, w, noise: Optional[Dict[str, Any]] = None) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# Driver.

def snapshot_steps(steps: int, count: int) -> List[int]:
    """~count step counts from 0 (the start, w_avg) to `steps`, evenly spaced, for progress.png."""
    return sorted({int(round(s)) for s in np.linspace(0, steps, max(2, count))})


def fit_targets(run, images) -> np.ndarray:
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


def _labels(run, labels, n: int) -> np.ndarray:
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


def feature_nets(run, cfg: ProjectConfig,
                 inception: Optional[Tuple[Any, Any]] = None) -> Tuple[Any, Any, Dict[str, Any], Tuple[str, ...]]:
    """(D or None, Inception or None, their variables {'d', 'inception'}, names of the loss terms).
    inception: (FID Inception module, its variables), used when cfg.inception_weight > 0."""
    D = net = None
    nets: Dict[str, Any] = {}
    if cfg.d_weight > 0:
        if run.discriminator is not None and run.d_variables is not None:
            D, nets["d"] = run.discriminator, run.d_variables
        else:
            logger.info(f"note: {run.path} has no discriminator; the loss uses pixels (and Inception if given)")
    if cfg.inception_weight > 0:
        if inception is None:
            raise ConfigError("--inception_weight > 0 needs --inception_weights PATH (the FID Inception .pth)")
        net, nets["inception"] = inception
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


def _run_batch(progs: _Programs, run, nets, hp, batch: Dict[str, np.ndarray], cfg: ProjectConfig,
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


def project_many(run, targets, cfg: ProjectConfig = ProjectConfig(), labels=None,
                 inception: Optional[Tuple[Any, Any]] = None,
                 seed_index: Optional[Sequence[int]] = None) -> Projection:
    """Project every image of targets [N, H, W, C] (see fit_targets), cfg.batch at a time.

    labels: class ints [N] (or one int) for a conditional G. inception: (FID Inception, its
    variables) when cfg.inception_weight > 0 (jaxgen.workflows.project.load_inception reads them).
    Image i draws its random noise buffers and w noise from (cfg.seed, seed_index[i]) (default i):
    the same image with the same index gives the same projection. Logs progress (image-steps,
    rate, ETA, mean dist)."""
    cfg = cfg.check()
    if run.kind != "stylegan2":
        raise ConfigError(f"{run.path} is a {run.kind} run; projection needs a StyleGAN2 generator")
    x = fit_targets(run, targets)
    n, k = len(x), run.model.c_dim
    lab = _labels(run, labels, n)
    D, net, nets, names = feature_nets(run, cfg, inception)
    progs, hp = _programs(run.model, D, net), _hyper(cfg)
    stats = [_class_stats(run, int(c), cfg.w_avg_samples) for c in lab]
    per = dict(target=x, c=one_hot_labels(lab, k),
               w_avg=np.stack([s[0] for s in stats]), w_std=np.asarray([s[1] for s in stats], np.float32),
               key=jax.vmap(lambda i: jax.random.fold_in(jax.random.key(cfg.seed), i))(
                   jnp.asarray(np.arange(n) if seed_index is None else seed_index, jnp.int32)))
    latest: list = []
    progress = Progress(n * cfg.steps, "project", unit="steps",
                        tail=lambda: f"  dist {float(np.mean(latest[0])):.4g}")
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


def project(run, target, steps: int = 1000, w_plus: bool = False, label: Optional[int] = None,
            cfg: Optional[ProjectConfig] = None, inception: Optional[Tuple[Any, Any]] = None) -> Projection:
    """Project one target [R, R, C] (float in [-1, 1] or uint8; other sizes are resized) into
    w (or w+): a Projection without the image axis: w [num_ws, w_dim], noise {name: [H, W]},
    losses {name: [steps]}, snapshots [S, R, R, C], image and MSE (see Projection)."""
    cfg = dataclasses.replace(cfg or ProjectConfig(), steps=int(steps), w_plus=bool(w_plus), batch=1)
    labels = None if label is None else [label]
    return project_many(run, np.asarray(target)[None], cfg, labels, inception).item(0)


if __name__ == "__main__":   # the old path of the command, for one release: `python -m jaxgen project`
    runpy.run_module("jaxgen.commands.project", run_name="__main__")
