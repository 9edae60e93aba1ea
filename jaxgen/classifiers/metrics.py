"""Classification metrics in plain numpy (no scikit-learn dependency).

Pure functions for evaluating a classifier, typically one trained on synthetic
faces and tested on real ones:

* :func:`confusion_matrix` -- ``int64 [K, K]`` counts, rows = true class,
  columns = predicted class;
* :func:`classification_metrics` -- accuracy, per-class precision / recall /
  F1 / support, macro and weighted averages and the confusion matrix, as a
  JSON-friendly dict (optionally top-k accuracy and one-vs-rest ROC AUC when
  class scores are given);
* :func:`top_k_accuracy` -- fraction of samples whose true class is among the
  ``k`` highest scores;
* :func:`roc_auc_ovr` -- one-vs-rest ROC AUC per class and its macro average,
  computed from ranks (tied scores get their average rank).

Labels are integers in ``[0, num_classes)``. The numbers agree with
scikit-learn's ``confusion_matrix``, ``accuracy_score``,
``precision_recall_fscore_support(labels=range(K))``, ``top_k_accuracy_score``
and ``roc_auc_score(multi_class="ovr")``; differences in edge cases are noted
in each docstring.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "precision_recall_f1",
    "classification_metrics",
    "top_k_accuracy",
    "roc_auc_ovr",
]


def _labels(y, name: str, num_classes: int) -> np.ndarray:
    """``y`` as a 1-D int64 array, checked to lie in ``[0, num_classes)``."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.int64)
    elif not np.issubdtype(a.dtype, np.integer):
        if a.size and not (np.issubdtype(a.dtype, np.floating)
                           and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
        a = a.astype(np.int64)
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(f"{name} has labels outside [0, {num_classes}): "
                         f"min {a.min()}, max {a.max()}")
    return a


def _check_k(num_classes) -> int:
    """`num_classes` as an int, checked to be a positive integer."""
    k = int(num_classes)
    if k != num_classes or k < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return k


def _num_samples(y) -> int:
    """Length N of the 1-D label array `y` (checked to be 1-D)."""
    shape = np.shape(y)
    if len(shape) != 1:
        raise ValueError(f"y_true must be 1-D, got shape {shape}")
    return shape[0]


def _scores(scores, n: int) -> np.ndarray:
    """`scores` as float64 [n, K] (K >= 1), checked for shape and NaN."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != n:
        raise ValueError(f"scores must have shape [N={n}, K], got {s.shape}")
    if s.shape[1] < 1:
        raise ValueError("scores need at least one class column")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Confusion matrix ``C`` (int64, shape ``[K, K]``).

    ``C[i, j]`` is the number of samples whose true class is ``i`` and whose
    predicted class is ``j`` (rows = true, columns = predicted), the same
    convention as ``sklearn.metrics.confusion_matrix(labels=range(K))``.
    Classes that never occur get an all-zero row / column.
    """
    k = _check_k(num_classes)
    t = _labels(y_true, "y_true", k)
    p = _labels(y_pred, "y_pred", k)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    return np.bincount(t * k + p, minlength=k * k).astype(np.int64).reshape(k, k)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` element-wise with 0.0 where ``den == 0`` (and no warning)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(cm) -> Dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix.

    ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``,
    ``F1 = 2 TP / (2 TP + FP + FN)`` (equal to the harmonic mean of precision
    and recall whenever both are defined). A ratio whose denominator is zero
    (a class never predicted, or absent from the ground truth) is 0.0 -- the
    value scikit-learn returns with its default ``zero_division="warn"``, but
    no warning is emitted here.

    Returns float64 arrays ``precision``, ``recall``, ``f1`` and an int64
    array ``support`` (true samples per class), each of shape ``[K]``.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    cm = cm.astype(np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)          # TP + FN
    predicted = cm.sum(axis=0)        # TP + FP
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2.0 * tp, support + predicted)
    return dict(precision=precision, recall=recall, f1=f1, support=support.astype(np.int64))


def top_k_accuracy(y_true, logits, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    ``logits`` is ``[N, K]`` (logits, probabilities or any monotone score).
    Ties are broken as scikit-learn's ``top_k_accuracy_score`` does: among
    equal scores the class with the larger index ranks first. ``k >= K``
    gives 1.0. ``k = 1`` is plain accuracy of ``argmax`` (up to that tie rule).
    """
    s = _scores(logits, _num_samples(y_true))
    num_classes = s.shape[1]
    t = _labels(y_true, "y_true", num_classes)
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if t.size == 0:
        raise ValueError("top_k_accuracy of an empty set is undefined")
    true_score = s[np.arange(t.size), t][:, None]
    idx = np.arange(num_classes)[None, :]
    # Rank of the true class (0 = best): strictly higher scores, plus equal
    # scores at a larger class index.
    rank = np.sum(s > true_score, axis=1) + np.sum((s == true_score) & (idx > t[:, None]), axis=1)
    return float(np.mean(rank < k))


def _binary_auc(pos: np.ndarray, score: np.ndarray) -> float:
    """Rank-based (Mann-Whitney) ROC AUC; ties count one half. NaN if undefined."""
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_s = score[order]
    # Average rank (1-based) of each group of tied scores.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], sorted_s.size]
    group_rank = (starts + 1 + ends) / 2.0          # mean of ranks starts+1 .. ends
    ranks = np.empty(score.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc_ovr(y_true, probs, average: Optional[str] = "macro"):
    """One-vs-rest ROC AUC from class scores ``probs`` ``[N, K]``.

    For each class ``c`` the AUC of ``probs[:, c]`` separating ``y_true == c``
    from the rest, computed from ranks (Mann-Whitney U; tied scores get their
    average rank, i.e. count one half). Only the order of the values within a
    column matters, so rows need not sum to one (scikit-learn insists that they
    do); note that softmax probabilities and the logits they come from rank
    differently within a column, so pass the scores the classifier reports.

    ``average="macro"`` (default) returns the unweighted mean over classes as a
    float; ``average=None`` returns the per-class float64 array ``[K]``.
    A class with no positive (or no negative) samples has an undefined AUC:
    it is NaN in the per-class array and is left out of the macro mean (NaN if
    no class is defined). scikit-learn instead returns NaN for the macro value
    as soon as one class is undefined; when every class occurs in ``y_true``
    the two agree.
    """
    s = _scores(probs, _num_samples(y_true))
    t = _labels(y_true, "y_true", s.shape[1])
    per_class = np.array([_binary_auc(t == c, s[:, c]) for c in range(s.shape[1])],
                         dtype=np.float64)
    if average is None:
        return per_class
    if average != "macro":
        raise ValueError(f"average must be 'macro' or None, got {average!r}")
    defined = per_class[~np.isnan(per_class)]
    return float(defined.mean()) if defined.size else float("nan")


def _class_names(class_names: Optional[Sequence[str]], k: int) -> List[str]:
    """`k` unique class names as strings (default "0" .. "k-1")."""
    if class_names is None:
        return [str(i) for i in range(k)]
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return names


def _per_class_rows(prf: Dict[str, np.ndarray], names: List[str]) -> List[Dict[str, Any]]:
    """One JSON-friendly row per class (name, index, precision, recall, F1,
    support) from the [K] arrays of :func:`precision_recall_f1`."""
    rows = []
    for i, name in enumerate(names):
        rows.append(dict(
            {"class": name, "index": i},
            precision=float(prf["precision"][i]),
            recall=float(prf["recall"][i]),
            f1=float(prf["f1"][i]),
            support=int(prf["support"][i]),
        ))
    return rows


def _averages(prf: Dict[str, np.ndarray], n: int) -> Dict[str, Dict[str, Any]]:
    """'macro' (unweighted mean over all K classes) and 'weighted' (by support)
    precision / recall / F1 of the [K] arrays of :func:`precision_recall_f1`;
    `n` is the number of samples (the support of both)."""
    weights = prf["support"] / n
    out = {}
    for avg, w in (("macro", None), ("weighted", weights)):
        out[avg] = {key: float(np.average(prf[key], weights=w)) for key in ("precision", "recall", "f1")}
        out[avg]["support"] = n
    return out


def _score_metrics(y_true, scores, n: int, k: int, top_k: Sequence[int],
                   per_class: List[Dict[str, Any]]) -> Dict[str, Any]:
    """'top_k_accuracy' (for 1 <= k' < K of `top_k`) and 'roc_auc_ovr_macro' of
    class scores [N, K]; adds each class's 'roc_auc' (None if undefined) to its
    `per_class` row in place."""
    s = _scores(scores, n)
    if s.shape[1] != k:
        raise ValueError(f"scores have {s.shape[1]} columns for {k} classes")
    out: Dict[str, Any] = {"top_k_accuracy": {str(int(kk)): top_k_accuracy(y_true, s, int(kk))
                                              for kk in top_k if 1 <= int(kk) < k}}
    auc = roc_auc_ovr(y_true, s, average=None)
    for row, a in zip(per_class, auc):
        row["roc_auc"] = None if np.isnan(a) else float(a)
    defined = auc[~np.isnan(auc)]
    out["roc_auc_ovr_macro"] = float(defined.mean()) if defined.size else None
    return out


def classification_metrics(y_true, y_pred, num_classes: int,
                           class_names: Optional[Sequence[str]] = None, *,
                           scores=None, top_k: Sequence[int] = (2, 3)) -> Dict[str, Any]:
    """Accuracy, per-class and averaged precision / recall / F1, confusion matrix.

    Args:
      y_true, y_pred: integer class indices ``[N]`` in ``[0, num_classes)``.
      num_classes: ``K``; classes missing from both arrays still get a row.
      class_names: ``K`` unique names (default ``"0" .. "K-1"``).
      scores: optional ``[N, K]`` class scores (probabilities or logits); adds
        ``top_k_accuracy`` and one-vs-rest ROC AUC (see :func:`roc_auc_ovr`).
      top_k: the ``k`` values reported when ``scores`` is given (those
        ``>= K`` are skipped, they would be 1.0).

    Zero division: precision of a class that is never predicted, recall of a
    class absent from ``y_true`` and F1 when both are zero-division are 0.0,
    the value scikit-learn uses for its default ``zero_division="warn"`` --
    but no warning is raised. Macro averages are the unweighted mean over all
    ``K`` classes (absent ones included, as scikit-learn does with
    ``labels=range(K)``); weighted averages weight each class by its support.
    Macro F1 is the mean of the per-class F1 values (not the F1 of macro P/R).

    Returns a JSON-serialisable dict (Python floats / ints / lists)::

        {
          "num_classes": K, "num_samples": N, "class_names": [...],
          "accuracy": float,
          "per_class": [{"class": name, "index": i, "precision": .., "recall": ..,
                         "f1": .., "support": int[, "roc_auc": float|None]}, ...],
          "macro":    {"precision": .., "recall": .., "f1": .., "support": N},
          "weighted": {"precision": .., "recall": .., "f1": .., "support": N},
          "confusion_matrix": [[int, ...], ...],       # rows true, cols predicted
          # only with scores:
          "top_k_accuracy": {"2": .., ...}, "roc_auc_ovr_macro": float|None,
        }

    An undefined AUC (class without positives or negatives) is ``None``.
    """
    k = _check_k(num_classes)
    names = _class_names(class_names, k)
    cm = confusion_matrix(y_true, y_pred, k)
    n = int(cm.sum())
    if n == 0:
        raise ValueError("classification metrics of an empty set are undefined")
    prf = precision_recall_f1(cm)
    out: Dict[str, Any] = dict(
        num_classes=k,
        num_samples=n,
        class_names=names,
        accuracy=float(np.trace(cm) / n),
    )
    out["per_class"] = _per_class_rows(prf, names)
    out.update(_averages(prf, n))
    out["confusion_matrix"] = cm.tolist()
    if scores is not None:
        out.update(_score_metrics(y_true, scores, n, k, top_k, out["per_class"]))
    return out
