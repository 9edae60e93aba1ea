"""Training of the conditional DCGAN with EMA-teacher knowledge distillation.

    python train.py --config configs/depth_emotion.py:tiny --workdir runs/depth_tiny

The whole training state -- G and D params, their EMA teachers, both Adam
states and the step -- is one pytree (`DCGANState`), updated by one jitted
`train_step(state, images, labels, key)`; the step's randomness is
`jax.random.fold_in(key, step)` and the real batch of step s is a pure
function of (seed, s), so a resumed run continues exactly where it stopped.

What a run writes (all under `workdir`):
  config.json, dcgan.json        the resolved config; model kwargs + class names
  samples/reals.png              training images, one row per class
  samples/fakes_<nimg>.png       teacher (EMA) G on fixed latents, one row per class
  samples/student_final.png      the student G on the same latents, at the end
  metrics.jsonl, losses.png      per-tick averaged losses and their curves over kimg
  checkpoints/<step>/            the whole DCGANState (orbax), every snapshot
  generator/params               final teacher G params (orbax) for `load_generator`

Running the same command again resumes from the latest checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from functools import partial
from typing import Any, Dict, List, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.dcgan.models import (Discriminator, Generator, build, discriminator_loss, ema_update,
                                 generator_loss, model_kwargs)

INFO_FORMAT = "jaxgen-dcgan"


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


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the real batch of `step`: consecutive slices of per-epoch permutations."""
    start, out = step * batch_size, []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_examples)
        perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
        out.extend(perm[offset:offset + batch_size - len(out)].tolist())
    return np.asarray(out, np.int64)


def real_batch(ds, step: int, batch_size: int, seed: int, mirror: bool):
    """(images float32 [B,R,R,C] in [-1,1], labels int32 [B]) of iteration `step`."""
    from jaxgen.data import to_float
    idx = batch_indices(len(ds.images), batch_size, seed, step)
    img = to_float(ds.images[idx])
    if mirror:
        flip = np.random.default_rng([seed, step, 1]).random(batch_size) < 0.5
        img = np.where(flip[:, None, None, None], img[:, :, ::-1], img)
    return img, ds.labels[idx].astype(np.int32)


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


def _grid(ds, num_classes: int, z_dim: int, cols: int, seed: int) -> Dict[str, Any]:
    rows = num_classes or 4
    rng = np.random.default_rng(seed + 12345)
    z = rng.standard_normal([rows * cols, z_dim]).astype(np.float32)
    labels = np.repeat(np.arange(rows), cols).astype(np.int32) if num_classes else np.zeros(rows * cols, np.int32)
    reals = []
    for r in range(rows):
        pool = np.flatnonzero(ds.labels == r) if num_classes else np.arange(len(ds.images))
        reals.append(ds.images[rng.choice(pool, size=cols, replace=len(pool) < cols)])
    names = list(ds.class_names[:rows]) if num_classes else None
    return dict(z=z, labels=labels, reals=np.concatenate(reals), row_labels=names, cols=cols)


def train_and_evaluate(config: Any, workdir: str) -> Dict[str, Any]:
    """Train (or resume) a DCGAN run into `workdir`; returns the last tick's stats."""
    from jaxgen.data import load_dataset
    from jaxgen.harness.checkpoint import TrainCheckpointer
    from jaxgen.utils.images import save_grid

    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    t, kd = config.train, config.kd
    data_cfg = config.data.to_dict() if hasattr(config.data, "to_dict") else dict(config.data)
    data_cfg["cache_dir"] = data_cfg.get("cache_dir") or None
    ds = load_dataset(data_cfg)
    num_classes = ds.num_classes if bool(config.data.conditional) and ds.num_classes > 1 else 0
    bs = int(t.batch_size)
    if bs > len(ds.images):
        raise ValueError(f"config.train.batch_size={bs} exceeds the {len(ds.images)} training images")
    G_kwargs, D_kwargs = model_kwargs(config.model, ds.resolution, ds.channels, num_classes)
    G, D = build(G_kwargs, D_kwargs)
    g_tx, d_tx = make_optimizers(t)
    seed = int(config.seed)
    key = jax.random.key(seed)
    fresh = init_state(G, D, g_tx, d_tx, jax.random.fold_in(key, 10 ** 6))
    class_names = list(ds.class_names[:num_classes]) if num_classes else []
    info = dict(format=INFO_FORMAT, version=1, G_kwargs=G_kwargs, D_kwargs=D_kwargs,
                class_names=class_names, z_dim=G.z_dim, resolution=ds.resolution,
                channels=ds.channels, num_classes=num_classes)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2)
                                         if hasattr(config, "to_json_best_effort") else json.dumps(config))
    (workdir / "dcgan.json").write_text(json.dumps(info, indent=2))

    ckpt = TrainCheckpointer(workdir, max_to_keep=int(t.get("keep_checkpoints", 3)))
    meta: Dict[str, Any] = dict(tick=0, wall_time=0.0)
    if ckpt.latest_step() is not None:
        st, meta = ckpt.restore(jax.tree_util.tree_map(np.asarray, fresh))
        print(f"Resuming from step {int(st.step)} (kimg {int(st.step) * bs / 1000:.3f})", flush=True)
    else:
        st = fresh
    st = jax.device_put(st)
    history = _read_history(workdir / "metrics.jsonl", int(meta.get("tick", 0)))

    step_fn = jax.jit(make_train_step(G, D, g_tx, d_tx, StepConfig(
        z_dim=G.z_dim, kd_g_weight=float(kd.g_weight), kd_d_weight=float(kd.d_weight),
        ema_decay=float(kd.ema_decay))))
    gen = jax.jit(lambda p, z, c: G.apply({"params": p}, z, c))
    grid = _grid(ds, num_classes, G.z_dim, int(t.get("grid_cols", 8)), seed)
    save_grid(grid["reals"], workdir / "samples" / "reals.png", cols=grid["cols"],
              row_labels=grid["row_labels"])

    total_nimg = int(round(float(t.total_kimg) * 1000))
    tick_nimg = max(int(round(float(t.kimg_per_tick) * 1000)), 1)
    tick_idx, wall0 = int(meta.get("tick", 0)), time.time() - float(meta.get("wall_time", 0.0))
    mirror = bool(config.data.get("mirror", False))
    print(f"DCGAN: {t.total_kimg} kimg, batch {bs}, {len(ds.images)} images {ds.resolution}px "
          f"x{ds.channels}, {num_classes} classes, KD g={float(kd.g_weight)} d={float(kd.d_weight)} "
          f"(EMA {float(kd.ema_decay)}) -> {workdir}", flush=True)
    stats: Dict[str, Any] = {}
    try:
        while int(st.step) * bs < total_nimg:
            t0, start_nimg, ms = time.time(), int(st.step) * bs, []
            while True:
                step = int(st.step)
                img, c = real_batch(ds, step, bs, seed, mirror)
                st, m = step_fn(st, img, c, key)
                ms.append(m)
                nimg = (step + 1) * bs
                if nimg >= total_nimg or nimg - start_nimg >= tick_nimg:
                    break
            ms = jax.device_get(ms)
            stats = {k: float(np.mean([float(m[k]) for m in ms])) for k in ms[0]}
            tick_idx += 1
            done = nimg >= total_nimg
            dt = time.time() - t0
            bad = [k for k, v in stats.items() if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"non-finite {', '.join(bad)} at kimg {nimg / 1000:.3f}; the "
                                         f"last good checkpoint is step {ckpt.latest_step()}")
            stats.update(tick=tick_idx, kimg=nimg / 1000, step=int(st.step), sec_per_tick=dt,
                         images_per_sec=(nimg - start_nimg) / max(dt, 1e-9))
            history.append(stats)
            elapsed = time.time() - wall0
            print(f"tick {tick_idx:<4d} kimg {nimg / 1000:<8.3f} time {int(elapsed) // 60}m "
                  f"{int(elapsed) % 60:02d}s  img/s {stats['images_per_sec']:<6.1f} "
                  f"G {stats['loss/G_gan']:.4f}  D {stats['loss/D_gan']:.4f}  kdG {stats['kd/G']:.4f}  "
                  f"kdD {stats['kd/D']:.4f}  real {stats['logits/real']:+.3f}  "
                  f"fake {stats['logits/fake']:+.3f}", flush=True)
            with open(workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(stats) + "\n")
            if done or tick_idx % int(t.get("image_snapshot_ticks", t.snapshot_ticks)) == 0:
                fakes = gen(st.g_teacher, grid["z"], grid["labels"])
                save_grid(np.asarray(fakes), workdir / "samples" / f"fakes_{nimg:08d}.png",
                          cols=grid["cols"], row_labels=grid["row_labels"])
                plot_losses(history, workdir / "losses.png")
            if done or tick_idx % int(t.snapshot_ticks) == 0:
                ckpt.save(int(st.step), st, dict(tick=tick_idx, kimg=nimg / 1000, step=int(st.step),
                                                 wall_time=time.time() - wall0))
        if ckpt.latest_step() != int(st.step):  # e.g. total_kimg was 0
            ckpt.save(int(st.step), st, dict(tick=tick_idx, kimg=int(st.step) * bs / 1000,
                                             step=int(st.step), wall_time=time.time() - wall0))
    finally:
        ckpt.close()
    for name, params in (("final", st.g_teacher), ("student_final", st.g_params)):
        save_grid(np.asarray(gen(params, grid["z"], grid["labels"])),
                  workdir / "samples" / f"{name}.png", cols=grid["cols"], row_labels=grid["row_labels"])
    if history:
        plot_losses(history, workdir / "losses.png")
    export_generator(workdir, st.g_teacher, dict(info, step=int(st.step), kimg=int(st.step) * bs / 1000))
    print(f"Done: step {int(st.step)}, {int(st.step) * bs / 1000:.3f} kimg; teacher G in "
          f"{workdir / 'generator'}", flush=True)
    return dict(stats, step=int(st.step), workdir=str(workdir))


def _read_history(path: pathlib.Path, upto_tick: int) -> List[Dict[str, float]]:
    """metrics.jsonl rows up to the resumed tick; later rows (written after the last
    checkpoint by an interrupted run) are dropped from the file too."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keep = [r for r in rows if int(r.get("tick", 0)) <= upto_tick]
    if len(keep) != len(rows):
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return keep


def export_generator(workdir, g_params: Any, info: Dict[str, Any]) -> pathlib.Path:
    """Write workdir/generator/{params (orbax), generator.json}; replaces an older export."""
    import orbax.checkpoint as ocp
    d = pathlib.Path(workdir).absolute() / "generator"
    d.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ck:
        ck.save(d / "params", jax.device_get(g_params), force=True)
    (d / "generator.json").write_text(json.dumps(info, indent=2))
    return d


def load_generator(workdir) -> Tuple[Generator, Any, Dict[str, Any]]:
    """(Generator module, teacher params, info) of a DCGAN workdir: the final export
    (workdir/generator), else the teacher G of the latest checkpoint. info has
    class_names, z_dim, resolution, channels, num_classes, G_kwargs, D_kwargs."""
    import orbax.checkpoint as ocp
    from jaxgen.harness.checkpoint import TrainCheckpointer
    workdir = pathlib.Path(workdir).absolute()
    exported = workdir / "generator" / "generator.json"
    info_path = exported if exported.exists() else workdir / "dcgan.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{workdir} is not a DCGAN workdir (no dcgan.json)")
    info = json.loads(info_path.read_text())
    G, _ = build(info["G_kwargs"], info["D_kwargs"])
    if exported.exists():
        with ocp.StandardCheckpointer() as ck:
            params = ck.restore(workdir / "generator" / "params")
    else:
        ck = TrainCheckpointer(workdir, max_to_keep=None)
        try:
            params = ck.restore_raw()["g_teacher"]
        finally:
            ck.close()
    return G, params, info


@partial(jax.jit, static_argnums=0)
def _generate(model: Generator, params, z, labels):
    return model.apply({"params": params}, z, labels)


def sample(model: Generator, params: Any, labels, key) -> np.ndarray:
    """Images float32 [N, R, R, C] in [-1, 1] for class `labels` (ints [N]) from
    latents z ~ N(0, I) drawn with `key`."""
    labels = jnp.asarray(labels)
    z = jax.random.normal(key, [labels.shape[0], model.z_dim])
    return np.asarray(_generate(model, params, z, labels))
