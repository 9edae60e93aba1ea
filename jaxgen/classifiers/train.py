"""Train an image classifier on an image folder and evaluate it on another (synthetic -> real).

`train_classifier(config, workdir)` runs `ClassifierExperiment` in the shared
harness (`jaxgen.harness.loop`):
  * data: `config.data` (an image folder, usually the synthetic dataset), split
    80/20 per class with `config.data.val_fraction` unless `config.data.val_path`
    names a separate validation folder;
  * model: `config.model.name` from the registry (small_cnn, resnet50v2,
    resnet152v2, inception_resnet_v2), optional Keras ImageNet weights for a new run;
  * Adam (lr 1e-4, batch 16, 15 epochs in the acne paper), on-device augmentation,
    data parallel over all local devices, BatchNorm statistics in the state;
    the batch of step s is a function of (seed, s) (`jaxgen.harness.batches`);
  * a tick is an epoch (len(train) // batch steps); every epoch: validation loss and
    accuracy, a checkpoint (resumable), the best one by validation accuracy in
    `workdir/best`, history.json and curves.png redrawn.

Evaluation of a trained classifier is `jaxgen.classifiers.evaluate`.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, Iterator, List, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.classifiers.augment import augment_batch
from jaxgen.classifiers.keras_h5 import load_keras_h5
from jaxgen.classifiers.models import build_classifier
from jaxgen.classifiers.report import plot_curves
from jaxgen.data import load_dataset, load_image_folder
from jaxgen.errors import ConfigError
from jaxgen.harness import loop
from jaxgen.harness.batches import batch_at_step
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.trees import copy_matching


@flax.struct.dataclass
class ClsState:
    """The classifier's train state; the epoch and the best score are the harness's (meta)."""
    step: jnp.ndarray          # int32 []  steps done
    params: Any
    batch_stats: Any           # BatchNorm running statistics ({} for models without BN)
    opt: Any


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
    """The registry model `config.model.name` with `num_classes` outputs."""
    return build_classifier(config.model.name, num_classes, **dict(config.model.get("kwargs", {})))


def init_state(model, tx, resolution: int, channels: int, key) -> ClsState:
    """A fresh state: the model initialised on [2, R, R, C] zeros, Adam moments at 0."""
    x = jnp.zeros([2, resolution, resolution, channels], jnp.float32)
    variables = jax.jit(lambda k: model.init(k, x, train=False))(key)
    params = variables["params"]
    return ClsState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt=tx.init(params))


def make_steps(model, tx, aug_cfg: Any):
    """(train_step(state, images uint8 [B,R,R,C], labels int [B], key) -> (state, metrics),
    eval_step(state, images, labels, mask float [B]) -> sums and logits [B, K]).

    The train step augments on the device from fold_in(key, step); its metrics are
    train_loss and train_acc (the batch means)."""
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
                             batch_stats=bs, opt=opt), dict(train_loss=loss, train_acc=acc)

    def eval_step(state: ClsState, images, labels, mask):
        logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                             _inputs(_to01(images)), train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return dict(loss_sum=jnp.sum(loss * mask), correct=jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
                    logits=logits)
    return train_step, eval_step


def _batches(n: int, batch: int) -> Iterator[np.ndarray]:
    """Index slices [<= batch] covering 0..n-1 in order."""
    idx = np.arange(n)
    for i in range(0, n, batch):
        yield idx[i:i + batch]


def run_eval(eval_fn, state, images: np.ndarray, labels: np.ndarray, batch: int) -> Dict[str, Any]:
    """Loss, accuracy and logits over a whole set (last batch padded and masked)."""
    tot_loss, correct, logits = 0.0, 0.0, []
    for idx in _batches(len(images), batch):
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


def _save_history(workdir: pathlib.Path, history: List[Dict[str, Any]]) -> None:
    """history.json and curves.png (train vs validation loss and accuracy per epoch)."""
    write_text_atomic(workdir / "history.json", json.dumps(history, indent=1))
    plot_curves(history, workdir / "curves.png")


def _epochs(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """metrics.jsonl rows (one per tick = epoch) -> the per-epoch history rows."""
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    return [dict(epoch=int(r["tick"]), **{k: r[k] for k in keys if k in r}, seconds=r.get("sec_per_tick"))
            for r in rows]


def _load_split(config: Any):
    """(class names, train images uint8 [N,R,R,C], train labels [N], val images, val labels,
    data summary {'train': ..., 'validation': ...} or {'train': ...} with the split's counts)."""
    d = config.data
    cache_dir = d.get("cache_dir", "auto") or None
    ds = load_dataset(dict(d.to_dict(), require_labels=True, min_classes=2, cache_dir=cache_dir))
    if d.get("val_path"):
        val = load_image_folder(d.val_path, int(d.resolution), int(d.channels), cache_dir=cache_dir,
                                skip_corrupt=bool(d.get("skip_corrupt", False)))
        if list(val.class_names) != list(ds.class_names):
            raise ConfigError(f"config.data.val_path={d.val_path}: validation classes {val.class_names} "
                              f"differ from the training classes {ds.class_names}; give it the same "
                              "class sub-folders")
        return (list(ds.class_names), ds.images, ds.labels, val.images, val.labels,
                dict(train=ds.summary, validation=val.summary))
    tr, va = split_per_class(ds.labels, float(d.val_fraction), int(config.seed))
    summary = dict(ds.summary, split=dict(train=len(tr), validation=len(va)))
    return list(ds.class_names), ds.images[tr], ds.labels[tr], ds.images[va], ds.labels[va], dict(train=summary)


class ClassifierExperiment(loop.Experiment):
    """A classifier for `jaxgen.harness.loop.train`; batches are (images uint8 [B,R,R,C],
    labels int32 [B]); best/ follows the validation accuracy."""

    kind = "classifier"
    resolution_range = (16, 1024)
    power_of_two = False               # e.g. the paper's 224 for the Keras ResNets
    best_key, best_mode = "val_acc", "max"
    divergence_hint = "lower config.train.lr"

    def __init__(self, config: Any, workdir: pathlib.Path):
        d, t = config.data, config.train
        self.config, self.workdir, self.seed = config, workdir, int(config.seed)
        names, self.tr_x, self.tr_y, self.va_x, self.va_y, self.data_summary = _load_split(config)
        self.num_examples = len(self.tr_x)
        self.model = build(config, len(names))
        self.tx = optax.adam(float(t.lr))
        self.schedule = loop.Schedule.from_epochs(int(t.batch_size), len(self.tr_x), int(t.epochs))
        self.descriptor = dict(class_names=names, resolution=int(d.resolution), channels=int(d.channels),
                               model=config.model.name, model_kwargs=dict(config.model.get("kwargs", {})))
        self.train_step, eval_step = make_steps(self.model, self.tx, config.augment)
        self._eval = jax.jit(eval_step)

    def banner(self) -> str:
        return (f"Classifier {self.config.model.name}: {self.config.train.epochs} epochs, "
                f"{len(self.tr_x)} training / {len(self.va_x)} validation images, "
                f"{len(self.descriptor['class_names'])} classes")

    def init_state(self, key: jax.Array) -> ClsState:
        d = self.config.data
        return init_state(self.model, self.tx, int(d.resolution), int(d.channels), key)

    def fresh_state(self, state: ClsState) -> ClsState:
        """Keras ImageNet weights (config.model.keras_weights) where names and shapes match."""
        path = self.config.model.get("keras_weights")
        if not path:
            return state
        loaded = load_keras_h5(path, self.config.model.name, len(self.descriptor["class_names"]),
                               include_top=False)
        merged, copied, _ = copy_matching({"params": state.params, "batch_stats": state.batch_stats}, loaded)
        print(f"ImageNet init: {len(copied)} arrays from {path}", flush=True)
        return state.replace(params=merged["params"], batch_stats=merged["batch_stats"])

    def batch(self, step: int):
        return batch_at_step(self.tr_x, self.tr_y, step, self.schedule.batch_size, self.seed)

    def evaluate(self, state: ClsState, tick: loop.TickInfo, stats: Dict[str, float]) -> Dict[str, float]:
        v = run_eval(self._eval, state, self.va_x, self.va_y, self.schedule.batch_size)
        return dict(val_loss=v["loss"], val_acc=v["acc"])

    def tick_line(self, stats: Dict[str, Any]) -> str:
        return (f"epoch {stats['tick']}/{self.config.train.epochs}  loss {stats['train_loss']:.4f}  "
                f"acc {stats['train_acc']:.3f}  val_loss {stats['val_loss']:.4f}  val_acc {stats['val_acc']:.3f}")

    def after_tick(self, state: ClsState, tick: loop.TickInfo) -> None:
        if jax.process_index() == 0:
            _save_history(self.workdir, _epochs(tick.history))


def train_classifier(config: Any, workdir: str) -> Dict[str, Any]:
    """Train (or resume) a classifier; returns dict(best_val_acc (-1 before the first epoch),
    history: one dict per epoch (epoch, train_loss, train_acc, val_loss, val_acc, seconds), workdir)."""
    res = loop.train(ClassifierExperiment, config, workdir)
    best = res["best"]
    return dict(best_val_acc=float(best) if best is not None else -1.0, history=_epochs(res["history"]),
                workdir=res["workdir"])
