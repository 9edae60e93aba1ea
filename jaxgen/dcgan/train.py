"""Training of the conditional DCGAN with EMA-teacher knowledge distillation.

    python train.py --config configs/depth_emotion.py:tiny --workdir runs/depth_tiny

The whole training state -- G and D params, their EMA teachers, both Adam
states and the step -- is one pytree (`DCGANState`), updated by one jitted
`train_step(state, images, labels, key)`; the step's randomness is
`jax.random.fold_in(key, step)` and the real batch of step s is a pure
function of (seed, s) (`jaxgen.harness.batches`), so a resumed run continues
exactly where it stopped. The loop itself is the shared harness
(`jaxgen.harness.loop`); `DCGANExperiment` is what the DCGAN supplies.

What a run writes (all under `workdir`):
  config.json, run.json          the resolved config; the descriptor (G/D kwargs, class names)
  samples/reals.png              training images, one row per class
  samples/fakes_<nimg:08d>.png   teacher (EMA) G on fixed latents, one row per class
  samples/final.png              the teacher G on the same latents, at the end
  samples/student_final.png      the student G on the same latents, at the end
  metrics.jsonl, losses.png      per-tick averaged losses and their curves over kimg
  checkpoints/<step>/            the whole DCGANState (orbax), every snapshot

`jaxgen.runs.open_run(workdir)` opens a run (the teacher G of its latest
checkpoint). Running the same command again resumes from the latest checkpoint.
"""
from __future__ import annotations

import dataclasses
import pathlib
from functools import partial
from typing import Any, Dict, List, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.data import load_dataset, to_float
from jaxgen.dcgan.models import (Discriminator, Generator, build, discriminator_loss, ema_update,
                                 generator_loss, model_kwargs)
from jaxgen.harness import loop
from jaxgen.harness.batches import Grid, batch_at_step, grid_inputs
from jaxgen.harness.experiment import Experiment, TickInfo
from jaxgen.harness.schedule import Schedule
from jaxgen.utils.images import save_grid


@flax.struct.dataclass
class DCGANState:
    """Everything that changes during training (a pytree; `step` is an int32 scalar)."""
    step: jnp.ndarray
    g_params: Any
    d_params: Any
    g_teacher: Any
    d_teacher: Any
    g_opt: Any
    d_opt: Any


@dataclasses.dataclass(frozen=True)
class StepConfig:
    z_dim: int
    kd_g_weight: float = 0.0
    kd_d_weight: float = 0.0
    ema_decay: float = 0.994


def make_optimizers(train_cfg: Any) -> Tuple[optax.GradientTransformation, optax.GradientTransformation]:
    b1, b2 = (float(b) for b in train_cfg.betas)
    return (optax.adam(float(train_cfg.g_lr), b1=b1, b2=b2),
            optax.adam(float(train_cfg.d_lr), b1=b1, b2=b2))


def init_state(G: Generator, D: Discriminator, g_tx, d_tx, key) -> DCGANState:
    """Fresh state: random G/D params; teachers start as copies of them."""
    kg, kd = jax.random.split(key)
    z = jnp.zeros([2, G.z_dim], jnp.float32)
    c = jnp.zeros([2], jnp.int32)
    g_params = G.init(kg, z, c)["params"]
    d_params = D.init(kd, jnp.zeros([2, D.resolution, D.resolution, D.channels]), c)["params"]
    copy = partial(jax.tree_util.tree_map, jnp.array)
    return DCGANState(step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
                      g_teacher=copy(g_params), d_teacher=copy(d_params),
                      g_opt=g_tx.init(g_params), d_opt=d_tx.init(d_params))


def make_train_step(G: Generator, D: Discriminator, g_tx, d_tx, cfg: StepConfig):
    """step(state, images [B,R,R,C] in [-1,1], labels int [B], key) -> (state, metrics).

    One D update on (reals, G(z1, labels)), then one G update on G(z2, labels)
    against the updated D, then both teachers move by EMA. KD terms whose
    weight is 0 are not computed at all (no teacher forward passes).
    """
    kd_g, kd_d, decay = float(cfg.kd_g_weight), float(cfg.kd_d_weight), float(cfg.ema_decay)

    def step(state: DCGANState, images, labels, key):
        k1, k2 = jax.random.split(jax.random.fold_in(key, state.step))
        n = images.shape[0]
        fake = G.apply({"params": state.g_params}, jax.random.normal(k1, [n, cfg.z_dim]), labels)
        fake = jax.lax.stop_gradient(fake)
        t_real = t_fake = None
        if kd_d:
            t_real = D.apply({"params": state.d_teacher}, images, labels)
            t_fake = D.apply({"params": state.d_teacher}, fake, labels)

        def d_loss_fn(p):
            real_l = D.apply({"params": p}, images, labels)
            fake_l = D.apply({"params": p}, fake, labels)
            loss, aux = discriminator_loss(real_l, fake_l, t_real, t_fake, kd_d)
            return loss, dict(aux, real=jnp.mean(real_l), fake=jnp.mean(fake_l))

        (d_loss, d_aux), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
        d_upd, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_upd)

        z2 = jax.random.normal(k2, [n, cfg.z_dim])
        t_img = G.apply({"params": state.g_teacher}, z2, labels) if kd_g else None

        def g_loss_fn(p):
            img = G.apply({"params": p}, z2, labels)
            return generator_loss(D.apply({"params": d_params}, img, labels), img, t_img, kd_g)

        (g_loss, g_aux), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
        g_upd, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_upd)

        new = DCGANState(step=state.step + 1, g_params=g_params, d_params=d_params,
                         g_teacher=ema_update(state.g_teacher, g_params, decay),
                         d_teacher=ema_update(state.d_teacher, d_params, decay),
                         g_opt=g_opt, d_opt=d_opt)
        metrics = {"loss/G": g_loss, "loss/D": d_loss, "loss/G_gan": g_aux["gan"],
                   "loss/D_gan": d_aux["gan"], "kd/G": g_aux["kd"], "kd/D": d_aux["kd"],
                   "logits/real": d_aux["real"], "logits/fake": d_aux["fake"]}
        return new, metrics

    return step


def plot_losses(history: List[Dict[str, float]], path) -> pathlib.Path:
    """PNG with GAN losses (left) and KD terms (right) over kimg."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 3.8))
    kimg = [h["kimg"] for h in history]
    for i, (title, keys) in enumerate((("GAN losses", ("loss/G_gan", "loss/D_gan")),
                                       ("Distillation (to EMA teacher)", ("kd/G", "kd/D")))):
        ax = fig.add_subplot(1, 2, i + 1)
        for k in keys:
            ax.plot(kimg, [h.get(k, float("nan")) for h in history], "-", label=k)
        ax.set_title(title)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=90)
    return path


class DCGANExperiment(Experiment):
    """The DCGAN for `jaxgen.harness.loop.train` (the contract: `jaxgen.harness.experiment`);
    batches are (images [B,R,R,C] in [-1,1], labels int32 [B])."""

    kind = "dcgan"
    grid: Grid                        # always set: G's samples every image snapshot
    divergence_hint = "lower config.train.g_lr/d_lr"
    resolution_range = (16, 256)      # models.stage_widths

    def __init__(self, config: Any, workdir: pathlib.Path):
        t, kd = config.train, config.kd
        self.config, self.workdir, self.seed = config, workdir, int(config.seed)
        data_cfg = config.data.to_dict()
        data_cfg["cache_dir"] = data_cfg["cache_dir"] or None
        self.ds = ds = load_dataset(data_cfg)
        self.data_summary = {"train": ds.summary}
        self.num_examples = len(ds.images)
        k = self.num_classes = ds.num_classes if bool(config.data.conditional) and ds.num_classes > 1 else 0
        G_kwargs, D_kwargs = model_kwargs(config.model, ds.resolution, ds.channels, k)
        self.G, self.D = G, D = build(G_kwargs, D_kwargs)
        self.g_tx, self.d_tx = make_optimizers(t)
        self.schedule = Schedule.from_kimg(t)
        self.descriptor = dict(class_names=list(ds.class_names[:k]) if k else [], resolution=ds.resolution,
                               channels=ds.channels, G_kwargs=G_kwargs, D_kwargs=D_kwargs)
        self.train_step = make_train_step(G, D, self.g_tx, self.d_tx, StepConfig(
            z_dim=G.z_dim, kd_g_weight=float(kd.g_weight), kd_d_weight=float(kd.d_weight),
            ema_decay=float(kd.ema_decay)))
        self.grid = grid_inputs(ds.images, ds.labels, ds.class_names, k, G.z_dim, int(t.grid_cols), self.seed)
        self._gen = jax.jit(lambda p, z, c: G.apply({"params": p}, z, c))

    def banner(self) -> str:
        ds, kd = self.ds, self.config.kd
        return (f"DCGAN: {self.config.train.total_kimg} kimg, {len(ds.images)} images {ds.resolution}px "
                f"x{ds.channels}, {self.num_classes} classes, KD g={float(kd.g_weight)} "
                f"d={float(kd.d_weight)} (EMA {float(kd.ema_decay)})")

    def init_state(self, key: jax.Array) -> DCGANState:
        return init_state(self.G, self.D, self.g_tx, self.d_tx, key)

    def local_batch(self, step: int, process=(0, 1)):
        """This process's rows of step `step`'s batch (of a streamed pack, only those are read)."""
        img, labels = batch_at_step(self.ds.images, self.ds.labels, step, self.schedule.batch_size,
                                    self.seed, bool(self.config.data.mirror), process)
        return to_float(img), labels

    def sample(self, state: DCGANState, params: Any = None) -> np.ndarray:
        """The teacher G's images on the grid latents (or `params`' images)."""
        params = state.g_teacher if params is None else params
        return np.asarray(self._gen(params, self.grid.z, self.grid.labels))

    def tick_line(self, stats: Dict[str, Any]) -> str:
        return (f"G {stats['loss/G_gan']:.4f}  D {stats['loss/D_gan']:.4f}  kdG {stats['kd/G']:.4f}  "
                f"kdD {stats['kd/D']:.4f}  real {stats['logits/real']:+.3f}  fake {stats['logits/fake']:+.3f}")

    def after_tick(self, state: DCGANState, tick: TickInfo) -> None:
        if tick.image_snapshot and jax.process_index() == 0:
            plot_losses(tick.history, self.workdir / "losses.png")

    def finish(self, state: DCGANState, tick: TickInfo) -> None:
        """samples/final.png (teacher G) and samples/student_final.png; losses.png redrawn."""
        if jax.process_index() != 0:
            return
        g = self.grid
        for name, params in (("final", state.g_teacher), ("student_final", state.g_params)):
            save_grid(self.sample(state, params), self.workdir / "samples" / f"{name}.png", cols=g.cols,
                      row_labels=g.row_labels)
        if tick.history:
            plot_losses(tick.history, self.workdir / "losses.png")


def train_and_evaluate(config: Any, workdir: str) -> Dict[str, Any]:
    """Train (or resume) a DCGAN run into `workdir`; returns the last tick's metrics row with
    `step` and `workdir`."""
    res = loop.train(DCGANExperiment, config, workdir)
    return dict(res["stats"], step=res["step"], workdir=res["workdir"])
