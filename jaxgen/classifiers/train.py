"""Train an image classifier on an image folder and evaluate it on another (synthetic -> real).

`train_classifier(config, workdir)` runs `ClassifierExperiment` in the shared
harness (`jaxgen.harness.loop`):
  * data: `config.data` (an image folder, usually the synthetic dataset), split
    80/20 per class with `config.data.val_fraction` unless `config.data.val_path`
    names a separate validation folder;
  * labels: the class folders, or soft targets: `config.data.soft_labels_from` names a
    JSONL file (relative to `config.data.path`; one object per image with "file", its
    path relative to `config.data.path`, and "teacher_probs", K probabilities in the
    sorted class-folder order) and the training loss becomes the cross-entropy against
    those vectors (teacher labels, as the acne paper labels its generated faces).
    Validation still scores the folder labels;
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
import os
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
from jaxgen.data import load_dataset, load_image_folder, take_rows
from jaxgen.data.folder import DatasetError
from jaxgen.errors import ConfigError
from jaxgen.harness import loop
from jaxgen.harness.batches import batch_at_step, batch_indices, process_rows
from jaxgen.harness.experiment import Experiment, TickInfo
from jaxgen.harness.schedule import Schedule
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.logger import logger
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


def classification_loss(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Mean cross-entropy [] of logits [B, K] against labels: int [B] class indices, or
    float [B, K] probability vectors (soft/teacher labels: -sum_k p_k log softmax(logits)_k).

    The choice is made while tracing (labels.ndim), so hard labels compile exactly the
    integer-label program."""
    if labels.ndim == 2:
        return optax.softmax_cross_entropy(logits, labels).mean()
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def hard_labels(labels: jnp.ndarray) -> jnp.ndarray:
    """int [B] class indices of labels int [B] (as they are) or probabilities [B, K] (argmax)."""
    return jnp.argmax(labels, -1) if labels.ndim == 2 else labels


def make_steps(model, tx, aug_cfg: Any):
    """(train_step(state, images uint8 [B,R,R,C], labels, key) -> (state, metrics),
    eval_step(state, images, labels int [B], mask float [B]) -> sums and logits [B, K]).

    Training labels are int [B] or soft float [B, K] (`classification_loss`). The train
    step augments on the device from fold_in(key, step); its metrics are train_loss and
    train_acc (the batch means; soft labels count their argmax as the class)."""
    def loss_fn(params, batch_stats, x, y):
        logits, mutated = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                      mutable=["batch_stats"])
        loss = classification_loss(logits, y)
        return loss, (logits, mutated.get("batch_stats", batch_stats))

    def train_step(state: ClsState, images, labels, key):
        key = jax.random.fold_in(key, state.step)
        x = augment_batch(_to01(images), key, float(aug_cfg.max_degrees), float(aug_cfg.max_brightness),
                          bool(aug_cfg.flip))
        (loss, (logits, bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, _inputs(x), labels)
        upd, opt = tx.update(grads, state.opt, state.params)
        acc = jnp.mean(jnp.argmax(logits, -1) == hard_labels(labels))
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


def soft_labels(ds, root: str, jsonl: str) -> np.ndarray:
    """float32 [N, K]: the "teacher_probs" of every image of `ds` (row i for ds.paths[i]),
    read from the JSONL file `jsonl` (relative to `root`; "file" paths relative to `root`),
    each vector checked (K non-negative numbers) and normalised to sum 1."""
    path = pathlib.Path(root, jsonl)
    if not path.is_file():
        raise DatasetError(f"config.data.soft_labels_from={jsonl}: {path} not found; export with "
                           "--label_by <classifier run>")
    probs = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row.get("teacher_probs") is not None:
                    probs[pathlib.PurePath(row["file"]).as_posix()] = row["teacher_probs"]
    rel = [pathlib.PurePath(os.path.relpath(p, root)).as_posix() for p in ds.paths]
    missing = [r for r in rel if r not in probs]
    if missing:
        raise DatasetError(f"{path} has no teacher_probs for {len(missing)} of {len(rel)} images "
                           f"(e.g. {missing[0]}); export with --label_by <classifier run>")
    k = ds.num_classes
    wrong = [r for r in rel if len(probs[r]) != k]
    if wrong:
        raise DatasetError(f"{path}: {wrong[0]} has {len(probs[wrong[0]])} teacher_probs, the dataset {k} "
                           f"classes ({', '.join(ds.class_names)}); export with --label_by <classifier run>")
    out = np.asarray([probs[r] for r in rel], np.float32).reshape(len(rel), k)
    if not np.all(np.isfinite(out)) or np.any(out < 0) or np.any(out.sum(1) <= 0):
        raise DatasetError(f"{path}: teacher_probs must be non-negative numbers with a positive sum per image")
    return out / out.sum(1, keepdims=True)


def _load_split(config: Any):
    """(class names, train images uint8 [N,R,R,C], train labels [N], val images, val labels,
    data summary {'train': ..., 'validation': ...} or {'train': ...} with the split's counts,
    train soft labels float32 [N, K] or None (see `soft_labels`))."""
    d = config.data
    cache_dir = d.get("cache_dir", "auto") or None
    ds = load_dataset(dict(d.to_dict(), require_labels=True, min_classes=2, cache_dir=cache_dir))
    soft = soft_labels(ds, d.path, d.soft_labels_from) if d.get("soft_labels_from") else None
    if d.get("val_path"):
        val = load_image_folder(d.val_path, int(d.resolution), int(d.channels), cache_dir=cache_dir,
                                skip_corrupt=bool(d.get("skip_corrupt", False)))
        if list(val.class_names) != list(ds.class_names):
            raise ConfigError(f"config.data.val_path={d.val_path}: validation classes {val.class_names} "
                              f"differ from the training classes {ds.class_names}; give it the same "
                              "class sub-folders")
        return (list(ds.class_names), ds.images, ds.labels, val.images, val.labels,
                dict(train=ds.summary, validation=val.summary), soft)
    tr, va = split_per_class(ds.labels, float(d.val_fraction), int(config.seed))
    summary = dict(ds.summary, split=dict(train=len(tr), validation=len(va)))
    return (list(ds.class_names), take_rows(ds.images, tr), ds.labels[tr], take_rows(ds.images, va), ds.labels[va],
            dict(train=summary), None if soft is None else soft[tr])


class ClassifierExperiment(Experiment):
    """A classifier for `jaxgen.harness.loop.train` (the contract: `jaxgen.harness.experiment`);
    batches are (images uint8 [B,R,R,C], labels int32 [B]), or (images, teacher probabilities
    float32 [B, K]) with config.data.soft_labels_from; best/ follows the validation accuracy
    (folder labels)."""

    kind = "classifier"
    resolution_range = (16, 1024)
    power_of_two = False               # e.g. the paper's 224 for the Keras ResNets
    best_key, best_mode = "val_acc", "max"
    divergence_hint = "lower config.train.lr"

    def __init__(self, config: Any, workdir: pathlib.Path):
        d, t = config.data, config.train
        self.config, self.workdir, self.seed = config, workdir, int(config.seed)
        names, self.tr_x, self.tr_y, self.va_x, self.va_y, self.data_summary, self.tr_soft = _load_split(config)
        self.num_examples = len(self.tr_x)
        self.model = build(config, len(names))
        self.tx = optax.adam(float(t.lr))
        self.schedule = Schedule.from_epochs(int(t.batch_size), len(self.tr_x), int(t.epochs))
        self.descriptor = dict(class_names=names, resolution=int(d.resolution), channels=int(d.channels),
                               model=config.model.name, model_kwargs=dict(config.model.get("kwargs", {})))
        self.train_step, eval_step = make_steps(self.model, self.tx, config.augment)
        self._eval = jax.jit(eval_step)

    def banner(self) -> str:
        return (f"Classifier {self.config.model.name}: {self.config.train.epochs} epochs, "
                f"{len(self.tr_x)} training / {len(self.va_x)} validation images, "
                f"{len(self.descriptor['class_names'])} classes"
                + (", soft (teacher) labels" if self.tr_soft is not None else ""))

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
        logger.info(f"ImageNet init: {len(copied)} arrays from {path}")
        return state.replace(params=merged["params"], batch_stats=merged["batch_stats"])

    def local_batch(self, step: int, process=(0, 1)):
        """This process's rows of step `step`'s batch (of a streamed pack, only those are read)."""
        if self.tr_soft is None:
            return batch_at_step(self.tr_x, self.tr_y, step, self.schedule.batch_size, self.seed, process=process)
        lo, hi = process_rows(self.schedule.batch_size, *process)
        idx = batch_indices(len(self.tr_x), self.schedule.batch_size, self.seed, step)[lo:hi]
        return self.tr_x[idx], self.tr_soft[idx]

    def evaluate(self, state: ClsState, tick: TickInfo, stats: Dict[str, float]) -> Dict[str, float]:
        v = run_eval(self._eval, state, self.va_x, self.va_y, self.schedule.batch_size)
        return dict(val_loss=v["loss"], val_acc=v["acc"])

    def tick_line(self, stats: Dict[str, Any]) -> str:
        return (f"epoch {stats['tick']}/{self.config.train.epochs}  loss {stats['train_loss']:.4f}  "
                f"acc {stats['train_acc']:.3f}  val_loss {stats['val_loss']:.4f}  val_acc {stats['val_acc']:.3f}")

    def after_tick(self, state: ClsState, tick: TickInfo) -> None:
        if jax.process_index() == 0:
            _save_history(self.workdir, _epochs(tick.history))


def train_classifier(config: Any, workdir: str) -> Dict[str, Any]:
    """Train (or resume) a classifier; returns dict(best_val_acc (-1 before the first epoch),
    history: one dict per epoch (epoch, train_loss, train_acc, val_loss, val_acc, seconds), workdir)."""
    res = loop.train(ClassifierExperiment, config, workdir)
    best = res["best"]
    return dict(best_val_acc=float(best) if best is not None else -1.0, history=_epochs(res["history"]),
                workdir=res["workdir"])
