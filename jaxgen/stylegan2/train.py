"""The StyleGAN2-ADA training loop: `train_and_evaluate(config, workdir)`.

What a run does and writes (all under `workdir`):
  config.json, model.json            the resolved config and the network kwargs
  samples/reals.png                   a grid of training images (one row per class)
  samples/fakes_<kimg>.png            G_ema on fixed latents every image snapshot
  checkpoints/<step>/                 the whole TrainState (orbax), every snapshot
  metrics.jsonl                       one JSON line of averaged scalars per tick
  fid.jsonl, fid.png, best/           FID of G_ema every `metrics.every_ticks`, its plot
                                      over kimg, and the best-FID checkpoint
  events.out.tfevents.*               the same scalars for TensorBoard (clu)

Progress is printed every tick (kimg, sec/kimg, losses, ADA p). A run started
again with the same workdir resumes from its latest checkpoint (kimg, ADA p,
optimizer moments, RNG position, data order: the continuation is the same as
an uninterrupted run). A NaN/inf loss stops the run with TrainingDiverged
before anything is saved, so the last checkpoint stays good.
"""
from __future__ import annotations

import json
import logging
import math
import pathlib
import time
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgen.data import load_dataset, to_float
from jaxgen.stylegan2.generator import Generator
from jaxgen.stylegan2 import networks, state as state_lib
from jaxgen.harness.checkpoint import TrainCheckpointer, write_descriptor
from jaxgen.stylegan2.transfer import transfer
from jaxgen.metrics.fid_tracker import FIDTracker
from jaxgen.stylegan2.loss import LossConfig
from jaxgen.stylegan2.step import StepConfig, make_train_step
from jaxgen.utils.images import save_grid


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


def r1_gamma(config: Any) -> float:
    """config.train.r1_gamma, or NVIDIA's 'auto' 0.0002 * res^2 / batch when it is negative."""
    g = float(config.train.r1_gamma)
    if g < 0:
        g = 0.0002 * int(config.data.resolution) ** 2 / int(config.train.batch_size)
    return g


def step_config(config: Any) -> StepConfig:
    t, a = config.train, config.ada
    return StepConfig(
        batch_size=int(t.batch_size),
        loss=LossConfig(r1_gamma=r1_gamma(config), pl_weight=float(t.pl_weight),
                        pl_batch_shrink=int(t.pl_batch_shrink), pl_decay=float(t.pl_decay),
                        style_mixing_prob=float(t.style_mixing_prob)),
        g_reg_interval=int(t.g_reg_interval), d_reg_interval=int(t.d_reg_interval),
        ema_kimg=float(t.ema_kimg), ema_rampup=t.ema_rampup, augment=a.mode, augpipe=a.augpipe,
        ada_target=float(a.target), ada_interval=int(a.interval), ada_kimg=float(a.kimg))


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the real batch of iteration `step`: epoch-wise shuffles from (seed, epoch).

    A pure function of the step, so resuming needs no iterator state.
    """
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_examples)
        perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
        out.extend(perm[offset:offset + batch_size - len(out)].tolist())
    return np.asarray(out, np.int64)


def real_batch(ds, step: int, batch_size: int, seed: int, mirror: bool, num_classes: int):
    idx = batch_indices(len(ds.images), batch_size, seed, step)
    img = to_float(ds.images[idx])
    if mirror:
        flip = np.random.default_rng([seed, step, 1]).random(batch_size) < 0.5
        img = np.where(flip[:, None, None, None], img[:, :, ::-1], img)
    if num_classes:
        c = np.eye(num_classes, dtype=np.float32)[ds.labels[idx]]
    else:
        c = np.zeros([batch_size, 0], np.float32)
    return img, c


class Tick:
    """Accumulates per-step metrics (on device) and reduces them at the end of a tick."""

    def __init__(self):
        self.metrics: List[Dict[str, Any]] = []
        self.start = time.time()

    def reduce(self) -> Dict[str, float]:
        host = jax.device_get(self.metrics)
        out: Dict[str, float] = {}
        for key in host[0]:
            if key.endswith("_w"):
                continue
            vals = np.array([float(m[key]) for m in host])
            if key + "_w" in host[0]:
                w = np.array([float(m[key + "_w"]) for m in host])
                if w.sum() == 0:
                    continue
                out[key] = float((vals * w).sum() / w.sum())
            elif key in ("ada_p", "pl_mean"):
                out[key] = float(vals[-1])
            else:
                out[key] = float(vals.mean())
        return out


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def train_and_evaluate(config: Any, workdir: str) -> Dict[str, Any]:
    """Train (or resume) a StyleGAN2-ADA run; returns the last tick's stats."""
    if config.get("distributed", False):
        jax.distributed.initialize()
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    is_main = jax.process_index() == 0
    t = config.train

    data_cfg = config.data.to_dict()
    data_cfg["cache_dir"] = data_cfg["cache_dir"] or None
    if data_cfg["source"] == "folder" and data_cfg["conditional"]:
        data_cfg.update(require_labels=True, min_classes=2)
    ds = load_dataset(data_cfg)
    conditional = bool(config.data.conditional) and ds.num_classes > 1
    num_classes = ds.num_classes if conditional else 0
    label_probs = (np.bincount(ds.labels, minlength=num_classes) / len(ds.labels)) if conditional else None
    G_kwargs, D_kwargs = networks.model_kwargs(config.model, ds.resolution, ds.channels, num_classes)
    G, D = networks.build(G_kwargs, D_kwargs)

    n_dev, n_proc = jax.device_count(), jax.process_count()
    if t.batch_size % n_dev:
        raise ValueError(f"config.train.batch_size={t.batch_size} must be a multiple of the "
                         f"{n_dev} devices")
    if t.batch_size > len(ds.images):
        raise ValueError(f"config.train.batch_size={t.batch_size} exceeds the {len(ds.images)} "
                         "training images")
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    repl, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    tr = config.transfer
    g_tx = state_lib.make_optimizer(
        state_lib.OptConfig(lr=t.g_lr, betas=tuple(t.betas), reg_interval=t.g_reg_interval),
        state_lib.freeze_g_fn(int(tr.freeze_g_res), bool(tr.freeze_mapping)))
    d_tx = state_lib.make_optimizer(
        state_lib.OptConfig(lr=t.d_lr, betas=tuple(t.betas), reg_interval=t.d_reg_interval),
        state_lib.freeze_d_fn(D.block_resolutions, int(tr.freeze_d)))

    base_key = jax.random.key(int(config.seed))
    g_vars, d_vars = networks.init_variables(G, D, jax.random.fold_in(base_key, 10 ** 6))
    ema_vars = None
    if tr.init_from:
        g_vars, d_vars, ema_vars = transfer(g_vars, d_vars, tr.init_from)
    fresh = state_lib.init_state(g_vars, d_vars, g_tx, d_tx, ema_vars, ada_p=float(config.ada.p_init))

    fid = FIDTracker(config.metrics, G, ds.images, workdir, label_probs, write=is_main)
    ckpt = TrainCheckpointer(workdir, max_to_keep=int(t.keep_checkpoints))
    best_ckpt = TrainCheckpointer(workdir, max_to_keep=1, subdir="best") if fid.every else None
    meta: Dict[str, Any] = dict(tick=0, wall_time=0.0)
    if ckpt.latest_step() is not None:
        st, meta = ckpt.restore(jax.tree_util.tree_map(np.asarray, fresh))
        logging.info("resumed from %s step %d (kimg %.1f, ADA p %.3f)", ckpt.directory,
                     int(st.step), st.kimg, float(st.ada_p))
        print(f"Resuming from step {int(st.step)}: kimg {st.kimg:.1f}, ADA p {float(st.ada_p):.3f}",
              flush=True)
    else:
        st = fresh
    st = jax.device_put(st, repl)

    if is_main:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
        write_descriptor(workdir, "stylegan2", class_names=list(ds.class_names[:num_classes or None]),
                         resolution=ds.resolution, channels=ds.channels, G_kwargs=G_kwargs, D_kwargs=D_kwargs)

    step_fn = jax.jit(make_train_step(step_config(config), G, D, g_tx, d_tx, label_probs),
                      in_shardings=(repl, shard, shard, repl), out_shardings=(repl, repl),
                      donate_argnums=(0,))
    grid = _grid_inputs(G, ds, num_classes, config)
    gen_grid = jax.jit(lambda p, b, z, c: G.apply({"params": p, "buffers": b}, z, c, noise_mode="const"))
    writer = _writer(workdir, is_main)
    if is_main and not (workdir / "samples" / "reals.png").exists():
        save_grid(grid["reals"], workdir / "samples" / "reals.png", cols=grid["cols"],
                  row_labels=grid["row_labels"])

    total_nimg = int(round(float(t.total_kimg) * 1000))
    tick_nimg = int(round(float(t.kimg_per_tick) * 1000))
    block_every_step = jax.devices()[0].platform == "cpu" and n_dev > 1
    tick_idx = int(meta.get("tick", 0))
    wall0 = time.time() - float(meta.get("wall_time", 0.0))
    print(f"Training for {t.total_kimg} kimg on {n_dev} device(s), batch {t.batch_size}, "
          f"{len(ds.images)} images {ds.resolution}px, {num_classes} classes -> {workdir}", flush=True)
    stats: Dict[str, Any] = {}
    done = int(st.nimg) >= total_nimg
    try:
        while not done:
            tick = Tick()
            tick_start_nimg = int(st.nimg)
            while True:
                step = int(st.step)
                img, c = real_batch(ds, step, t.batch_size, int(config.seed), bool(config.data.mirror),
                                    num_classes)
                if n_proc > 1:  # each host feeds its slice of the (identical) global batch
                    lo = jax.process_index() * (t.batch_size // n_proc)
                    img, c = (jax.make_array_from_process_local_data(
                        shard, a[lo:lo + t.batch_size // n_proc], a.shape) for a in (img, c))
                st, m = step_fn(st, img, c, base_key)
                tick.metrics.append(m)
                if block_every_step:
                    jax.block_until_ready(st.step)
                nimg = tick_start_nimg + len(tick.metrics) * t.batch_size
                if nimg >= total_nimg or nimg - tick_start_nimg >= tick_nimg:
                    break
            stats = tick.reduce()
            tick_idx += 1
            done = nimg >= total_nimg
            bad = [k for k, v in stats.items() if not math.isfinite(v)]
            if bad:
                raise TrainingDiverged(
                    f"non-finite {', '.join(bad)} at kimg {nimg / 1000:.3f} (tick {tick_idx}); nothing "
                    f"was saved for this tick, the last good checkpoint is step {ckpt.latest_step()} "
                    f"in {ckpt.directory}. Lower config.train.g_lr/d_lr or raise r1_gamma and resume.")
            dt = time.time() - tick.start
            stats.update(kimg=nimg / 1000, tick=tick_idx, sec_per_tick=dt,
                         sec_per_kimg=dt / max((nimg - tick_start_nimg) / 1000, 1e-9),
                         images_per_sec=(nimg - tick_start_nimg) / max(dt, 1e-9))
            meta = dict(tick=tick_idx, kimg=nimg / 1000, ada_p=stats.get("ada_p"),
                        wall_time=time.time() - wall0, step=int(st.step))
            if fid.due(tick_idx, done):
                best_before = fid.best()
                scores = fid.evaluate({"params": st.ema_params, "buffers": st.ema_buffers},
                                      nimg / 1000, int(st.step))
                stats.update({f"metrics/{k}": v for k, v in scores.items()})
                if best_before is None or scores[fid.key] < best_before:
                    best_ckpt.save(int(st.step), st, dict(meta, **{fid.key: scores[fid.key]}))
            if is_main:
                _report(stats, time.time() - wall0, writer, workdir, nimg)
            snapshot = done or tick_idx % int(t.snapshot_ticks) == 0
            if is_main and (done or tick_idx % int(t.image_snapshot_ticks) == 0):
                fakes = gen_grid(st.ema_params, st.ema_buffers, grid["z"], grid["c"])
                save_grid(np.asarray(fakes), workdir / "samples" / f"fakes_{nimg // 1000:06d}.png",
                          cols=grid["cols"], row_labels=grid["row_labels"])
            if snapshot:
                ckpt.save(int(st.step), st, meta)
    except KeyboardInterrupt:
        try:  # `st` may have been donated to a step that was interrupted
            print(f"Interrupted: saving a checkpoint at step {int(st.step)} before exiting", flush=True)
            ckpt.save(int(st.step), st, dict(tick=tick_idx, kimg=st.kimg, wall_time=time.time() - wall0,
                                             step=int(st.step)))
        except Exception as e:  # noqa: BLE001 - report and keep the last periodic checkpoint
            print(f"Interrupted mid-step ({type(e).__name__}); the last checkpoint is step "
                  f"{ckpt.latest_step()} in {ckpt.directory}", flush=True)
        raise
    finally:
        ckpt.close()
        if best_ckpt is not None:
            best_ckpt.close()
        if writer is not None:
            writer.flush()
    print(f"Done: {int(st.nimg) / 1000:.3f} kimg, checkpoints in {ckpt.directory}", flush=True)
    return stats


def _grid_inputs(G: Generator, ds, num_classes: int, config: Any) -> Dict[str, Any]:
    """Fixed latents and labels for the sample grids: one row per class (or 4 rows)."""
    cols = int(config.train.grid_cols)
    rows = num_classes if num_classes else 4
    rng = np.random.default_rng(int(config.seed) + 12345)
    z = rng.standard_normal([rows * cols, G.z_dim]).astype(np.float32)
    labels = np.repeat(np.arange(rows), cols)
    c = np.eye(num_classes, dtype=np.float32)[labels] if num_classes else np.zeros([rows * cols, 0], np.float32)
    reals = []
    for r in range(rows):
        pool = np.flatnonzero(ds.labels == r) if num_classes else np.arange(len(ds.images))
        pick = rng.choice(pool, size=cols, replace=len(pool) < cols)
        reals.append(ds.images[pick])
    row_labels = list(ds.class_names[:rows]) if num_classes else None
    return dict(z=z, c=c, cols=cols, reals=np.concatenate(reals), row_labels=row_labels)


def _writer(workdir: pathlib.Path, is_main: bool):
    if not is_main:
        return None
    try:
        from clu import metric_writers
        return metric_writers.create_default_writer(str(workdir), asynchronous=False)
    except Exception as e:  # TensorBoard missing: keep the JSONL log, say so once.
        logging.warning("TensorBoard scalars disabled (%s); metrics.jsonl is still written", e)
        return None


def _report(stats: Dict[str, Any], elapsed: float, writer, workdir: pathlib.Path, nimg: int) -> None:
    parts = [f"tick {stats['tick']:<4d}", f"kimg {stats['kimg']:<8.3f}", f"time {_fmt_time(elapsed):<8s}",
             f"sec/kimg {stats['sec_per_kimg']:<7.2f}", f"img/s {stats['images_per_sec']:<7.1f}"]
    for key, label in [("loss/G", "G"), ("loss/D", "D"), ("loss/pl_penalty", "pl"),
                       ("loss/r1_penalty", "r1"), ("signs/real", "rt"), ("ada_p", "p")]:
        if key in stats:
            parts.append(f"{label} {stats[key]:<7.4f}")
    parts += [f"{k[8:]} {v:.4g}" for k, v in stats.items() if k.startswith("metrics/") and "_std" not in k]
    print("  ".join(parts), flush=True)
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({k: v for k, v in stats.items()}) + "\n")
    if writer is not None:
        writer.write_scalars(nimg, {k: v for k, v in stats.items() if k not in ("tick",)})
