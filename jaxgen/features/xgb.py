"""XGBoost on handcrafted features: train, evaluate, synthetic-train / real-test.

Why: gradient-boosted trees on LBP/HOG/Sobel/intensity descriptors
(:mod:`jaxgen.features.handcrafted`) are a fast CPU baseline for the question
"does a classifier trained on synthetic faces work on real ones?", next to the
CNN classifiers of :mod:`jaxgen.classifiers`. Metrics come from
:func:`jaxgen.classifiers.metrics.classification_metrics` and reports from
:func:`jaxgen.classifiers.report.write_report`, so the numbers and files have
the same form as the CNN reports.

API:
* ``train_xgb(train_features [N, D], train_labels [N], num_classes, params, seed)``
  -> fitted ``xgboost.XGBClassifier`` (tree_method 'hist', 2 threads by default);
* ``evaluate_xgb(model, features, labels, class_names)`` -> metrics dict;
* ``synthetic_to_real_xgb(train_folder, test_folder, resolution, ...)`` -> report
  dict (metrics + data/feature/model details; files when ``out_dir`` is given).

Command: ``python -m jaxgen xgb --train SYN_DIR --test REAL_DIR
--resolution 64 --out reports/xgb`` (jaxgen/commands/xgb.py). --out must be new, empty or an earlier
xgb report (``jaxgen.utils.outputs``); it is checked before any image is read.
Feature extraction (about 3 ms per 64 px image on a CPU core) prints progress
lines (images, rate, ETA) every 10 s when ``verbose``.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from jaxgen.classifiers.metrics import classification_metrics
from jaxgen.classifiers.report import write_report
from jaxgen.data import load_dataset
from jaxgen.errors import ConfigError
from jaxgen.features.handcrafted import FEATURES, extract_features, feature_blocks
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output, has_files
from jaxgen.utils.progress import Progress

OUTPUT_KIND = "xgb"

DEFAULT_XGB_PARAMS: Dict[str, Any] = dict(
    n_estimators=200, max_depth=4, learning_rate=0.1, subsample=0.8,
    colsample_bytree=0.5, min_child_weight=1.0, reg_lambda=1.0,
    tree_method="hist", n_jobs=2)


def _check_xy(features, labels, num_classes: int):
    x = np.asarray(features, np.float32)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features must be [N, D] and labels [N], got {x.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {y.min()}..{y.max()}")
    return x, y.astype(np.int64)


def train_xgb(train_features, train_labels, num_classes: int,
              params: Optional[Mapping[str, Any]] = None, seed: int = 0):
    """Fit an ``xgboost.XGBClassifier`` on float features [N, D] and labels [N].

    params override DEFAULT_XGB_PARAMS (any XGBClassifier argument). Every class
    0..num_classes-1 must occur in the training labels (XGBoost requires
    consecutive classes); num_classes >= 2.
    """
    import xgboost  # imported here so the feature code does not need it

    k = int(num_classes)
    if k < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}; give a "
                          "training folder with 2 or more class sub-folders")
    x, y = _check_xy(train_features, train_labels, k)
    missing = sorted(set(range(k)) - set(np.unique(y).tolist()))
    if missing:
        raise ConfigError(f"class(es) {missing} have no training examples; XGBoost needs "
                          f"every class 0..{k - 1} in the training set")
    kw = dict(DEFAULT_XGB_PARAMS)
    kw.update(params or {})
    kw.setdefault("random_state", int(seed))
    if k > 2:
        kw.setdefault("objective", "multi:softprob")
    model = xgboost.XGBClassifier(**kw)
    model.fit(x, y)
    return model


def evaluate_xgb(model, features, labels, class_names: Sequence[str]) -> Dict[str, Any]:
    """:func:`classification_metrics` of ``model`` on features [N, D] / labels [N]:
    accuracy, per-class and macro/weighted precision/recall/F1, confusion matrix
    (rows true, columns predicted), top-k accuracy and one-vs-rest ROC AUC
    from the predicted probabilities."""
    names = [str(c) for c in class_names]
    x, y = _check_xy(features, labels, len(names))
    probs = np.asarray(model.predict_proba(x), np.float64)
    if probs.shape != (len(y), len(names)):
        raise ValueError(f"model predicts {probs.shape[1]} classes, {len(names)} class names given")
    pred = probs.argmax(axis=1)
    return classification_metrics(y, pred, len(names), names, scores=probs)


def block_importance(model, blocks) -> Dict[str, float]:
    """Share of the model's feature importance (XGBoost's default, gain) per
    feature block, e.g. ``{'lbp': 0.1, 'hog': 0.7, ...}``; sums to 1 (or 0)."""
    imp = np.asarray(model.feature_importances_, np.float64)
    total = imp.sum()
    return {b.name: float(imp[b.start:b.stop].sum() / total) if total > 0 else 0.0
            for b in blocks}


def extract_with_progress(images, which: Sequence[str], params: Mapping[str, Mapping], label: str,
                          verbose: bool = True, chunk: int = 256, every: float = 10.0) -> np.ndarray:
    """`extract_features` of uint8 images, `chunk` at a time, with progress lines when verbose."""
    bar = Progress(len(images), f"xgb: features of {label}", every=every, quiet=not verbose)
    parts = []
    for s in range(0, len(images), chunk):
        parts.append(extract_features(images[s:s + chunk], which, **params))
        bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else extract_features(images, which, **params)


def _load(folder, resolution: int, channels: int, cache_dir):
    return load_dataset(dict(source="folder", path=str(folder), resolution=resolution,
                             channels=channels, cache_dir=cache_dir))


def synthetic_to_real_xgb(train_folder, test_folder, resolution: int, channels: int = 1,
                          which: Sequence[str] = FEATURES,
                          feature_params: Optional[Mapping[str, Mapping]] = None,
                          xgb_params: Optional[Mapping[str, Any]] = None, seed: int = 0,
                          out_dir=None, title: str = "XGBoost on handcrafted features",
                          cache_dir: Any = "auto", verbose: bool = True,
                          claim: bool = False) -> Dict[str, Any]:
    """Train XGBoost on the features of ``train_folder`` (synthetic) and test it
    on ``test_folder`` (real); both are image folders with class sub-folders.

    Test classes are matched to training classes by name (the test folder may
    hold a subset); images are loaded at ``resolution`` with ``channels``
    (features always use the luma). Returns the :func:`evaluate_xgb` metrics
    plus ``train_folder``, ``test_folder``, ``num_train``, ``num_test``,
    ``resolution``, ``features`` (blocks with column ranges), ``feature_dim``,
    ``xgb_params``, ``block_importance`` and ``seconds``. With ``out_dir``,
    ``write_report`` puts report.json / report.md / confusion_matrix.png there
    and their paths are under ``files``. claim: ``out_dir`` is a folder the user
    named (the CLI's --out): it is checked first and marked as an xgb output.
    """
    t0 = time.time()
    if out_dir is not None and claim:
        check_output(out_dir, OUTPUT_KIND, legacy=has_files("report.json"))
    train, test = (_load(f, resolution, channels, cache_dir) for f in (train_folder, test_folder))
    names = list(train.class_names)
    unknown = [c for c in test.class_names if c not in names]
    if unknown:
        raise ConfigError(f"test classes {unknown} are not among the training classes {names} "
                          f"(class sub-folder names must match)")
    remap = np.array([names.index(c) for c in test.class_names], np.int64)
    test_labels = remap[test.labels]
    fp = dict(feature_params or {})
    x_train = extract_with_progress(train.images, which, fp, "train images", verbose)
    x_test = extract_with_progress(test.images, which, fp, "test images", verbose)
    blocks = feature_blocks(train.resolution, train.resolution, which, **fp)
    if verbose:
        logger.info(f"features: {x_train.shape[1]} dims ({', '.join(f'{b.name} {b.size}' for b in blocks)})"
                    f"; train {len(x_train)} / test {len(x_test)} images, "
                    f"{time.time() - t0:.1f}s")
    model = train_xgb(x_train, train.labels, len(names), xgb_params, seed)
    report = evaluate_xgb(model, x_test, test_labels, names)
    used = {k: v for k, v in model.get_params().items() if k in DEFAULT_XGB_PARAMS
            or k in (xgb_params or {}) or k == "random_state"}
    report.update(train_folder=str(train_folder), test_folder=str(test_folder),
                  num_train=len(x_train), num_test=len(x_test), resolution=int(resolution),
                  features=[dict(name=b.name, start=b.start, stop=b.stop) for b in blocks],
                  feature_params=fp, feature_dim=int(x_train.shape[1]), xgb_params=used,
                  block_importance=block_importance(model, blocks),
                  seconds=round(time.time() - t0, 3))
    if verbose:
        logger.info(f"synthetic -> real: accuracy {report['accuracy']:.4f}, macro F1 "
                    f"{report['macro']['f1']:.4f} on {len(x_test)} test images")
    if out_dir is not None:
        if claim:
            claim_output(out_dir, OUTPUT_KIND, legacy=has_files("report.json"))
        files = write_report(out_dir, report, names, title)
        report["files"] = {k: str(v) for k, v in files.items()}
    return report


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen xgb
    import runpy
    runpy.run_module("jaxgen.commands.xgb", run_name="__main__")
