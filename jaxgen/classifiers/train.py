"""Train an image classifier on an image folder and evaluate it on another (synthetic -> real).

`train_classifier(config, workdir)`:
  * data: `config.data` (an image folder, usually the synthetic dataset), split
    80/20 per class with `config.data.val_fraction` unless `config.data.val_path`
    names a separate validation folder;
  * model: `config.model.name` from the registry (small_cnn, resnet50v2,
    resnet152v2, inception_resnet_v2), optional Keras ImageNet weights;
  * Adam (lr 1e-4, batch 16, 15 epochs in the acne paper), on-device augmentation,
    data parallel over all local devices, BatchNorm statistics in the state;
  * every epoch: validation loss/accuracy, a checkpoint (resumable), the best one
    by validation accuracy kept in `workdir/best`, curves.png redrawn.

Evaluation of a trained classifier is `jaxgen.classifiers.evaluate`.
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Dict, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgen.classifiers.augment import augment_batch
from jaxgen.data import ImageDataset, load_image_folder


@flax.struct.dataclass
class ClsState:
    step: jnp.ndarray
    epoch: jnp.ndarray
    params: Any
    batch_stats: Any
    opt: Any
    best_val_acc: jnp.ndarray


def split_per_class(labels: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, val_idx): `val_fraction` of every class, at least one image each."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        n_val = max(1, int(round(len(idx) * val_fraction))) if len(idx) > 1 else 0
        va.extend(idx[:n_val])
        tr.extend(idx[n_val:])
    return np.sort(np.asarray(tr, np.int64)), np.sort(np.asarray(va, np.int64))


def _inputs(x01: jnp.ndarray) -> jnp.ndarray:
    """[0, 1] images -> the [-1, 1] range every registry model (and Keras' 'tf' mode) expects."""
    return x01 * 2.0 - 1.0


def _to01(images_uint8: jnp.ndarray) -> jnp.ndarray:
    return images_uint8.astype(jnp.float32) / 255.0


def build(config: Any, num_classes: int):
    from jaxgen.classifiers.models import build_classifier
    return build_classifier(config.model.name, num_classes, **dict(config.model.get("kwargs", {})))


def init_state(model, tx, resolution: int, channels: int, key) -> ClsState:
    x = jnp.zeros([2, resolution, resolution, channels], jnp.float32)
    variables = jax.jit(lambda k: model.init(k, x, train=False))(key)
    params = variables["params"]
    return ClsState(step=jnp.zeros((), jnp.int32), epoch=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt=tx.init(params),
                    best_val_acc=jnp.asarray(-1.0, jnp.float32))


def make_steps(model, tx, aug_cfg: Any):
    def loss_fn(params, batch_stats, x, y):
        logits, mutated = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                      mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits, mutated.get("batch_stats", batch_stats))

    def train_step(state: ClsState, images, labels, key):
        key = jax.random.fold_in(key, state.step)
        x = augment_batch(_to01(images), key, float(aug_cfg.max_degrees), float(aug_cfg.max_brightness),
                          bool(aug_cfg.flip))
        (loss, (logits, bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, _inputs(x), labels)
        upd, opt = tx.update(grads, state.opt, state.params)
        acc = jnp.mean(jnp.argmax(logits, -1) == labels)
        return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, upd),
                             batch_stats=bs, opt=opt), dict(loss=loss, acc=acc)

    def eval_step(state: ClsState, images, labels, mask):
        logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                             _inputs(_to01(images)), train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return dict(loss_sum=jnp.sum(loss * mask), correct=jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
                    logits=logits)
    return train_step, eval_step


def _batches(n: int, batch: int, seed: Optional[int]):
    idx = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    for i in range(0, n - (batch - 1 if seed is not None else 0), batch):
        yield idx[i:i + batch]


def run_eval(eval_fn, state, images: np.ndarray, labels: np.ndarray, batch: int) -> Dict[str, Any]:
    """Loss, accuracy and logits over a whole set (last batch padded and masked)."""
    tot_loss, correct, logits = 0.0, 0.0, []
    for idx in _batches(len(images), batch, None):
        pad = batch - len(idx)
        x = np.concatenate([images[idx], np.zeros((pad,) + images.shape[1:], images.dtype)])
        y = np.concatenate([labels[idx], np.zeros(pad, labels.dtype)])
        m = np.concatenate([np.ones(len(idx), np.float32), np.zeros(pad, np.float32)])
        out = eval_fn(state, x, y, m)
        tot_loss += float(out["loss_sum"])
        correct += float(out["correct"])
        logits.append(np.asarray(out["logits"])[:len(idx)])
    n = max(len(images), 1)
    return dict(loss=tot_loss / n, acc=correct / n, logits=np.concatenate(logits) if logits else None)


def _save_history(workdir: pathlib.Path, history) -> None:
    """history.json and curves.png (train vs validation loss and accuracy per epoch)."""
    from jaxgen.classifiers.report import plot_curves
    tmp = workdir / "history.json.tmp"
    tmp.write_text(json.dumps(history, indent=1))
    tmp.replace(workdir / "history.json")
    plot_curves(history, workdir / "curves.png")


def train_classifier(config: Any, workdir: str) -> Dict[str, Any]:
    """Train (or resume) a classifier; returns the best validation accuracy and paths."""
    from jaxgen.harness.checkpoint import TrainCheckpointer
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    d, t = config.data, config.train
    if d.get("source", "folder") == "demo":
        from jaxgen.data.demo_faces import write_demo_dataset
        write_demo_dataset(d.path, num_per_class=int(d.num_per_class), resolution=int(d.resolution),
                           seed=int(d.seed))
    ds = load_image_folder(d.path, int(d.resolution), int(d.channels), require_labels=True, min_classes=2,
                           cache_dir=d.get("cache_dir", "auto") or None)
    if d.get("val_path"):
        val = load_image_folder(d.val_path, int(d.resolution), int(d.channels))
        if list(val.class_names) != list(ds.class_names):
            raise ValueError(f"validation classes {val.class_names} differ from training classes "
                             f"{ds.class_names}")
        tr_x, tr_y, va_x, va_y = ds.images, ds.labels, val.images, val.labels
    else:
        tr_i, va_i = split_per_class(ds.labels, float(d.val_fraction), int(config.seed))
        tr_x, tr_y, va_x, va_y = ds.images[tr_i], ds.labels[tr_i], ds.images[va_i], ds.labels[va_i]
    bs = int(t.batch_size)
    if len(tr_x) < bs:
        raise ValueError(f"{len(tr_x)} training images < config.train.batch_size={bs}")
    n_dev = jax.device_count()
    if bs % n_dev:
        raise ValueError(f"config.train.batch_size={bs} must be a multiple of the {n_dev} devices")
    model = build(config, ds.num_classes)
    tx = optax.adam(float(t.lr))
    key = jax.random.key(int(config.seed))
    fresh = init_state(model, tx, int(d.resolution), int(d.channels), key)
    if config.model.get("keras_weights"):
        from jaxgen.classifiers.keras_h5 import load_keras_h5
        loaded = load_keras_h5(config.model.keras_weights, config.model.name, ds.num_classes,
                               include_top=False)
        from jaxgen.utils.trees import copy_matching
        merged, copied, _ = copy_matching({"params": fresh.params, "batch_stats": fresh.batch_stats}, loaded)
        print(f"ImageNet init: {len(copied)} arrays from {config.model.keras_weights}", flush=True)
        fresh = fresh.replace(params=merged["params"], batch_stats=merged["batch_stats"])
    ckpt = TrainCheckpointer(workdir, max_to_keep=2)
    best = TrainCheckpointer(workdir, max_to_keep=1, subdir="best")
    history = []
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(jax.tree_util.tree_map(np.asarray, fresh))
        history = meta.get("history", [])
        print(f"Resuming classifier at epoch {int(state.epoch)}", flush=True)
    else:
        state = fresh
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    repl, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.device_put(state, repl)
    train_step, eval_step = make_steps(model, tx, config.augment)
    train_fn = jax.jit(train_step, in_shardings=(repl, shard, shard, repl), out_shardings=(repl, repl),
                       donate_argnums=0)
    eval_fn = jax.jit(eval_step)
    (workdir / "classes.json").write_text(json.dumps(dict(
        class_names=list(ds.class_names), model=config.model.name, resolution=int(d.resolution),
        channels=int(d.channels), model_kwargs=dict(config.model.get("kwargs", {})))))
    epochs = int(t.epochs)
    try:
        while int(state.epoch) < epochs:
            t0 = time.time()
            ep = int(state.epoch)
            ms = []
            for idx in _batches(len(tr_x), bs, int(config.seed) * 1000 + ep):
                state, m = train_fn(state, tr_x[idx], tr_y[idx], key)
                ms.append(m)
            ms = jax.device_get(ms)
            v = run_eval(eval_fn, state, va_x, va_y, bs)
            row = dict(epoch=ep + 1, train_loss=float(np.mean([m["loss"] for m in ms])),
                       train_acc=float(np.mean([m["acc"] for m in ms])), val_loss=v["loss"],
                       val_acc=v["acc"], seconds=time.time() - t0)
            if not np.isfinite(row["train_loss"]):
                raise FloatingPointError(f"non-finite training loss at epoch {ep + 1}; lower config.train.lr")
            history.append(row)
            improved = v["acc"] > float(state.best_val_acc)
            state = state.replace(epoch=state.epoch + 1,
                                  best_val_acc=jnp.maximum(state.best_val_acc, v["acc"]))
            print(f"epoch {ep + 1:3d}/{epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.3f}  "
                  f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.3f}  "
                  f"{row['seconds']:.1f}s{'  *best*' if improved else ''}", flush=True)
            if improved:
                best.save(int(state.epoch), state, dict(history=history, val_acc=v["acc"]))
            ckpt.save(int(state.epoch), state, dict(history=history))
            _save_history(workdir, history)
    finally:
        ckpt.close()
        best.close()
    return dict(best_val_acc=float(state.best_val_acc), history=history, workdir=str(workdir))
