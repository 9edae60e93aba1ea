"""Evaluation reports for classifiers ("train on synthetic, test on real").

* :func:`write_report` -- one evaluation: ``report.json`` (every number),
  ``report.md`` (per-class precision / recall / F1 / support, macro and
  weighted averages, accuracy, confusion matrix), ``confusion_matrix.png`` and,
  given the training history, ``curves.png``;
* :func:`compare_reports` / :func:`write_comparison` -- several evaluations side
  by side (e.g. a classifier trained on real images vs one trained on synthetic
  images, both tested on the same real test set): ``comparison.md`` and
  ``comparison.json``;
* :func:`plot_confusion_matrix`, :func:`plot_curves` -- the figures alone.

The metric dicts are those of :func:`jaxgen.classifiers.metrics.classification_metrics`
(or a ``report.json`` read back, which has the same keys). Every file is written
atomically (temporary file in the same folder, then ``os.replace``), so a reader
never sees a half-written report. Figures use matplotlib's Agg renderer through
``matplotlib.figure.Figure`` and leave pyplot's global state alone.
"""
from __future__ import annotations

import io
import json
import math
import os
import pathlib
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "write_report",
    "render_markdown",
    "plot_confusion_matrix",
    "plot_curves",
    "compare_reports",
    "write_comparison",
]

# History keys accepted for each curve (first one present wins).
_CURVE_KEYS = {
    "train_loss": ("train_loss", "loss"),
    "val_loss": ("val_loss", "valid_loss", "validation_loss"),
    "train_acc": ("train_acc", "train_accuracy", "acc", "accuracy"),
    "val_acc": ("val_acc", "val_accuracy", "valid_acc", "validation_accuracy"),
}


# --------------------------------------------------------------------------- IO


def _atomic_write_bytes(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _atomic_write_text(path: pathlib.Path, text: str) -> pathlib.Path:
    return _atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(o: Any) -> Any:
    """Plain JSON types; numpy scalars/arrays converted, NaN/inf -> None."""
    if isinstance(o, Mapping):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if o is None or isinstance(o, str):
        return o
    raise TypeError(f"{o!r} ({type(o).__name__}) is not JSON serialisable")


def _write_json(path: pathlib.Path, obj: Any) -> pathlib.Path:
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False)
    return _atomic_write_text(path, text + "\n")


def _figure_png(fig, path: pathlib.Path, dpi: int = 110) -> pathlib.Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return _atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------- helpers


def _names_for(metrics: Mapping[str, Any], class_names: Optional[Sequence[str]]) -> List[str]:
    k = len(metrics["confusion_matrix"])
    if class_names is None:
        class_names = metrics.get("class_names") or [str(i) for i in range(k)]
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    return names


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    f = float(x)
    if not math.isfinite(f):
        return "n/a"
    return f"{f:.{digits}f}"


def _md_escape(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join({"l": ":---", "r": "---:", "c": ":---:"}[a] for a in align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# -------------------------------------------------------------------- markdown


def render_markdown(metrics: Mapping[str, Any], class_names: Optional[Sequence[str]] = None,
                    title: str = "Classification report",
                    images: Sequence[str] = ()) -> str:
    """The Markdown text of ``report.md`` (see :func:`write_report`).

    Numbers are printed with 4 decimals; an undefined value prints ``n/a``.
    ``images`` are relative file names linked at the end.
    """
    names = _names_for(metrics, class_names)
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    n = int(metrics.get("num_samples", cm.sum()))
    has_auc = any("roc_auc" in row for row in metrics["per_class"])
    out = [f"# {title}", ""]
    out.append(f"**Accuracy:** {_fmt(metrics['accuracy'])} "
               f"({int(np.trace(cm))} / {n} correct, {len(names)} classes)")
    for k, v in (metrics.get("top_k_accuracy") or {}).items():
        out.append(f"\n**Top-{k} accuracy:** {_fmt(v)}")
    if "roc_auc_ovr_macro" in metrics:
        out.append(f"\n**ROC AUC (one-vs-rest, macro):** {_fmt(metrics['roc_auc_ovr_macro'])}")
    out += ["", "## Per-class metrics", ""]
    header = ["Class", "Precision", "Recall", "F1", "Support"] + (["ROC AUC"] if has_auc else [])
    rows = []
    for name, row in zip(names, metrics["per_class"]):
        r = [_md_escape(name), _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]),
             str(int(row["support"]))]
        if has_auc:
            r.append(_fmt(row.get("roc_auc")))
        rows.append(r)
    for avg in ("macro", "weighted"):
        a = metrics[avg]
        r = [f"**{avg} avg**", _fmt(a["precision"]), _fmt(a["recall"]), _fmt(a["f1"]),
             str(int(a.get("support", n)))]
        if has_auc:
            r.append(_fmt(metrics.get("roc_auc_ovr_macro")) if avg == "macro" else "")
        rows.append(r)
    out.append(_md_table(header, rows, "lrrrr" + ("r" if has_auc else "")))
    out += ["", "## Confusion matrix", "",
            "Rows: true class; columns: predicted class.", ""]
    header = ["true \\ predicted"] + [_md_escape(s) for s in names] + ["Total"]
    rows = [[f"**{_md_escape(name)}**"] + [str(int(v)) for v in cm[i]] + [str(int(cm[i].sum()))]
            for i, name in enumerate(names)]
    rows.append(["**Total**"] + [str(int(v)) for v in cm.sum(axis=0)] + [str(int(cm.sum()))])
    out.append(_md_table(header, rows, "l" + "r" * (len(names) + 1)))
    if images:
        out += [""] + [f"![{pathlib.Path(p).stem.replace('_', ' ')}]({p})" for p in images]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------- figures


def plot_confusion_matrix(cm, class_names: Sequence[str], path, title: str = "",
                          subtitle: str = "") -> pathlib.Path:
    """PNG of a confusion matrix: counts and row-normalised percentages per cell.

    Cell colour is the fraction of the true class (row-normalised), so the
    diagonal reads as per-class recall whatever the class sizes. Rows with no
    samples show ``0`` and ``-``. Cell text is left out above 40 classes.
    """
    from matplotlib.figure import Figure

    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    names = [str(s) for s in class_names]
    if cm.shape != (k, k) or len(names) != k:
        raise ValueError(f"confusion matrix {cm.shape} vs {len(names)} class names")
    row_sum = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row_sum, out=np.zeros(cm.shape, np.float64), where=row_sum > 0)

    side = min(22.0, max(5.0, 0.75 * k + 2.5))
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class (row-normalised)")
    if k <= 40:
        fs = max(5.0, min(11.0, 90.0 / k))
        for i in range(k):
            for j in range(k):
                pct = f"{100.0 * frac[i, j]:.1f}%" if row_sum[i, 0] > 0 else "-"
                ax.text(j, i, f"{cm[i, j]}\n{pct}", ha="center", va="center", fontsize=fs,
                        color="white" if frac[i, j] > 0.55 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    long_names = max((len(s) for s in names), default=0) > 4
    ax.set_xticklabels(names, rotation=40 if long_names else 0, ha="right" if long_names else "center",
                       rotation_mode="anchor")
    ax.set_yticklabels(names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    # Thin white grid between cells.
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    full_title = title + (f"\n{subtitle}" if subtitle else "")
    if full_title:
        ax.set_title(full_title, fontsize=11)
    return _figure_png(fig, pathlib.Path(path))


def _series(history: Sequence[Mapping[str, Any]], which: str):
    keys = _CURVE_KEYS[which]
    xs, ys = [], []
    for i, row in enumerate(history):
        x = row.get("epoch", i + 1)
        for key in keys:
            v = row.get(key)
            if v is not None:
                v = float(v)
                if math.isfinite(v):
                    xs.append(float(x))
                    ys.append(v)
                break
    return xs, ys


def plot_curves(history: Sequence[Mapping[str, Any]], path, title: str = "") -> pathlib.Path:
    """PNG with two panels, loss and accuracy, train vs validation per epoch.

    ``history`` is a list of per-epoch dicts with ``epoch`` (default: 1-based
    position) and any of ``train_loss``, ``val_loss``, ``train_acc``,
    ``val_acc`` (``*_accuracy`` spellings accepted). Missing / non-finite
    values are skipped. The epoch with the best validation accuracy is marked.
    """
    from matplotlib.figure import Figure

    history = list(history)
    if not history:
        raise ValueError("empty training history")
    fig = Figure(figsize=(11, 4.2))
    panels = (("Loss", "train_loss", "val_loss"), ("Accuracy", "train_acc", "val_acc"))
    for p, (label, tr, va) in enumerate(panels):
        ax = fig.add_subplot(1, 2, p + 1)
        plotted = False
        for key, name, style in ((tr, "train", "o-"), (va, "validation", "s--")):
            xs, ys = _series(history, key)
            if xs:
                ax.plot(xs, ys, style, markersize=3.5, linewidth=1.6, label=name)
                plotted = True
        if label == "Accuracy":
            xs, ys = _series(history, "val_acc")
            if xs:
                b = int(np.argmax(ys))
                ax.plot([xs[b]], [ys[b]], marker="*", markersize=13, color="tab:red", linestyle="none",
                        label=f"best val {ys[b]:.3f} (epoch {xs[b]:g})")
        if not plotted:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label.lower())
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _figure_png(fig, pathlib.Path(path))


# ---------------------------------------------------------------------- report


def write_report(out_dir, metrics_dict: Mapping[str, Any], class_names: Optional[Sequence[str]],
                 title: str, history: Optional[Sequence[Mapping[str, Any]]] = None
                 ) -> Dict[str, pathlib.Path]:
    """Write one evaluation report into ``out_dir`` (created if needed).

    Files (returned as ``{"json", "md", "confusion_matrix"[, "curves"]}``):

    * ``report.json`` -- the metric dict with ``title`` added, ``class_names``
      set to ``class_names`` and, when given, ``history``; NaN/inf become null;
    * ``report.md`` -- see :func:`render_markdown`;
    * ``confusion_matrix.png`` -- see :func:`plot_confusion_matrix`;
    * ``curves.png`` -- only when ``history`` is a non-empty list, see
      :func:`plot_curves`.

    ``class_names=None`` takes the names stored in ``metrics_dict``.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = _names_for(metrics_dict, class_names)
    data = dict(metrics_dict)
    data["title"] = str(title)
    data["class_names"] = names
    data["per_class"] = [dict(row, **{"class": n}) for row, n in zip(metrics_dict["per_class"], names)]
    if history is not None:
        data["history"] = list(history)
    paths: Dict[str, pathlib.Path] = {}
    cm = np.asarray(metrics_dict["confusion_matrix"], dtype=np.int64)
    subtitle = (f"accuracy {_fmt(metrics_dict['accuracy'], 3)}, macro F1 "
                f"{_fmt(metrics_dict['macro']['f1'], 3)}, N = {int(cm.sum())}")
    paths["confusion_matrix"] = plot_confusion_matrix(cm, names, out / "confusion_matrix.png",
                                                      title=str(title), subtitle=subtitle)
    images = ["confusion_matrix.png"]
    if history:
        paths["curves"] = plot_curves(history, out / "curves.png", title=f"Training curves: {title}")
        images.append("curves.png")
    paths["json"] = _write_json(out / "report.json", data)
    paths["md"] = _atomic_write_text(out / "report.md", render_markdown(data, names, str(title), images))
    return paths


# ------------------------------------------------------------------ comparison


def _summary(m: Mapping[str, Any]) -> Dict[str, Any]:
    s = dict(num_samples=int(m.get("num_samples", np.sum(m["confusion_matrix"]))),
             accuracy=m["accuracy"],
             macro_precision=m["macro"]["precision"], macro_recall=m["macro"]["recall"],
             macro_f1=m["macro"]["f1"], weighted_f1=m["weighted"]["f1"])
    if "roc_auc_ovr_macro" in m:
        s["roc_auc_ovr_macro"] = m["roc_auc_ovr_macro"]
    names = m.get("class_names") or [str(i) for i in range(len(m["per_class"]))]
    s["per_class_f1"] = {str(n): row["f1"] for n, row in zip(names, m["per_class"])}
    return s


def _shared_classes(reports: Mapping[str, Mapping[str, Any]]) -> Optional[List[str]]:
    lists = [list(m.get("class_names") or []) for m in reports.values()]
    if lists and lists[0] and all(lst == lists[0] for lst in lists):
        return [str(s) for s in lists[0]]
    return None


def compare_reports(reports: Mapping[str, Mapping[str, Any]], title: str = "Comparison") -> str:
    """Markdown comparing several evaluations, one row per run.

    ``reports`` maps a run name (e.g. ``"trained on real"``, ``"trained on
    synthetic"``) to a metric dict. Columns: N, accuracy, macro precision,
    recall and F1, weighted F1 (and macro one-vs-rest ROC AUC when any run has
    it); with two or more runs the best value of each column is in bold.
    When all runs share the same class names a second table lists per-class F1.
    """
    if not reports:
        raise ValueError("no reports to compare")
    sums = {str(k): _summary(m) for k, m in reports.items()}
    cols = [("accuracy", "Accuracy"), ("macro_precision", "Macro precision"),
            ("macro_recall", "Macro recall"), ("macro_f1", "Macro F1"), ("weighted_f1", "Weighted F1")]
    if any("roc_auc_ovr_macro" in s for s in sums.values()):
        cols.append(("roc_auc_ovr_macro", "Macro ROC AUC"))

    def best_of(values):
        finite = [v for v in values if v is not None and math.isfinite(float(v))]
        return max(finite) if len(values) > 1 and finite else None

    best = {key: best_of([s.get(key) for s in sums.values()]) for key, _ in cols}
    rows = []
    for name, s in sums.items():
        r = [_md_escape(name), str(s["num_samples"])]
        for key, _ in cols:
            txt = _fmt(s.get(key))
            if best[key] is not None and s.get(key) is not None and float(s[key]) == best[key]:
                txt = f"**{txt}**"
            r.append(txt)
        rows.append(r)
    out = [f"# {title}", "", _md_table(["Run", "N"] + [c for _, c in cols], rows,
                                       "lr" + "r" * len(cols))]
    classes = _shared_classes(reports)
    if classes is not None:
        out += ["", "## Per-class F1", ""]
        runs = list(sums)
        rows = [[_md_escape(c)] + [_fmt(sums[r]["per_class_f1"][c]) for r in runs] for c in classes]
        out.append(_md_table(["Class"] + [_md_escape(r) for r in runs], rows, "l" + "r" * len(runs)))
    return "\n".join(out) + "\n"


def write_comparison(out_dir, reports: Mapping[str, Mapping[str, Any]],
                     title: str = "Comparison") -> Dict[str, pathlib.Path]:
    """Write ``comparison.md`` (:func:`compare_reports`) and ``comparison.json``.

    ``comparison.json`` is ``{"title", "runs": {name: {num_samples, accuracy,
    macro_precision, macro_recall, macro_f1, weighted_f1[, roc_auc_ovr_macro],
    per_class_f1: {class: f1}}}}``. Returns ``{"md", "json"}`` paths.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = compare_reports(reports, title)
    data = dict(title=title, runs={str(k): _summary(m) for k, m in reports.items()})
    return dict(json=_write_json(out / "comparison.json", data),
                md=_atomic_write_text(out / "comparison.md", md))
